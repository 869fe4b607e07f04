import Glibc
import HelloDatagram
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

/// The worker's side of the per-datagram trace over real loopback sockets: a record for
/// each datagram it takes, with the fate the counters give it, completed after the send;
/// nothing while off or for a source outside the filter; what the rate or a full ring
/// leaves out counted.
@Suite struct TraceTests {
    static func control(
        on: Bool = true, filter: [IPPrefix] = [], allowance: Int = 1000, ring: Int = 1024
    ) -> TraceControl {
        let control = TraceControl(workers: 1, filter: filter, rate: 1000, on: on, ringCapacity: ring)
        control.refill(allowance)
        return control
    }

    static func records(_ control: TraceControl) -> [TraceRecord] {
        var records: [TraceRecord] = []
        _ = control.rings[0].drain { records.append($0) }
        return records
    }

    static func v4(_ text: String, _ length: Int) -> IPPrefix {
        IPPrefix(SocketAddress(parsing: text + ":0")!.endpoint.address, length: length)!
    }

    @Test func aRepliedDatagramIsTracedWithItsReplyOnceSent() throws {
        let trace = Self.control()
        var server = try TestServer("127.0.0.1:0", HelloReply(), trace: trace)
        let client = try TestClient()
        defer { client.close() }
        try client.send(Array("Michael".utf8), to: server.address)
        server.serve(1)
        #expect(try client.receive()?.bytes == Array("Hello, Michael!".utf8))
        let records = Self.records(trace)
        try #require(records.count == 1)
        let record = records[0]
        #expect(record.peer.port == (try client.socket.localAddress()).endpoint.port)
        #expect(record.peer.address == server.address.endpoint.address)
        #expect(record.worker == 0 && record.bytes == 7 && record.fate == .replied)
        #expect(record.reply?.bytes == 15 && record.reply?.source == nil)  // from the socket's own address
        #expect(record.local == nil && record.deliveries == 0)
        #expect(trace.rings[0].lost == 0)
    }

    @Test func aDropIsTracedUnderTheReasonItIsCounted() throws {
        let trace = Self.control()
        let own = TestClient(adopting: try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!))
        let large = try TestClient()
        defer { own.close(); large.close() }
        var policy = AdmissionPolicy()
        policy.ownPorts = [(try own.socket.localAddress()).endpoint.port]
        var server = try TestServer("127.0.0.1:0", EchoReply(), maxDatagram: 16, policy: policy, trace: trace)
        try own.send(Array("from own port".utf8), to: server.address)
        try large.send([UInt8](repeating: 1, count: 100), to: server.address)
        server.serve(2)
        let fates = Self.records(trace).map(\.fate)
        #expect(fates == [.dropped(.ownPort), .dropped(.truncated)])
        let counters = server.counters
        #expect(counters[.ownPort] == 1 && counters[.truncated] == 1 && counters.replied == 0)
    }

    @Test func offOrOutsideTheFilterNothingIsTraced() throws {
        let client = try TestClient()
        defer { client.close() }
        for trace in [Self.control(on: false), Self.control(filter: [Self.v4("10.0.0.0", 8)])] {
            var server = try TestServer("127.0.0.1:0", HelloReply(), trace: trace)
            try client.send(Array("Tracy".utf8), to: server.address)
            server.serve(1)
            #expect(try client.receive()?.bytes == Array("Hello, Tracy!".utf8))
            #expect(Self.records(trace).isEmpty && trace.rings[0].lost == 0)
        }
        let inside = Self.control(filter: [Self.v4("10.0.0.0", 8), Self.v4("127.0.0.0", 8)])
        var server = try TestServer("127.0.0.1:0", HelloReply(), trace: inside)
        try client.send(Array("Sarah".utf8), to: server.address)
        server.serve(1)
        #expect(Self.records(inside).map(\.fate) == [.replied])
    }

    @Test func pastTheAllowanceDatagramsAreServedAndCountedNotTraced() throws {
        let trace = Self.control(allowance: 3)
        var server = try TestServer("127.0.0.1:0", HelloReply(), trace: trace)
        let client = try TestClient()
        defer { client.close() }
        for i in 0..<5 { try client.send(Array("n\(i)".utf8), to: server.address) }
        server.serve(5)
        for i in 0..<5 { #expect(try client.receive()?.bytes == Array("Hello, n\(i)!".utf8)) }
        #expect(Self.records(trace).map(\.bytes) == [2, 2, 2])
        #expect(trace.rings[0].lost == 2)
    }

    @Test func aFullRingCountsWhatItCouldNotHold() throws {
        let trace = Self.control(ring: 4)
        var server = try TestServer("127.0.0.1:0", HelloReply(), trace: trace)
        let client = try TestClient()
        defer { client.close() }
        for i in 0..<6 { try client.send(Array("n\(i)".utf8), to: server.address) }
        server.serve(6)
        #expect(Self.records(trace).count == 4)
        #expect(trace.rings[0].lost == 2)
        #expect(server.counters.replied == 6)  // the trace never costs a reply
    }

    @Test func onAWildcardSocketTheRecordSaysTheAddressAskedAndAnsweredFrom() throws {
        let trace = Self.control()
        var server = try TestServer("0.0.0.0:0", HelloReply(), trace: trace)
        let client = try TestClient()
        defer { client.close() }
        let asked = SocketAddress(parsing: "127.0.0.1:\(server.address.endpoint.port)")!
        try client.send(Array("Michael".utf8), to: asked)
        server.serve(1)
        #expect(try client.receive()?.from == asked)
        let record = try #require(Self.records(trace).first)
        #expect(record.local?.address == asked.endpoint.address)
        #expect(record.reply?.source?.address == asked.endpoint.address)
    }

    @Test func prefixesHoldTheAddressesTheyShouldAndNoOthers() throws {
        func v6(_ text: String) -> IPAddress { SocketAddress(parsing: "[\(text)]:0")!.endpoint.address }
        func v4(_ text: String) -> IPAddress { SocketAddress(parsing: text + ":0")!.endpoint.address }
        let net = Self.v4("192.0.2.0", 24)
        #expect(net.contains(v4("192.0.2.255")) && !net.contains(v4("192.0.3.0")))
        #expect(Self.v4("0.0.0.0", 0).contains(v4("203.0.113.9")))
        #expect(
            Self.v4("192.0.2.7", 32).contains(v4("192.0.2.7")) && !Self.v4("192.0.2.7", 32).contains(v4("192.0.2.6")))
        let doc = IPPrefix(v6("2001:db8::"), length: 32)!
        #expect(doc.contains(v6("2001:db8:ffff::1")) && !doc.contains(v6("2001:db9::")))
        #expect(!doc.contains(v4("192.0.2.1")) && !net.contains(v6("::1")))  // never across families
        let deep = IPPrefix(v6("2001:db8::1:0"), length: 112)!  // past the first 64 bits
        #expect(deep.contains(v6("2001:db8::1:ffff")) && !deep.contains(v6("2001:db8::2:0")))
        #expect(
            IPPrefix(v6("::1"), length: 128)!.contains(v6("::1"))
                && !IPPrefix(v6("::1"), length: 128)!.contains(v6("::2")))
        #expect(IPPrefix(v4("10.0.0.0"), length: 33) == nil && IPPrefix(v6("::"), length: 129) == nil)
    }
}
