import HelloCore
import Testing

/// Runs the engine over requests as the socket layer would hand them over.
func respond(_ engine: inout ReplyEngine, _ requests: [(bytes: [UInt8], peer: PeerAddress, truncated: Bool)],
             now: UInt64 = 1_000_000_000) {
    engine.beginBatch(now: now)
    for (i, request) in requests.enumerated() {
        request.bytes.withUnsafeBytes { payload in
            engine.respond(to: Request(payload: payload, truncated: request.truncated, peer: request.peer), index: i)
        }
    }
}

func replies(_ engine: borrowing ReplyEngine) -> [(request: Int, bytes: [UInt8])] {
    (0..<engine.plan.count).map { i in
        let outgoing = engine.plan[i]
        return (Int(outgoing.request), Array(engine.plan.bytes(of: outgoing)))
    }
}

@Suite struct ReplyEngineTests {
    let v4 = PeerAddress.v4(0x7f00_0001, port: 40000)
    let v6 = PeerAddress.v6(high: 0x2001_0db8_0000_0000, low: 1, port: 40001)

    @Test func aBatchOfMixedSizesAndSources() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .hello), batchSize: 8, maxDatagram: 65527)
        let sizes = [0, 1, 7, 1400, 9000, 65499, 3, 65519]
        let peers = [v4, v6, v4, v6, .v4(0x0a00_0001, port: 1234), v4, v6, v6]
        let requests = zip(sizes, peers).map { size, peer in
            (bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ size) }, peer: peer, truncated: false)
        }
        respond(&engine, requests)
        let planned = replies(engine)
        #expect(planned.map(\.request) == Array(0..<8))
        for (i, reply) in planned.enumerated() {
            #expect(reply.bytes == ReplyRule(mode: .hello).reply(to: requests[i].bytes))
        }
        #expect(engine.counters.read == 8)
        #expect(engine.counters.drops.total == 0)
    }

    @Test func repliesAreContiguousInThePlan() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .echo), batchSize: 4, maxDatagram: 2048)
        respond(&engine, (0..<4).map { _ in (Array("abcdefgh".utf8), v4, false) })
        for i in 1..<engine.plan.count {
            #expect(engine.plan[i].offset == engine.plan[i - 1].offset + engine.plan[i - 1].length)
        }
    }

    @Test func truncatedRequestsAreDroppedAndCounted() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .hello), batchSize: 4, maxDatagram: 100)
        respond(&engine, [(Array(repeating: 1, count: 100), v4, true), (Array("Sarah".utf8), v4, false)])
        #expect(replies(engine).map(\.request) == [1])
        #expect(engine.counters.drops[.truncated] == 1)
        engine.recordSent(replies: 1, failed: 0)
        #expect(engine.counters.isBalanced)
    }

    @Test func aHelloReplyLargerThanUDPAllowsIsDroppedAndCounted() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .hello), batchSize: 4, maxDatagram: 65527)
        // 65500 bytes + 8 is one more than IPv4 allows; IPv6 allows 65527.
        let big = Array(repeating: UInt8(7), count: 65500)
        respond(&engine, [(big, v4, false), (big, v6, false), (Array(repeating: 7, count: 65520), v6, false)])
        #expect(replies(engine).map(\.request) == [1])
        #expect(engine.counters.drops[.replyTooLarge] == 2)
    }

    @Test func theEngineIsReusedBatchAfterBatch() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .hello), batchSize: 2, maxDatagram: 64)
        for round in 0..<1000 {
            respond(&engine, [(Array("n\(round)".utf8), v4, false), (Array("m".utf8), v6, false)],
                    now: UInt64(round) * 1_000_000_000)
            #expect(replies(engine).map(\.bytes) == [Array("Hello, n\(round)!".utf8), Array("Hello, m!".utf8)])
            engine.recordSent(replies: 2, failed: 0)
        }
        #expect(engine.counters.read == 2000)
        #expect(engine.counters.replied == 2000)
        #expect(engine.counters.isBalanced)
    }

    @Test func sendFailuresAreCounted() {
        var engine = ReplyEngine(rule: ReplyRule(mode: .echo), batchSize: 4, maxDatagram: 64)
        respond(&engine, (0..<3).map { _ in (Array("x".utf8), v4, false) })
        engine.recordSent(replies: 2, failed: 1)
        #expect(engine.counters.drops[.sendFailed] == 1)
        #expect(engine.counters.isBalanced)
    }
}
