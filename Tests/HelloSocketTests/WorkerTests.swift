import Glibc
import HelloChat
import HelloDatagram
import HelloLauncher
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

/// The worker's batch path over real sockets on loopback, one batch at a time: no
/// threads, so each test knows exactly what one recvmmsg/sendmmsg round saw.
/// A worker with a reply service on a fresh socket, driven by hand.
struct TestServer<Rule: ReplyRule>: ~Copyable {
    var worker: Worker<ReplyService<Rule>>
    let report: PublishedReport
    let address: SocketAddress

    init(
        _ listen: String, _ rule: Rule, batch: Int = 64, maxDatagram: Int = 65527, gso: Bool = true,
        gro: Bool = false, policy: AdmissionPolicy = AdmissionPolicy(), trace: TraceControl? = nil
    ) throws {
        let socket = try DatagramSocket.bound(to: SocketAddress(parsing: listen)!)
        let report = PublishedReport()
        let configuration = WorkerConfiguration(
            batchSize: batch, maxDatagram: maxDatagram, spinLimit: 0, segmentation: gso, coalescing: gro)
        let settings = configuration.serviceSettings(policy: policy)
        let address = try closingOnFailure(socket) { try socket.localAddress() }
        let worker = try closingOnFailure(socket) {
            try Worker(
                index: 0, socket: socket, service: ReplyService(rule, settings), configuration: configuration,
                publishingTo: report, handover: nil, trace: trace)
        }
        self.report = report
        self.address = address
        self.worker = worker
    }

    deinit { try? worker.socket.close() }

    /// Serves batches until `count` datagrams were read (each batch takes what is queued).
    mutating func serve(_ count: Int) {
        var read = 0
        let deadline = monotonicNanoseconds() + 2_000_000_000
        while read < count && monotonicNanoseconds() < deadline {
            read += worker.serveBatch()
        }
    }

    var counters: Counters { report.snapshot().counters }
}

/// What `body` makes of `socket`; closes it if that fails.
func closingOnFailure<T: ~Copyable>(_ socket: DatagramSocket, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        try? socket.close()
        throw error
    }
}

