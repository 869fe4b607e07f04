import HelloDatagram
import HelloReplies
import HelloService
import Testing

typealias TestRequest = (bytes: [UInt8], peer: Endpoint, truncated: Bool)

/// A reply service and an outbox, driven as the worker drives them, one batch at a time.
struct Served<Rule: ReplyRule>: ~Copyable {
    var service: ReplyService<Rule>
    var outbox: Outbox
    /// The request each outbox entry answers, in the outbox's order.
    var answered: [Int] = []

    init(_ rule: Rule, batchSize: Int, maxDatagram: Int, policy: AdmissionPolicy = AdmissionPolicy()) {
        service = ReplyService(rule, ServiceSettings(batchSize: batchSize, maxDatagram: maxDatagram, policy: policy))
        outbox = Outbox(capacity: service.outboxCapacity, largestDatagram: service.largestDatagram)
    }

    /// Hands `requests` to the service as one batch read at `now`, the last batch's
    /// replies having been sent.
    mutating func respond(_ requests: [TestRequest], arrival: Arrival = Arrival(), now: UInt64 = 1_000_000_000) {
        outbox.removeAll()
        answered = []
        for (i, request) in requests.enumerated() {
            let before = outbox.count
            let handled = request.bytes.withUnsafeBytes { payload in
                service.handle(
                    Datagram(payload: payload, truncated: request.truncated, peer: request.peer, arrival: arrival),
                    now: now, into: &outbox)
            }
            #expect(handled, "request \(i): no room in an outbox sized for the batch")
            if outbox.count > before { answered.append(i) }
        }
    }

    var replies: [(request: Int, bytes: [UInt8])] {
        (0..<outbox.count).map { i in (answered[i], Array(outbox.bytes(of: outbox[i]))) }
    }

    var counters: Counters { service.counters }

    mutating func recordSent(_ sent: Int, failed: Int) {
        service.recordSent(sent, failed: failed)
    }
}

@Suite struct ReplyServiceTests {
    let v4 = Endpoint.v4(0x7f00_0001, port: 40000)
    let v6 = Endpoint.v6(high: 0x2001_0db8_0000_0000, low: 1, port: 40001)

    @Test func aBatchOfMixedSizesAndSources() {
        var served = Served(HelloReply(), batchSize: 8, maxDatagram: 65527)
        let sizes = [0, 1, 7, 1400, 9000, 65499, 3, 65519]
        let peers = [v4, v6, v4, v6, .v4(0x0a00_0001, port: 1234), v4, v6, v6]
        let requests = zip(sizes, peers).map { size, peer in
            (bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ size) }, peer: peer, truncated: false)
        }
        served.respond(requests)
        let planned = served.replies
        #expect(planned.map(\.request) == Array(0..<8))
        for (i, reply) in planned.enumerated() {
            #expect(reply.bytes == HelloReply().reply(to: requests[i].bytes))
            #expect(served.outbox[i].destination == peers[i])
        }
        #expect(served.counters.read == 8)
        #expect(served.counters.drops.total == 0)
    }

    @Test func repliesAreContiguousInTheOutbox() {
        var served = Served(EchoReply(), batchSize: 4, maxDatagram: 2048)
        served.respond((0..<4).map { _ in (Array("abcdefgh".utf8), v4, false) })
        #expect(served.outbox.count == 4)
        #expect(served.outbox.entries.map(\.offset) == [0, 8, 16, 24])
        #expect(served.outbox.entries.map(\.length) == [8, 8, 8, 8])
        #expect(served.outbox.bufferUsed == 32)
    }

    @Test func truncatedRequestsAreDroppedAndCounted() {
        var served = Served(HelloReply(), batchSize: 4, maxDatagram: 100)
        served.respond([(Array(repeating: 1, count: 100), v4, true), (Array("Sarah".utf8), v4, false)])
        #expect(served.replies.map(\.request) == [1])
        #expect(served.counters.drops[.truncated] == 1)
        served.recordSent(1, failed: 0)
        #expect(served.counters.isBalanced)
    }

    @Test func aHelloReplyLargerThanUDPAllowsIsDroppedAndCounted() {
        var served = Served(HelloReply(), batchSize: 4, maxDatagram: 65527)
        // 65500 bytes + 8 is one more than IPv4 allows; IPv6 allows 65527.
        let big = Array(repeating: UInt8(7), count: 65500)
        served.respond([(big, v4, false), (big, v6, false), (Array(repeating: 7, count: 65520), v6, false)])
        #expect(served.replies.map(\.request) == [1])
        #expect(served.counters.drops[.replyTooLarge] == 2)
    }

    @Test func theServiceIsReusedBatchAfterBatch() {
        var served = Served(HelloReply(), batchSize: 2, maxDatagram: 64)
        for round in 0..<1000 {
            served.respond(
                [(Array("n\(round)".utf8), v4, false), (Array("m".utf8), v6, false)],
                now: UInt64(round) * 1_000_000_000)
            #expect(served.replies.map(\.bytes) == [Array("Hello, n\(round)!".utf8), Array("Hello, m!".utf8)])
            served.recordSent(2, failed: 0)
        }
        #expect(served.counters.read == 2000)
        #expect(served.counters.replied == 2000)
        #expect(served.counters.isBalanced)
    }

    @Test func sendFailuresAreCounted() {
        var served = Served(EchoReply(), batchSize: 4, maxDatagram: 64)
        served.respond((0..<3).map { _ in (Array("x".utf8), v4, false) })
        served.recordSent(2, failed: 1)
        #expect(served.counters.drops[.sendFailed] == 1)
        #expect(served.counters.isBalanced)
    }

    @Test func theOutboxIsSizedForAFullBatchOfTheLargestReplies() {
        let hello = ReplyService(HelloReply(), ServiceSettings(batchSize: 16, maxDatagram: 100))
        #expect(hello.outboxCapacity == 16)
        #expect(hello.largestDatagram == 108)
        let echo = ReplyService(EchoReply(), ServiceSettings(batchSize: 3, maxDatagram: 100))
        #expect(echo.largestDatagram == 100)
        // No reply is larger than UDP over IPv6 allows, whatever a request's size.
        #expect(ReplyService(HelloReply(), ServiceSettings(maxDatagram: 65527)).largestDatagram == 65527)
        #expect(hello.tickInterval == 100_000_000)  // every service gets ticks, at most 100 ms apart
    }

    @Test func aReplyLeavesFromTheAddressTheRequestCameTo() {
        var served = Served(HelloReply(), batchSize: 2, maxDatagram: 64)
        let local = LocalSource(.v6(high: 0xfe80 << 48, low: 7), interface: 3)
        served.respond([(Array("a".utf8), v6, false)], arrival: Arrival(destination: .unicast, replySource: local))
        #expect(served.outbox.entries.map(\.source) == [local])
        #expect(served.outbox.entries.map(\.destination) == [v6])
        served.respond([(Array("b".utf8), v4, false)])
        #expect(served.outbox.entries.map(\.source) == [nil])
    }

    /// With no room for a reply, `handle` says so and changes nothing: not the counters,
    /// not the outbox, not the rate limit (the worker sends the outbox and hands the same
    /// datagram again).
    @Test func aFullOutboxRefusesTheDatagramAndChangesNothing() {
        var policy = AdmissionPolicy()
        policy.rateLimit = RateLimiter.Configuration(rate: 1, burst: 1)
        var service = ReplyService(EchoReply(), ServiceSettings(batchSize: 1, maxDatagram: 64, policy: policy))
        var outbox = Outbox(capacity: service.outboxCapacity, largestDatagram: service.largestDatagram)
        let first = Endpoint.v4(0xc000_0201, port: 40000)
        let second = Endpoint.v4(0xc000_0202, port: 40000)
        func handle(_ peer: Endpoint) -> Bool {
            Array("x".utf8).withUnsafeBytes {
                service.handle(Datagram(payload: $0, peer: peer), now: 1_000_000_000, into: &outbox)
            }
        }
        #expect(handle(first))
        let counters = service.counters
        #expect(!handle(second))
        #expect(service.counters == counters)
        #expect(outbox.count == 1 && outbox.bufferUsed == 1 && outbox[0].destination == first)
        outbox.removeAll()
        service.recordSent(1, failed: 0)
        // The refused call did not spend `second`'s only token: it is answered now.
        #expect(handle(second))
        #expect(outbox.count == 1 && outbox[0].destination == second)
        #expect(service.counters.drops.total == 0 && service.counters.read == 2)
    }
}

