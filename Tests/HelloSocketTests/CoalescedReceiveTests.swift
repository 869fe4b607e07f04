import Glibc
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

/// UDP GRO on loopback: a UDP_SEGMENT send reaches a UDP_GRO socket as one receive, which
/// the worker splits into its datagrams, each served and counted as if it came alone.
@Suite struct CoalescedReceiveTests {
    /// `count` datagrams of `size` bytes, each unlike the others, the last `last` bytes.
    static func train(_ count: Int, size: Int, last: Int? = nil, tag: UInt8 = 0) -> [[UInt8]] {
        (0..<count).map { i in
            let length = i == count - 1 ? last ?? size : size
            return (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i &* 31 &+ Int(tag)) }
        }
    }

    /// The next `count` datagrams' bytes, fewer if one is 2 s late (a broken split must
    /// fail once, fast, not once per datagram).
    static func replies(_ count: Int, to client: TestClient) throws -> [[UInt8]] {
        var replies: [[UInt8]] = []
        while replies.count < count, let reply = try client.receive() { replies.append(reply.bytes) }
        return replies
    }

    static func hello(_ names: [[UInt8]]) -> [[UInt8]] { names.map { Array("Hello, ".utf8) + $0 + [33] } }

    @Test func aTrainIsOneReceiveAndEachDatagramIsAnswered() throws {
        var server = try TestServer("127.0.0.1:0", EchoReply(), gro: true)
        let client = try TestClient()
        defer { client.close() }
        let train = Self.train(16, size: 100, last: 37)  // the last segment shorter
        try client.sendTrain(train, to: server.address)
        #expect(server.worker.serveBatch() == 16)
        #expect(try Self.replies(train.count, to: client) == train)
        let snapshot = server.report.snapshot()
        #expect(snapshot.batches == 1 && snapshot.coalescedBatches == 1)
        #expect(snapshot.counters.read == 16 && snapshot.counters.replied == 16 && snapshot.counters.isBalanced)
        #expect(snapshot.segmentedSends == 1)  // the replies leave as they came: one GSO send
    }

    @Test func helloRepliesToATrainLeaveAsSegmentedSends() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), gro: true)
        let client = try TestClient()
        defer { client.close() }
        let names = (0..<64).map { Array("name-\(1000 + $0)".utf8) }
        try client.sendTrain(names, to: server.address)
        #expect(server.worker.serveBatch() == 64)
        #expect(try Self.replies(names.count, to: client) == Self.hello(names))
        let snapshot = server.report.snapshot()
        #expect(snapshot.coalescedBatches == 1 && snapshot.counters.replied == 64)
        #expect(snapshot.segmentedSends == 1)
    }

    @Test func segmentsStraddleTheHeadAndTailBuffers() throws {
        var server = try TestServer("127.0.0.1:0", EchoReply(), gro: true)
        let client = try TestClient()
        defer { client.close() }
        // 300 does not divide the 512-byte head: the second segment begins in the head and
        // ends in the tail, the others lie in one or the other.
        let train = Self.train(12, size: 300, last: 299)
        try client.sendTrain(train, to: server.address)
        #expect(server.worker.serveBatch() == 12)
        #expect(try Self.replies(train.count, to: client) == train)
        #expect(server.report.snapshot().coalescedBatches == 1)
    }

    @Test func aTrainLargerThanTheBatchsBuffersIsServedWhole() throws {
        // Two receive slots and an outbox for two: one train of 64 fills the outbox many
        // times over, and the other slot holds a second train.
        var server = try TestServer("127.0.0.1:0", EchoReply(), batch: 2, gro: true)
        let client = try TestClient()
        defer { client.close() }
        let first = Self.train(64, size: 1000)
        let second = Self.train(40, size: 1500, last: 1, tag: 1)
        try client.sendTrain(first, to: server.address)
        try client.sendTrain(second, to: server.address)
        #expect(server.worker.serveBatch() == 104)
        #expect(try Self.replies(104, to: client) == first + second)
        let counters = server.report.snapshot().counters
        #expect(counters.read == 104 && counters.replied == 104 && counters.isBalanced)
    }

    @Test func aPeerThatTurnsGSOOnMidFlowIsAnsweredInOrder() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply(), gro: true)
        let client = try TestClient()
        defer { client.close() }
        let names = (0..<30).map { Array("n\(100 + $0)".utf8) }
        for name in names[0..<5] { try client.send(name, to: server.address) }
        try client.segmenting(names[0].count)
        try client.send(names[5..<17].flatMap { $0 }, to: server.address)
        try client.send(names[17..<29].flatMap { $0 }, to: server.address)
        try client.segmenting(0)
        try client.send(names[29], to: server.address)
        #expect(server.worker.serveBatch() == 30)
        #expect(try Self.replies(names.count, to: client) == Self.hello(names))
        let snapshot = server.report.snapshot()
        #expect(snapshot.coalescedBatches == 1 && snapshot.counters.replied == 30 && snapshot.counters.isBalanced)
    }

    @Test func aCutTrainCountsEverySegmentItLost() throws {
        // Slots of 1000 bytes, forced (hellod allows coalescing only with 64 KiB slots): of
        // ten 300-byte segments three are read whole, the fourth is cut, six never arrive.
        var server = try TestServer("127.0.0.1:0", EchoReply(), maxDatagram: 1000, gro: true)
        let client = try TestClient()
        defer { client.close() }
        let train = Self.train(10, size: 300)
        try client.sendTrain(train, to: server.address)
        try client.sendTrain(Self.train(4, size: 250), to: server.address)  // exactly 1000: whole
        #expect(server.worker.serveBatch() == 14)
        #expect(try Self.replies(7, to: client) == Array(train[0..<3]) + Self.train(4, size: 250))
        #expect(try client.receive(timeout: 0.2) == nil)
        let counters = server.report.snapshot().counters
        #expect(counters.read == 14 && counters.replied == 7 && counters.drops[.truncated] == 7)
        #expect(counters.isBalanced)
    }

    @Test func aLongDatagramAloneIsStillCutAndCountedOnce() throws {
        var server = try TestServer("127.0.0.1:0", EchoReply(), maxDatagram: 1000, gro: true)
        let client = try TestClient()
        defer { client.close() }
        try client.send(Array(repeating: 65, count: 5000), to: server.address)
        try client.send(Array(repeating: 66, count: 1000), to: server.address)
        #expect(server.worker.serveBatch() == 2)
        #expect(try client.receive()?.bytes == Array(repeating: 66, count: 1000))
        let counters = server.report.snapshot().counters
        #expect(counters.read == 2 && counters.replied == 1 && counters.drops[.truncated] == 1)
    }

    @Test func aWildcardSocketAnswersEachSegmentFromTheAddressAsked() throws {
        // PKTINFO and UDP_GRO in one receive's control messages.
        var server = try TestServer("[::]:0", HelloReply(), gro: true)
        let client = try TestClient()
        defer { client.close() }
        let asked = SocketAddress(ip: "127.0.0.3", port: server.address.port)!
        let names = (0..<8).map { Array("w\($0)".utf8) }
        try client.sendTrain(names, to: asked)
        #expect(server.worker.serveBatch() == 8)
        for name in names {
            let reply = try #require(try client.receive())
            #expect(reply.bytes == Array("Hello, ".utf8) + name + [33])
            #expect(reply.from == asked)
        }
        #expect(server.report.snapshot().coalescedBatches == 1)
    }

    @Test func withoutGROATrainArrivesAsSeparateDatagrams() throws {
        var server = try TestServer("127.0.0.1:0", EchoReply(), gro: false)
        let client = try TestClient()
        defer { client.close() }
        let train = Self.train(16, size: 100)
        try client.sendTrain(train, to: server.address)
        #expect(server.worker.serveBatch() == 16)
        #expect(try Self.replies(train.count, to: client) == train)
        #expect(server.report.snapshot().coalescedBatches == 0)
    }

    @Test func hellodCoalescesOnlyWithSlotsForTheLongestTrain() {
        #expect(WorkerConfiguration.coalescingAllowed(maxDatagram: 65527))
        #expect(!WorkerConfiguration.coalescingAllowed(maxDatagram: 65507))
        #expect(!WorkerConfiguration.coalescingAllowed(maxDatagram: 1500))
    }
}
