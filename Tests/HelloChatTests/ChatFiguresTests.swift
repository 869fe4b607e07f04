import HelloChat
import HelloDatagram
import HelloService
import Testing

/// The relay's rooms and members (gauges) and messages, joins and leaves (counters), as
/// the status line and the metrics file report them.
@Suite struct ChatFiguresTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let cy = Endpoint.v4(0x0a00_0004, port: 40004)
    let t0 = 5 * ChatRelay.second

    func figures(_ relay: borrowing ChatRelay) -> [UInt64] {
        let c = relay.service.counters.chat
        return [c.rooms, c.members, c.messages, c.joins, c.leaves]
    }

    @Test func joinsLeavesEvictionsAndRefusalsKeepTheGaugesRight() {
        var relay = ChatRelay()
        let s = ChatRelay.second
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let c = relay.join("other", as: "cy", from: cy, secret: 3, now: t0)
        #expect(figures(relay) == [2, 3, 0, 3, 0])
        // A repeated JOIN (its WELCOME lost) and a taken nick are no new members.
        _ = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: cy, secret: 4, now: t0)
        #expect(figures(relay) == [2, 3, 0, 3, 0])
        relay.send(.say(token: a.token, clientSequence: 1, text: Array("hi".utf8)), from: ada, now: t0)
        relay.send(.say(token: a.token, clientSequence: 1, text: Array("hi".utf8)), from: ada, now: t0)  // a resend
        #expect(figures(relay) == [2, 3, 1, 3, 0])
        // Cy leaves: its room is empty, and no longer in use.
        relay.send(.leave(token: c.token), from: cy, now: t0 + s)
        #expect(figures(relay) == [1, 2, 1, 3, 1])
        // Bob falls silent and is evicted; ada kept alive.
        relay.send(.keepalive(token: a.token, highest: 0), from: ada, now: t0 + 30 * s)
        relay.tick(now: t0 + 60 * s)
        #expect(figures(relay) == [1, 1, 1, 3, 2])
        relay.send(.leave(token: a.token), from: ada, now: t0 + 61 * s)
        #expect(figures(relay) == [0, 0, 1, 3, 3])
        #expect(relay.service.counters.isBalanced)
    }

    @Test func figuresAddUpAcrossWorkers() {
        var one = Counters(schema: ChatCounter.schema)
        one[ChatCounter.rooms.id] = 2
        one[ChatCounter.members.id] = 5
        one[ChatCounter.messages.id] = 7
        var two = Counters(schema: ChatCounter.schema)
        two[ChatCounter.rooms.id] = 1
        two[ChatCounter.members.id] = 1
        two[ChatCounter.leaves.id] = 4
        let sum = (one + two).chat
        #expect([sum.rooms, sum.members, sum.messages, sum.joins, sum.leaves] == [3, 6, 7, 0, 4])
    }
}
