import HelloChat
import HelloDatagram
import HelloService
import Testing

/// What a member announces to its whole room besides messages: a rename spends as a
/// message; a join (and so a leave and a join again, in a loop) spends its source prefix's
/// joins per second.
@Suite struct ChatRenameLimitTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let t0 = 5 * ChatRelay.second

    @Test func renamesSpendTheMembersMessageBudget() {
        var s = ChatRelay.testSettings
        s.messageRate = 1
        s.messageBurst = 3
        var relay = ChatRelay(s)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        var renamed = 0
        for k in 1...10 {
            let out = relay.send(.nick(token: a.token, nick: Array("ada\(k)".utf8)), from: ada, now: t0 + 1)
            renamed += events(to: bob, in: out).filter { $0.kind == .renamed }.count
        }
        #expect(renamed == 3)
        #expect(relay.service.counters.drops[.chatRateLimited] == 7)
        #expect(relay.service.counters.isBalanced)
    }
}

@Suite struct ChatJoinLimitTests {
    let t0 = 5 * ChatRelay.second

    @Test func aMemberLeavingAndJoiningInALoopIsHeldToItsPrefixsJoinRate() {
        var s = ChatRelay.testSettings
        s.joinLimit = RateLimiter.Configuration(rate: 1, burst: 3, tableSize: 64)
        var relay = ChatRelay(s)
        let bob = Endpoint.v4(0x0a00_0002, port: 40002)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        // eve, at another address: joins and leaves ten times within a second.
        let eve = Endpoint.v4(0x0a00_0009, port: 40009)
        var joined = 0
        for k in 0..<10 {
            let now = t0 + 1 + UInt64(k) * 1000
            let member = relay.join("r", as: "eve", from: eve, secret: 100 + UInt64(k), now: now)
            guard member.token != 0 else { continue }
            joined += 1
            relay.send(.leave(token: member.token), from: eve, now: now)
        }
        #expect(joined == 3)
        #expect(relay.service.counters.drops[.chatJoinRateLimited] == 7)
        // A second later, one more.
        #expect(relay.join("r", as: "eve", from: eve, secret: 200, now: t0 + 1 + ChatRelay.second).token != 0)
        #expect(relay.service.counters.isBalanced)
    }

    @Test func aRejoinFromANewAddressIsNotAJoin() {
        var s = ChatRelay.testSettings
        s.joinLimit = RateLimiter.Configuration(rate: 1, burst: 1, tableSize: 64)
        var relay = ChatRelay(s)
        let ada = Endpoint.v4(0x0a00_0001, port: 40001)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        #expect(a.token != 0)
        // NAT rebinding: the same member, a new port, its token; its prefix's burst spent.
        let moved = Endpoint.v4(0x0a00_0001, port: 40999)
        #expect(relay.join("r", as: "ada", from: moved, secret: 1, token: a.token, now: t0 + 1).token == a.token)
        #expect(relay.service.counters.drops[.chatJoinRateLimited] == 0)
    }
}
