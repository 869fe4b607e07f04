import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The answers to sources the relay has not proven (CHALLENGE, NOT A MEMBER): a budget of
/// their own per address and port, within one cap for the whole relay.
@Suite struct ChatAnswerBudgetTests {
    let victim = Endpoint.v4(0x0a00_0001, port: 40001)
    let t0 = 5 * ChatRelay.second

    /// Every kind of request an unproven source can make that is answered: a JOIN without
    /// a cookie, one with a bad cookie, and a request with a token the relay does not know.
    static let unproven: [ChatMessage] = [
        .join(cookie: .none, secret: testSecret(0), token: 0, room: [0x72], nick: [0x6e]),
        .join(cookie: ChatCookie(epoch: 1, mac: 0x1234), secret: testSecret(0), token: 0, room: [0x72], nick: [0x6e]),
        .keepalive(token: 0x5eed, highest: 0),
    ]

    /// How many of `requests`, each sent `times` from `peer` at `now`, were answered.
    func answers(
        _ relay: inout ChatRelay, _ requests: [ChatMessage], times: Int = 1, from peer: Endpoint,
        now: UInt64
    ) -> Int {
        var count = 0
        for _ in 0..<times {
            for request in requests {
                for sent in relay.send(request, from: peer, now: now) where sent.to == peer {
                    switch sent.message {
                    case .challenge?, .notAMember?: count += 1
                    default: Issue.record("an unproven source was sent \(String(describing: sent.message))")
                    }
                }
            }
        }
        return count
    }

    /// One endpoint flooding gets its burst at once, then its rate: burst + rate x t, per
    /// kind of answer (each path's limit deleted, its flood is answered in full).
    @Test(arguments: 0..<3) func oneEndpointFloodingGetsItsBurstThenItsRate(kind: Int) {
        var relay = ChatRelay()  // 20 a second, 20 at once
        let request = [Self.unproven[kind]]
        #expect(answers(&relay, request, times: 100, from: victim, now: t0) == 20)
        #expect(answers(&relay, request, times: 100, from: victim, now: t0 + ChatRelay.second / 2) == 10)
        #expect(answers(&relay, request, times: 100, from: victim, now: t0 + ChatRelay.second) == 10)
        #expect(relay.service.counters.drops[.chatRateLimited] == 260)
        #expect(relay.service.counters.isBalanced)
    }

    /// A forger using other ports of the victim's address, every kind of unproven request,
    /// each port over its limit: the victim's own port is still answered in full.
    @Test func otherPortsOfAnAddressDoNotSpendItsEndpointsBudget() {
        var settings = ChatRelay.testSettings
        settings.unprovenAnswerCap = RelayRate(rate: 1_000_000, burst: 1_000_000)  // the key alone
        var relay = ChatRelay(settings)
        var forged = 0
        for port in UInt16(1024)..<1224 {
            forged += answers(&relay, Self.unproven, times: 10, from: Endpoint.v4(0x0a00_0001, port: port), now: t0)
        }
        #expect(forged == 200 * 20)  // each forged port held to its own 20
        #expect(answers(&relay, Self.unproven, times: 6, from: victim, now: t0) == 18)
        // Another address's budget is its own too.
        #expect(answers(&relay, Self.unproven, from: Endpoint.v4(0x0a00_0002, port: 40001), now: t0) == 3)
    }

    /// All sources together get no more than the relay's cap, burst + rate x t, and two
    /// workers built from one relay's settings share it (not each its own).
    @Test func theRelayCapBoundsAnswersToEverySourceOnEveryWorker() {
        var settings = ChatRelay.testSettings
        settings.unprovenAnswerCap = RelayRate(rate: 100, burst: 50)
        settings.workers = 2
        var first = ChatRelay(settings)
        settings.worker = 1
        var second = ChatRelay(settings)
        func round(_ base: UInt32, at now: UInt64) -> Int {
            var count = 0
            for k in 0..<UInt32(100) {
                let peer = Endpoint.v4(base + k, port: 40000)  // a fresh endpoint each: its own budget full
                count += answers(&first, [Self.unproven[Int(k % 3)]], from: peer, now: now)
                count += answers(&second, [Self.unproven[Int(k % 3)]], from: peer, now: now)
            }
            return count
        }
        #expect(round(0x0b00_0000, at: t0) == 50)  // the burst, over both workers
        #expect(round(0x0c00_0000, at: t0 + ChatRelay.second / 4) == 25)  // then the rate: 100 x 0.25 s
        let dropped = first.service.counters.drops[.chatRateLimited] + second.service.counters.drops[.chatRateLimited]
        #expect(dropped == 400 - 75)
        // A joiner's CHALLENGE spends the cap as any unproven answer does; once it is back,
        // the joiner joins (its WELCOME, to a proven source, spends nothing of it).
        let later = t0 + 2 * ChatRelay.second
        let member = first.join("r", as: "ada", from: victim, secret: 1, now: later)
        #expect(member.token != 0)
        #expect(first.service.counters.isBalanced && second.service.counters.isBalanced)
    }
}