@Suite struct WorkerTests {
    @Test func aBatchOfNamesIsAnsweredInOrder() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply())
        let client = try TestClient()
        defer { client.close() }
        let names = ["Michael", "Tracy", "Sarah", "", "\u{00e9}t\u{00e9}"]
        for name in names { try client.send(Array(name.utf8), to: server.address) }
        server.serve(names.count)
        for name in names {
            let reply = try #require(try client.receive())
            #expect(reply.bytes == Array("Hello, \(name)!".utf8))
            #expect(reply.from == server.address)
        }
        let counters = server.report.snapshot().counters
        #expect(counters.read == 5 && counters.replied == 5 && counters.isBalanced)
    }

    @Test func sameLengthRepliesToOnePeerGoAsOneSegmentedSend() throws {
        var server = try TestServer("127.0.0.1:0", EchoReply())
        let client = try TestClient()
        defer { client.close() }
        let requests = (0..<40).map { Array("request-\(1000 + $0)".utf8) } + [Array("short".utf8)]
        for r in requests { try client.send(r, to: server.address) }
        #expect(server.worker.serveBatch() == requests.count)  // all queued: one batch
        for r in requests {
            #expect(try client.receive()?.bytes == r)  // separate datagrams, in order
        }
        let snapshot = server.report.snapshot()
        #expect(snapshot.counters.replied == 41)
        #expect(snapshot.batches == 1)
        #expect(snapshot.segmentedSends == 1)  // 40 of 12 bytes and the 5-byte last one
        #expect(snapshot.segmentationFallbacks == 0)
    }

    /// Over IPv4 and IPv6 (names of 16 and 28 bytes, compared in words): two peers that
    /// differ only in their port are two groups, each one's datagrams one group.
    @Test(arguments: [("127.0.0.1:0", AF_INET), ("[::1]:0", AF_INET6)])
    func interleavedPeersAreGroupedIntoOneSegmentedSendEach(address: String, family: Int32) throws {
        var server = try TestServer(address, HelloReply())
        let a = try TestClient(family: family)
        let b = try TestClient(family: family)
        defer { a.close(); b.close() }
        for i in 0..<20 {
            try a.send(Array("a\(100 + i)".utf8), to: server.address)
            try b.send(Array("b\(100 + i)".utf8), to: server.address)
        }
        #expect(server.worker.serveBatch() == 40)  // all queued: one batch
        for i in 0..<20 {
            #expect(try a.receive()?.bytes == Array("Hello, a\(100 + i)!".utf8))
            #expect(try b.receive()?.bytes == Array("Hello, b\(100 + i)!".utf8))
        }
        let snapshot = server.report.snapshot()
        #expect(snapshot.batches == 1)
        #expect(snapshot.segmentedSends == 2)
    }

    @Test func withoutGSOEveryReplyIsItsOwnSend() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), gso: false)
        let client = try TestClient()
        defer { client.close() }
        for _ in 0..<10 { try client.send(Array("same".utf8), to: server.address) }
        server.serve(10)
        for _ in 0..<10 { #expect(try client.receive()?.bytes == Array("Hello, same!".utf8)) }
        #expect(server.report.snapshot().segmentedSends == 0)
    }

    @Test func repliesToSeveralPeersGoToEachPeer() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), batch: 8)
        let clients = try (0..<5).map { _ in try TestClient() }
        defer { clients.forEach { $0.close() } }
        for round in 0..<3 {
            for (i, c) in clients.enumerated() { try c.send(Array("c\(i)r\(round)".utf8), to: server.address) }
        }
        server.serve(15)
        for round in 0..<3 {
            for (i, c) in clients.enumerated() {
                #expect(try c.receive()?.bytes == Array("Hello, c\(i)r\(round)!".utf8))
            }
        }
    }

    @Test func aDatagramLargerThanMaxDatagramIsCountedNotAnswered() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), maxDatagram: 100)
        let client = try TestClient()
        defer { client.close() }
        try client.send(Array(repeating: 65, count: 101), to: server.address)
        try client.send(Array(repeating: 66, count: 100), to: server.address)
        server.serve(2)
        #expect(try client.receive()?.bytes == Array("Hello, ".utf8) + Array(repeating: 66, count: 100) + [33])
        #expect(try client.receive(timeout: 0.2) == nil)
        let counters = server.report.snapshot().counters
        #expect(counters.drops[.truncated] == 1 && counters.replied == 1 && counters.isBalanced)
    }

    @Test func theLargestDatagramsUDPAllows() throws {
        var server = try TestServer("[::1]:0", EchoReply())
        let client = try TestClient(family: AF_INET6)
        defer { client.close() }
        let largest = (0..<65527).map { UInt8(truncatingIfNeeded: $0) }
        try client.send(largest, to: server.address)
        server.serve(1)
        #expect(try client.receive()?.bytes == largest)
        #expect(server.report.snapshot().counters.replied == 1)
    }

    @Test func aWildcardSocketRepliesFromTheAddressAsked() throws {
        var server = try TestServer("0.0.0.0:0", HelloReply())
        let client = try TestClient()
        defer { client.close() }
        for last in [1, 2, 3] {
            let asked = SocketAddress(ip: "127.0.0.\(last)", port: server.address.port)!
            try client.send(Array("x".utf8), to: asked)
            server.serve(1)
            #expect(try client.receive()?.from == asked)
        }
    }

    @Test func aDatagramQueuedBeforeTheWorkerStartedIsAnsweredFromTheAddressAsked() throws {
        // Socket activation: the datagram that made systemd start hellod was queued before
        // hellod asked for PKTINFO.
        for listen in ["0.0.0.0:0", "[::]:0"] {
            let socket = try DatagramSocket.bound(to: SocketAddress(parsing: listen)!)
            let client = try TestClient()
            defer { client.close(); try? socket.close() }
            let asked = SocketAddress(ip: "127.0.0.2", port: try socket.localAddress().port)!
            try client.send(Array("early".utf8), to: asked)
            let configuration = WorkerConfiguration()
            var worker = try Worker(
                index: 0, socket: socket,
                service: ReplyService(HelloReply(), configuration.serviceSettings(policy: AdmissionPolicy())),
                configuration: configuration, publishingTo: PublishedReport())
            #expect(worker.serveBatch() == 1)
            let reply = try #require(try client.receive())
            #expect(reply.bytes == Array("Hello, early!".utf8))
            #expect(reply.from == asked)
        }
    }

    @Test func aDualStackSocketRepliesToIPv4AndIPv6FromTheAddressAsked() throws {
        var server = try TestServer("[::]:0", HelloReply())
        let v4 = try TestClient()
        let v6 = try TestClient(family: AF_INET6)
        defer { v4.close(); v6.close() }
        let askedV4 = SocketAddress(ip: "127.0.0.2", port: server.address.port)!
        try v4.send(Array("four".utf8), to: askedV4)
        server.serve(1)
        let reply4 = try #require(try v4.receive())
        #expect(reply4.bytes == Array("Hello, four!".utf8))
        #expect(reply4.from == askedV4)
        let askedV6 = SocketAddress(ip: "::1", port: server.address.port)!
        try v6.send(Array("six".utf8), to: askedV6)
        server.serve(1)
        let reply6 = try #require(try v6.receive())
        #expect(reply6.bytes == Array("Hello, six!".utf8))
        #expect(reply6.from == askedV6)
    }

    @Test func batchOfOneServesOneAtATime() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), batch: 1)
        let client = try TestClient()
        defer { client.close() }
        for i in 0..<3 { try client.send(Array("\(i)".utf8), to: server.address) }
        #expect(server.worker.serveBatch() == 1)
        #expect(server.worker.serveBatch() == 1)
        #expect(server.worker.serveBatch() == 1)
        #expect(server.worker.serveBatch() == 0)
        for i in 0..<3 { #expect(try client.receive()?.bytes == Array("Hello, \(i)!".utf8)) }
    }
}
