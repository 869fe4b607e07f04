import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The fan-out interval (`--chat-fanout-us`): a room's events sent at most once per
/// interval, the first after a quiet spell at once, none ever lost to the backlog.
@Suite struct ChatFanOutTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let t0 = 5 * ChatRelay.second
    let millisecond: UInt64 = 1_000_000

    func settings(interval: UInt64, backlog: Int = 64) -> ChatSettings {
        var s = ChatRelay.testSettings
        s.fanOutInterval = interval
        s.backlog = backlog
        s.messageRate = 100_000
        s.messageBurst = 1000
        return s
    }

    /// The messages `peer` got in `sent` (the joins' events left out).
    func messages(to peer: Endpoint, in sent: [Sent]) -> [String] {
        texts(events(to: peer, in: sent)).filter { $0.hasPrefix("message ") }
    }

    func say(_ token: UInt64, _ sequence: UInt32, _ text: String) -> [UInt8] {
        ChatMessage.say(token: token, clientSequence: sequence, text: Array(text.utf8)).encoded()
    }

    @Test func messagesWithinTheIntervalGatherAndGoTogetherWhenItEnds() {
        var relay = ChatRelay(settings(interval: millisecond))
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let t = t0 + 10 * millisecond  // a quiet interval after the joins: this one goes at once
        let first = relay.batch([(say(a.token, 1, "one"), ada)], now: t)
        #expect(messages(to: bob, in: first) == ["message ada one"])
        #expect(relay.service.sendDue == nil)
        // Within the interval: held, and the worker told when they are due.
        #expect(relay.batch([(say(a.token, 2, "two"), ada)], now: t + 100_000).isEmpty)
        #expect(relay.batch([(say(a.token, 3, "three"), ada)], now: t + 200_000).isEmpty)
        #expect(relay.service.sendDue == t + millisecond)
        // Not yet due: still nothing.
        #expect(relay.tick(now: t + 900_000).isEmpty)
        let due = relay.tick(now: t + millisecond)
        for peer in [ada, bob] {
            #expect(due.filter { $0.to == peer }.count == 1)  // one datagram each, both messages
            #expect(messages(to: peer, in: due) == ["message ada two", "message ada three"])
        }
        #expect(relay.service.sendDue == nil)
        #expect(relay.service.counters.isBalanced)
    }

    @Test func withoutAnIntervalEveryBatchGoesAtItsEnd() {
        var relay = ChatRelay(settings(interval: 0))
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        for k in 1...3 {
            let out = relay.batch([(say(a.token, UInt32(k), "m\(k)"), ada)], now: t0 + UInt64(k) * 1000)
            #expect(messages(to: bob, in: out) == ["message ada m\(k)"])
        }
        #expect(relay.service.sendDue == nil)
    }

    /// However long the interval, a room is sent before its unsent events could outgrow
    /// its backlog: nothing is skipped.
    @Test func aHeldRoomIsSentBeforeItsBacklogOverflows() {
        var relay = ChatRelay(settings(interval: 10 * ChatRelay.second, backlog: 32))
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        var received: [String] = []
        for k in 1...100 {
            let out = relay.batch([(say(a.token, UInt32(k), "m\(k)"), ada)], now: t0 + UInt64(k) * 1000)
            received += messages(to: bob, in: out)
        }
        received += messages(to: bob, in: relay.tick(now: t0 + 20 * ChatRelay.second))
        #expect(received == (1...100).map { "message ada m\($0)" })
        #expect(relay.service.counters.isBalanced)
    }
}