@Suite struct OutboxTests {
    let peer = Endpoint.v4(0xc000_0201, port: 40000)

    @Test func datagramsSitSideBySide() {
        var outbox = Outbox(capacity: 3, largestDatagram: 4)
        #expect(outbox.count == 0)
        #expect(outbox.bufferCapacity == 12)
        let source = LocalSource(.v4(0x7f00_0002))
        #expect(Array("abcd".utf8).withUnsafeBytes { outbox.append($0, to: peer, from: source) })
        #expect(Array("ef".utf8).withUnsafeBytes { outbox.append($0, to: peer) })
        #expect(outbox.entries.map(\.offset) == [0, 4])
        #expect(outbox.entries.map(\.length) == [4, 2])
        #expect(outbox.entries.map(\.source) == [source, nil])
        #expect(Array(outbox.bytes(of: outbox[0])) == Array("abcd".utf8))
        #expect(Array(outbox.bytes(of: outbox[1])) == Array("ef".utf8))
        #expect(outbox.count == 2 && outbox.bufferUsed == 6)
    }

    @Test func aDatagramThatDoesNotFitIsRefused() {
        var outbox = Outbox(capacity: 2, largestDatagram: 4)
        #expect(Array("abcdef".utf8).withUnsafeBytes { outbox.append($0, to: peer) })  // 6 of 8 bytes
        let room = outbox.hasRoom(for: 3)
        #expect(!room)
        #expect(!Array("ghi".utf8).withUnsafeBytes { outbox.append($0, to: peer) })
        #expect(Array("gh".utf8).withUnsafeBytes { outbox.append($0, to: peer) })
        let roomForAnEmptyOne = outbox.hasRoom(for: 0)
        #expect(!roomForAnEmptyOne)  // no entry left
        #expect(outbox.count == 2)
        outbox.removeAll()
        let roomAgain = outbox.hasRoom(for: 8)
        #expect(outbox.count == 0)
        #expect(outbox.bufferUsed == 0)
        #expect(roomAgain)
    }

    @Test func routesAreDestinationAndSource() {
        let a = Outgoing(offset: 0, length: 1, destination: peer)
        #expect(a.sharesRoute(with: Outgoing(offset: 1, length: 5, destination: peer)))
        #expect(!a.sharesRoute(with: Outgoing(offset: 1, length: 1, destination: .v4(0xc000_0201, port: 40001))))
        #expect(
            !a.sharesRoute(
                with: Outgoing(offset: 1, length: 1, destination: peer, source: LocalSource(.v4(0x7f00_0001)))))
        let linkLocal = LocalSource(.v6(high: 0xfe80 << 48, low: 1), interface: 2)
        let b = Outgoing(offset: 0, length: 1, destination: peer, source: linkLocal)
        #expect(
            !b.sharesRoute(
                with: Outgoing(
                    offset: 1, length: 1, destination: peer,
                    source: LocalSource(.v6(high: 0xfe80 << 48, low: 1), interface: 3))))
    }
}
