import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// What the relay sent one peer: the message and the tag it carried (nil: undecodable).
typealias Sent = (to: Endpoint, message: ChatMessage?, tag: UInt64?)

/// A chat relay driven as the worker drives it: each batch handled, its end written, the
/// outbox sent (everything sent is kept, decoded, for the test to read).
struct ChatRelay: ~Copyable {
    var service: ChatService
    var outbox: Outbox
    var sent: [(to: Endpoint, bytes: [UInt8])] = []

    static let second: UInt64 = 1_000_000_000

    static var testSettings: ChatSettings {
        var s = ChatSettings()
        s.rooms = 4
        s.membersPerRoom = 4
        s.history = 3
        s.backlog = 8
        s.secret = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
        return s
    }

    init(_ chat: ChatSettings = ChatRelay.testSettings, batchSize: Int = 8, policy: AdmissionPolicy = .open) {
        service = ChatService(ServiceSettings(batchSize: batchSize, maxDatagram: 2048, policy: policy), chat: chat)
        outbox = Outbox(capacity: service.outboxCapacity, largestDatagram: service.largestDatagram)
    }

    mutating func flush() {
        for entry in outbox.entries { sent.append((entry.destination, outbox.datagram(entry))) }
        service.recordSent(outbox.count, failed: 0)
        outbox.removeAll()
    }

    /// One batch read at `now`; returns what was sent, in order.
    @discardableResult
    mutating func batch(_ requests: [(bytes: [UInt8], from: Endpoint)], now: UInt64) -> [Sent] {
        let before = sent.count
        for request in requests {
            while !request.bytes.withUnsafeBytes({
                service.handle(Datagram(payload: $0, peer: request.from), now: now, into: &outbox)
            }) {
                flush()
            }
        }
        while !service.endBatch(now: now, into: &outbox) { flush() }
        flush()
        return sent[before...].map { sent in
            let decoded = ChatMessage.decode(sent.bytes)
            return (sent.to, decoded?.message, decoded?.tag)
        }
    }

    @discardableResult
    /// Sends `message` from `peer` with `tag` (nil: `testTag(peer)`, the peer's own).
    mutating func send(
        _ message: ChatMessage, from peer: Endpoint, now: UInt64, padding: Int = 64,
        tag: UInt64? = nil
    ) -> [Sent] {
        batch([(message.encoded(tag: tag ?? testTag(peer), joinPadding: padding), peer)], now: now)
    }

    /// The member whose token is `token`, at `peer`, says "m1" to "m`count`" (client
    /// sequences 1 on, one a batch, at `now` + 1 on): everything those batches sent.
    @discardableResult
    mutating func say(_ count: Int, as token: UInt64, from peer: Endpoint, now: UInt64) -> [Sent] {
        var all: [Sent] = []
        for i in 1...count {
            all += send(
                .say(token: token, clientSequence: UInt32(i), text: Array("m\(i)".utf8)), from: peer,
                now: now + UInt64(i))
        }
        return all
    }

    @discardableResult
    mutating func tick(now: UInt64) -> [Sent] {
        let before = sent.count
        service.tick(now: now, into: &outbox)
        while !service.endBatch(now: now, into: &outbox) { flush() }
        flush()
        return sent[before...].map { sent in
            let decoded = ChatMessage.decode(sent.bytes)
            return (sent.to, decoded?.message, decoded?.tag)
        }
    }

    /// The cookie a CHALLENGE gives `peer` at `now`.
    mutating func cookie(for peer: Endpoint, now: UInt64) -> ChatCookie {
        let out = send(
            .join(cookie: .none, secret: testSecret(0), token: 0, room: [0x72], nick: [0x6e]), from: peer, now: now)
        guard out.count == 1, case .challenge(let cookie)? = out[0].message else { return .none }
        return cookie
    }

    /// Joins `room` as `nick` from `peer` with secret `testSecret(secret)`, the two steps;
    /// the token (0: not welcomed) and everything sent.
    mutating func join(
        _ room: String, as nick: String, from peer: Endpoint, secret: UInt64, token: UInt64 = 0,
        now: UInt64
    ) -> (token: UInt64, sent: [Sent]) {
        let cookie = self.cookie(for: peer, now: now)
        let join = ChatMessage.join(
            cookie: cookie, secret: testSecret(secret), token: token, room: Array(room.utf8),
            nick: Array(nick.utf8))
        let out = send(join, from: peer, now: now)
        for o in out where o.to == peer {
            if case .welcome(let token, _, _, _)? = o.message { return (token, out) }
        }
        return (0, out)
    }
}

/// The events `peer` got in `sent`, in order.
func events(to peer: Endpoint, in sent: [Sent]) -> [ChatEvent] {
    sent.filter { $0.to == peer }.flatMap { o -> [ChatEvent] in
        if case .events(_, let events)? = o.message { return events }
        return []
    }
}

func texts(_ events: [ChatEvent]) -> [String] {
    events.map { "\($0.kind) \(String(decoding: $0.nick, as: UTF8.self)) \(String(decoding: $0.text, as: UTF8.self))" }
}

@Suite struct ChatServiceTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let eve = Endpoint.v4(0x0a00_0003, port: 40003)
    let t0 = 5 * ChatRelay.second

    /// ada and bob join room "r" of `relay`, ada says "m" at `t0`: bob's token, and the
    /// events that brought it to bob (at least one).
    func bobHasAdasMessage(_ relay: inout ChatRelay) throws -> (bob: UInt64, said: [ChatEvent]) {
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let said = events(
            to: bob,
            in: relay.send(.say(token: a.token, clientSequence: 1, text: Array("m".utf8)), from: ada, now: t0))
        try #require(!said.isEmpty)
        return (b.token, said)
    }

    /// Until a source shows it receives at its address, it gets nothing longer than what
    /// it sent, and nothing is stored for it.
    @Test func aJoinWithoutCookieGetsAChallengeNoLongerThanItself() {
        var relay = ChatRelay()
        let join = ChatMessage.join(
            cookie: .none, secret: testSecret(1), token: 0, room: Array("r".utf8), nick: Array("n".utf8))
        #expect(relay.send(join, from: eve, now: t0, padding: 63).isEmpty)
        #expect(relay.service.counters.drops[.chatShortJoin] == 1)
        for padding in [64, 100, 1232] {
            let out = relay.send(join, from: eve, now: t0, padding: padding)
            #expect(out.count == 1 && relay.sent.last!.bytes.count == ChatWire.challengeLength)
            #expect(out.first?.tag == testTag(eve))
            guard case .challenge? = out.first?.message else { Issue.record("no challenge"); continue }
        }
        // A LEAVE with a made-up token: NOT A MEMBER, no longer than the LEAVE (18 bytes).
        let out = relay.send(.leave(token: 12345), from: eve, now: t0)
        #expect(out.map(\.message) == [.notAMember(token: 12345)])
        #expect(relay.sent.last!.bytes.count <= 18)
        #expect(relay.service.counters.isBalanced)
        #expect(relay.service.counters.read == 5)
    }

    @Test func forgedOtherAddressAndExpiredCookiesMakeNoMember() {
        var relay = ChatRelay()
        let mine = relay.cookie(for: ada, now: t0)
        #expect(!mine.isNone)
        func attempt(_ cookie: ChatCookie, from peer: Endpoint, now: UInt64) -> [Sent] {
            relay.send(
                .join(cookie: cookie, secret: testSecret(9), token: 0, room: Array("r".utf8), nick: Array("x".utf8)),
                from: peer, now: now)
        }
        // Another address's, another port's, a forged MAC: challenged again.
        for (cookie, peer) in [
            (mine, eve), (mine, Endpoint.v4(0x0a00_0001, port: 40009)),
            (ChatCookie(epoch: mine.epoch, mac: mine.mac ^ 1), ada),
        ] {
            let out = attempt(cookie, from: peer, now: t0)
            guard out.count == 1, case .challenge? = out[0].message, out[0].to == peer else {
                Issue.record("\(out)"); continue
            }
        }
        #expect(relay.service.counters.drops[.chatBadCookie] == 3)
        // Two epochs later (120 s each), expired: challenged again; one epoch later, fine.
        let expired = attempt(mine, from: ada, now: t0 + 240 * ChatRelay.second)
        guard case .challenge? = expired.first?.message else { Issue.record("\(expired)"); return }
        let previous = attempt(mine, from: ada, now: t0 + 120 * ChatRelay.second)
        guard case .welcome? = previous.first?.message else { Issue.record("\(previous)"); return }
        // The member that the last one made is the only one: WHO from a forged token gets nothing.
        #expect(relay.service.counters.drops[.chatBadCookie] == 4)
        #expect(relay.service.counters.isBalanced)
    }

    @Test func twoMembersExchangeMessagesEachGettingItsOwnCopyInOrder() {
        var relay = ChatRelay()
        let a = relay.join("lobby", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("lobby", as: "bob", from: bob, secret: 2, now: t0)
        #expect(a.token != 0 && b.token != 0 && a.token != b.token)
        #expect(texts(events(to: ada, in: b.sent)) == ["joined bob "])
        #expect(texts(events(to: bob, in: b.sent)) == ["joined ada ", "joined bob "])  // history, then its own
        let out = relay.batch(
            [
                (ChatMessage.say(token: a.token, clientSequence: 1, text: Array("hi bob".utf8)).encoded(), ada),
                (ChatMessage.say(token: b.token, clientSequence: 1, text: Array("hi ada".utf8)).encoded(), bob),
                (ChatMessage.say(token: a.token, clientSequence: 2, text: Array("how are you".utf8)).encoded(), ada),
            ], now: t0 + 1)
        let expected = ["message ada hi bob", "message bob hi ada", "message ada how are you"]
        #expect(texts(events(to: ada, in: out)) == expected)
        #expect(texts(events(to: bob, in: out)) == expected)
        // Several events to one member share one datagram.
        #expect(out.filter { $0.to == ada }.count == 1)
        let sequences = events(to: ada, in: out).map(\.sequence)
        #expect(sequences == [sequences[0], sequences[0] + 1, sequences[0] + 2])
        let c = relay.service.counters
        #expect(c.isBalanced)
        #expect(c.drops.total == 0)
        #expect(c.deliveries > 0)
    }

    @Test func aFanOutWritesItsBytesOnceAndEveryMemberGetsThem() {
        var relay = ChatRelay()
        let a = relay.join("lobby", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("lobby", as: "bob", from: bob, secret: 2, now: t0)
        let cat = Endpoint.v4(0x7f00_0003, port: 4003)
        _ = relay.join("lobby", as: "cat", from: cat, secret: 3, now: t0)
        // Written into the outbox, not yet sent: one copy of the bytes, three recipients.
        ChatMessage.say(token: a.token, clientSequence: 1, text: Array("hi all".utf8)).encoded().withUnsafeBytes {
            #expect(relay.service.handle(Datagram(payload: $0, peer: ada), now: t0 + 1, into: &relay.outbox))
        }
        #expect(relay.service.endBatch(now: t0 + 1, into: &relay.outbox))
        let entries = Array(relay.outbox.entries)
        #expect(Set(entries.map(\.destination)) == [ada, bob, cat])
        // The first whole; the others its bytes after the header, each with a head of its own.
        #expect(entries.count == 3 && entries[0].headLength == 0)
        let head = ChatWire.headerLength
        for entry in entries.dropFirst() {
            #expect(Int(entry.headLength) == head && entry.offset == entries[0].offset + Int32(head))
            #expect(entry.length == entries[0].length - Int32(head))
        }
        #expect(relay.outbox.bufferUsed == Int(entries[0].length) + 2 * head)
        relay.flush()
        let out: [Sent] = relay.sent.suffix(3).map { sent in
            let decoded = ChatMessage.decode(sent.bytes)
            return (sent.to, decoded?.message, decoded?.tag)
        }
        for peer in [ada, bob, cat] {
            #expect(texts(events(to: peer, in: out)) == ["message ada hi all"])
            #expect(out.filter { $0.to == peer }.map(\.tag) == [testTag(peer)])  // each its own tag
        }
    }

    @Test func duplicatesAreSuppressedAndTheSenderGetsItsCopyAgain() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let say = ChatMessage.say(token: a.token, clientSequence: 7, text: Array("once".utf8))
        let first = relay.send(say, from: ada, now: t0 + 1)
        #expect(texts(events(to: bob, in: first)) == ["message ada once"])
        for _ in 0..<3 {
            let again = relay.send(say, from: ada, now: t0 + 2)
            #expect(events(to: bob, in: again).isEmpty)
            #expect(texts(events(to: ada, in: again)) == ["message ada once"])
            #expect(events(to: ada, in: again).map(\.sequence) == events(to: ada, in: first).map(\.sequence))
        }
        // An older one not yet seen is new; one out of the window and the backlog is stale.
        let older = relay.send(
            .say(token: a.token, clientSequence: 5, text: Array("late".utf8)), from: ada, now: t0 + 3)
        #expect(texts(events(to: bob, in: older)) == ["message ada late"])
        _ = b
        #expect(relay.service.counters.isBalanced)
    }

    /// A rename event carries the old nick and the new one as its text: the backlog's slot
    /// must hold two of the longest whatever the message limit (at 28 bytes or less, a
    /// 32-byte nick renamed to another once overflowed it, and a failed precondition killed
    /// the relay).
    @Test(arguments: [0, 1, 28, 29, 1000])
    func aRenameBetweenTheLongestNicksFitsWhateverTheMessageLimit(maxMessage: Int) {
        var settings = ChatRelay.testSettings
        settings.maxMessage = maxMessage
        var relay = ChatRelay(settings)
        let old = String(repeating: "o", count: ChatWire.maxName)
        let longest = String(repeating: "n", count: ChatWire.maxName)
        let a = relay.join("r", as: old, from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let out = relay.send(.nick(token: a.token, nick: Array(longest.utf8)), from: ada, now: t0 + 1)
        #expect(texts(events(to: bob, in: out)) == ["renamed \(old) \(longest)"])
        #expect(texts(events(to: ada, in: out)) == ["renamed \(old) \(longest)"])
        // Still serving: the longest message under the limit, from the renamed member.
        let text = [UInt8](repeating: 0x6d, count: maxMessage)
        let said = relay.send(.say(token: a.token, clientSequence: 1, text: text), from: ada, now: t0 + 2)
        #expect(texts(events(to: bob, in: said)) == ["message \(longest) \(String(decoding: text, as: UTF8.self))"])
        #expect(relay.service.counters.isBalanced)
    }

    /// A duplicate's copy is the member's own event, found whatever came since: the
    /// backlog wrapped (its least, 64 events) under other members' messages, the member
    /// moved, another member took the slot it left; a copy the backlog no longer holds is
    /// dropped (chat-stale), within the window of 64 client sequences or not.
    @Test func aDuplicatesCopyIsTheMembersOwnAfterTheBacklogWrappedAndARejoin() {
        var settings = ChatRelay.testSettings
        (settings.messageRate, settings.messageBurst) = (1_000_000, 1_000_000)
        (settings.roomDeliveryRate, settings.roomDeliveryBurst) = (1_000_000_000, 1_000_000_000)
        var relay = ChatRelay(settings)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        func say(_ token: UInt64, _ sequence: UInt32, _ text: String, from peer: Endpoint) -> [Sent] {
            relay.send(.say(token: token, clientSequence: sequence, text: Array(text.utf8)), from: peer, now: t0 + 1)
        }
        // 70 of ada's, each followed by one of bob's: the backlog of 64 wraps twice.
        var original: [UInt32: ChatEvent] = [:]
        for k: UInt32 in 1...70 {
            original[k] = events(to: ada, in: say(a.token, k, "a\(k)", from: ada)).first
            _ = say(b.token, k, "b\(k)", from: bob)
        }
        func again(_ token: UInt64, _ sequence: UInt32, _ text: String, from peer: Endpoint) -> [ChatEvent]? {
            let out = say(token, sequence, text, from: peer)
            #expect(out.allSatisfy { $0.to == peer }, "a duplicate went to the room")
            return out.isEmpty ? nil : events(to: peer, in: out)
        }
        #expect(again(a.token, 70, "a70", from: ada) == [original[70]!])
        #expect(again(a.token, 40, "a40", from: ada) == [original[40]!])
        #expect(again(b.token, 70, "b70", from: bob).map(texts) == ["message bob b70"])
        // In the window, its copy gone (a20 was room sequence 40 or so, the backlog starts
        // at 80 or so); out of the window (69 below the highest): both dropped, stale.
        let stale = relay.service.counters.drops[.chatStale]
        #expect(again(a.token, 20, "a20", from: ada) == nil)
        #expect(again(a.token, 1, "a1", from: ada) == nil)
        #expect(relay.service.counters.drops[.chatStale] == stale + 2)
        // Moved (a rejoin with its token from another address): its copies follow it.
        let moved = Endpoint.v4(0xc633_6401, port: 50000)
        #expect(relay.join("r", as: "ada", from: moved, secret: 1, token: a.token, now: t0 + 1).token == a.token)
        #expect(again(a.token, 70, "a70", from: moved) == [original[70]!])
        // Gone, and its slot taken by another member: that member's sequences are its own.
        _ = relay.send(.leave(token: a.token), from: moved, now: t0 + 1)
        let c = relay.join("r", as: "cy", from: eve, secret: 3, now: t0 + 1)
        let first = say(c.token, 70, "c70", from: eve)
        #expect(texts(events(to: bob, in: first)) == ["message cy c70"])
        #expect(again(c.token, 70, "c70", from: eve) == events(to: eve, in: first))
        // never said: new
        #expect(texts(events(to: bob, in: say(c.token, 40, "c40", from: eve))) == ["message cy c40"])
        #expect(relay.service.counters.isBalanced)
    }

    /// A member's token from another address is not acted on (chat-moved): a CHALLENGE for
    /// that address if the datagram is 22 bytes or more (the member may have moved), and
    /// nothing for a shorter one.
    @Test func aTokenFromAnotherAddressIsDroppedAndAnUnknownOneGetsNotAMember() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let forged = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("i am ada".utf8)), from: eve, now: t0 + 1)
        guard forged.count == 1, case .challenge? = forged[0].message, forged[0].to == eve else {
            Issue.record("\(forged)")
            return
        }
        #expect(relay.send(.leave(token: a.token), from: eve, now: t0 + 1).isEmpty)
        #expect(relay.service.counters.drops[.chatMoved] == 2)
        // Ada is still a member.
        let who = relay.send(.who(token: a.token), from: ada, now: t0 + 2)
        #expect(who.map(\.message) == [.members(instance: instanceOf(who), [Array("ada".utf8)])])
        #expect(
            relay.send(.say(token: a.token &+ 1, clientSequence: 1, text: []), from: eve, now: t0 + 3).map(\.message)
                == [.notAMember(token: a.token &+ 1)])
        #expect(relay.service.counters.isBalanced)
    }

    func instanceOf(_ out: [Sent]) -> UInt64 {
        if case .members(let instance, _)? = out.first?.message { return instance }
        return 0
    }

    @Test func aJoinerGetsTheRoomsHistory() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        relay.say(5, as: a.token, from: ada, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0 + 10)
        // history 3: the last three events, then its own "joined".
        #expect(
            texts(events(to: bob, in: b.sent)) == ["message ada m3", "message ada m4", "message ada m5", "joined bob "])
    }

    @Test func gapsAreRepairedByResend() throws {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let got = events(to: bob, in: relay.say(3, as: a.token, from: ada, now: t0))
        try #require(got.count == 3)  // every event reached bob
        let lost = got[1]  // bob missed it: it asks for it
        let out = relay.send(.resend(token: b.token, first: lost.sequence, count: 1), from: bob, now: t0 + 5)
        #expect(events(to: bob, in: out) == [lost])
        #expect(events(to: ada, in: out).isEmpty)
        // Beyond the backlog (8 events): nothing to send, counted.
        #expect(relay.send(.resend(token: b.token, first: 0, count: 1), from: bob, now: t0 + 6).isEmpty)
        #expect(relay.service.counters.drops[.chatStale] == 1)
        #expect(relay.service.counters.isBalanced)
    }

    /// A KEEPALIVE names the highest room sequence received in order: a member whose last
    /// EVENTS were lost gets them again without waiting for a newer message.
    @Test func aKeepaliveBehindTheRoomGetsWhatItMissed() throws {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let got = events(to: bob, in: relay.say(10, as: a.token, from: ada, now: t0))
        // Bob's last two were lost: they come again, in one datagram, to bob alone.
        try #require(got.count == 10)
        let out = relay.send(.keepalive(token: b.token, highest: got[7].sequence), from: bob, now: t0 + 20)
        #expect(out.count == 1 && out[0].to == bob)
        #expect(events(to: bob, in: out) == Array(got[8...]))
        // Up to date, or nothing received yet (0): nothing.
        #expect(relay.send(.keepalive(token: b.token, highest: got[9].sequence), from: bob, now: t0 + 21).isEmpty)
        #expect(relay.send(.keepalive(token: b.token, highest: 0), from: bob, now: t0 + 21).isEmpty)
        // Far behind: what follows, from the backlog, still in one datagram.
        let behind = relay.send(.keepalive(token: b.token, highest: 1), from: bob, now: t0 + 22)
        #expect(behind.count == 1)
        #expect(events(to: bob, in: behind) == [events(to: bob, in: b.sent).last!] + got)
        // A forged source with bob's token gets nothing of the room: a CHALLENGE (it may be
        // bob, moved), 22 bytes, as long as its keepalive.
        let forged = relay.send(.keepalive(token: b.token, highest: got[7].sequence), from: eve, now: t0 + 23)
        #expect(forged.count == 1 && forged.allSatisfy { $0.to == eve } && relay.sent.last!.bytes.count == 22)
        guard case .challenge? = forged.first?.message else { Issue.record("\(forged)"); return }
        let c = relay.service.counters
        #expect(c.isBalanced)
        #expect(c.drops[.chatMoved] == 1)
    }

    /// What keepalives bring again is bounded by the member's message rate.
    @Test func keepaliveCatchUpIsRateLimited() throws {
        var settings = ChatRelay.testSettings
        settings.messageRate = 1
        settings.messageBurst = 2
        var relay = ChatRelay(settings)
        let (bobToken, said) = try bobHasAdasMessage(&relay)
        let behind = ChatMessage.keepalive(token: bobToken, highest: said[0].sequence - 1)
        let answered = (0..<10).map { _ in relay.send(behind, from: bob, now: t0 + 1).count }
        #expect(answered == [1, 1] + Array(repeating: 0, count: 8))
        #expect(relay.send(behind, from: bob, now: t0 + 2 * ChatRelay.second).count == 1)
        #expect(relay.service.counters.isBalanced)
    }

    /// However far behind a keepalive is, what it brings is from the backlog (the last 64
    /// events here), the oldest first, one datagram of them.
    @Test func keepaliveCatchUpIsBoundedByTheBacklog() throws {
        var settings = ChatRelay.testSettings
        (settings.messageRate, settings.messageBurst) = (1000, 200)
        var relay = ChatRelay(settings)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let got = events(to: bob, in: relay.say(100, as: a.token, from: ada, now: t0))
        let out = relay.send(.keepalive(token: b.token, highest: 1), from: bob, now: t0 + 200)
        let caught = events(to: bob, in: out)
        #expect(out.count == 1 && !caught.isEmpty)
        try #require(got.count == 100 && caught.count <= 64)
        #expect(caught == Array(got[36..<(36 + caught.count)]))  // from the oldest the backlog holds
        #expect(relay.service.counters.isBalanced)
    }

    /// A member silent past the silence time is sent nothing; its first keepalive back
    /// brings what it was not sent, from the backlog.
    @Test func aMemberBackFromSilenceCatchesUpOnItsKeepalive() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let joined = events(to: bob, in: b.sent).last!.sequence
        let s = ChatRelay.second
        relay.send(.keepalive(token: a.token, highest: 0), from: ada, now: t0 + 30 * s)
        let quiet = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("anyone?".utf8)), from: ada, now: t0 + 40 * s)
        #expect(events(to: bob, in: quiet).isEmpty)
        let back = relay.send(.keepalive(token: b.token, highest: joined), from: bob, now: t0 + 41 * s)
        #expect(texts(events(to: bob, in: back)) == ["message ada anyone?"])
    }

    /// A SAY refused by the rate limit leaves no trace: sent again, within the window of 64
    /// client sequences (docs/PROTOCOL.md), it is delivered, once.
    @Test func aSayRefusedByTheRateLimitIsDeliveredWhenSentAgain() {
        var settings = ChatRelay.testSettings
        settings.messageRate = 1
        settings.messageBurst = 1
        (settings.silenceSeconds, settings.evictSeconds) = (1000, 2000)
        var relay = ChatRelay(settings)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let s = ChatRelay.second
        func say(_ sequence: UInt32, at now: UInt64) -> [String] {
            texts(
                events(
                    to: bob,
                    in: relay.send(
                        .say(token: a.token, clientSequence: sequence, text: Array("m\(sequence)".utf8)),
                        from: ada, now: now)))
        }
        #expect(say(1, at: t0) == ["message ada m1"])
        #expect(say(2, at: t0) == [])  // over the rate
        #expect(relay.service.counters.drops[.chatRateLimited] == 1)
        // 62 newer ones, each a second apart, then 2 again: 63 below the highest, delivered.
        for k in 0..<62 { #expect(say(3 + UInt32(k), at: t0 + UInt64(k + 1) * s) == ["message ada m\(3 + k)"]) }
        #expect(say(65, at: t0 + 63 * s) == ["message ada m65"])
        #expect(say(2, at: t0 + 64 * s) == ["message ada m2"])
        #expect(say(2, at: t0 + 65 * s) == [])  // now a duplicate
        // 64 or more below the highest is out of the window: taken as delivered (stale).
        #expect(say(66, at: t0 + 66 * s) == ["message ada m66"])
        #expect(say(1, at: t0 + 67 * s) == [])
        #expect(relay.service.counters.drops[.chatStale] == 1)
        #expect(relay.service.counters.isBalanced)
    }

    /// A room's deliveries are limited as a whole (one per member a message): over the
    /// budget a SAY is dropped, counted, and makes no event; the member's own limit is not
    /// spent, so its resend is delivered, once, when the room has budget again. Joins and
    /// leaves are not messages: they are announced whatever the budget.
    @Test func aSayOverTheRoomsDeliveryBudgetIsDroppedAndMakesNoEvent() {
        var settings = ChatRelay.testSettings
        (settings.messageRate, settings.messageBurst) = (1, 3)
        // 4 deliveries a second, 8 at once: two messages to a room of four, then one a second.
        (settings.roomDeliveryRate, settings.roomDeliveryBurst) = (4, 8)
        (settings.silenceSeconds, settings.evictSeconds) = (1000, 2000)
        var relay = ChatRelay(settings)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let cy = Endpoint.v4(0x0a00_0004, port: 40004)
        _ = relay.join("r", as: "cy", from: cy, secret: 3, now: t0)
        let e = relay.join("r", as: "eve", from: eve, secret: 4, now: t0)
        let s = ChatRelay.second
        func say(_ token: UInt64, _ from: Endpoint, _ sequence: UInt32, at now: UInt64) -> [Sent] {
            relay.send(
                .say(token: token, clientSequence: sequence, text: Array("m\(sequence)".utf8)), from: from, now: now)
        }
        #expect(texts(events(to: bob, in: say(a.token, ada, 1, at: t0 + 1))) == ["message ada m1"])
        #expect(texts(events(to: bob, in: say(a.token, ada, 2, at: t0 + 1))) == ["message ada m2"])
        // The room's 8 are spent: ada's third (twice) and bob's first are dropped, nothing
        // is sent.
        #expect(say(a.token, ada, 3, at: t0 + 1).isEmpty)
        #expect(say(a.token, ada, 3, at: t0 + 1).isEmpty)
        #expect(say(b.token, bob, 1, at: t0 + 1).isEmpty)
        var c = relay.service.counters
        #expect(c.drops[.chatRoomRateLimited] == 3 && c.drops[.chatRateLimited] == 0)
        #expect(c.chat.messages == 2)
        // Leaving and joining are announced all the same.
        #expect(texts(events(to: ada, in: relay.send(.leave(token: e.token), from: eve, now: t0 + 2))) == ["left eve "])
        let back = relay.join("r", as: "eve", from: eve, secret: 5, now: t0 + 3)
        #expect(texts(events(to: ada, in: back.sent)) == ["joined eve "])
        // A second on, room for one more message: ada's third, sent again (her own limit,
        // a burst of 3, was not spent by the refusals), then bob's is over the budget again.
        #expect(texts(events(to: bob, in: say(a.token, ada, 3, at: t0 + 1 + s))) == ["message ada m3"])
        #expect(say(b.token, bob, 1, at: t0 + 1 + s).isEmpty)
        #expect(texts(events(to: ada, in: say(b.token, bob, 1, at: t0 + 1 + 2 * s))) == ["message bob m1"])
        c = relay.service.counters
        #expect(c.drops[.chatRoomRateLimited] == 4 && c.drops[.chatRateLimited] == 0)
        #expect(c.chat.messages == 4)
        #expect(c.isBalanced)
    }

    /// The default room budget never binds a room of the default size (32) whose members
    /// keep to the default message limits: each sends its burst of 10 at once, then 5 a
    /// second, and every message is delivered to all 32.
    @Test func theDefaultRoomBudgetNeverBindsAFullRoomAtTheMemberLimits() {
        var settings = ChatSettings()
        settings.secret = (1, 2)
        var relay = ChatRelay(settings)
        let s = ChatRelay.second
        let peers = (0..<settings.membersPerRoom).map { Endpoint.v4(0x0a01_0000 + UInt32($0), port: 40000) }
        let tokens = peers.enumerated().map { k, peer in
            relay.join("lobby", as: "m\(k)", from: peer, secret: UInt64(k + 1), now: t0).token
        }
        #expect(!tokens.contains(0))
        var sequence: [UInt32] = Array(repeating: 0, count: peers.count)
        func round(at now: UInt64) {
            for k in peers.indices {
                sequence[k] += 1
                relay.send(
                    .say(token: tokens[k], clientSequence: sequence[k], text: Array("x".utf8)), from: peers[k], now: now
                )
            }
        }
        let start = t0 + s
        for _ in 0..<Int(settings.messageBurst) { round(at: start) }
        for step in 1...10 { round(at: start + UInt64(step) * s / settings.messageRate) }  // 2 s at the rate
        let c = relay.service.counters
        #expect(c.drops.total == 0, "\(c.schema.drops.filter { c.drops[$0] > 0 }.map(c.schema.name(of:)))")
        #expect(c.chat.messages == UInt64(peers.count * 20))
    }

    /// A RESEND may bring up to 64 datagrams: a member's RESENDs are bounded by the budget
    /// of its keepalives' catch-up (the message rate), and over it dropped and counted.
    @Test func resendsAreBoundedPerMember() throws {
        var settings = ChatRelay.testSettings
        (settings.messageRate, settings.messageBurst) = (1, 2)
        var relay = ChatRelay(settings)
        let (bobToken, said) = try bobHasAdasMessage(&relay)
        let ask = ChatMessage.resend(token: bobToken, first: said[0].sequence, count: 64)
        let answered = (0..<10).map { _ in events(to: bob, in: relay.send(ask, from: bob, now: t0 + 1)) }
        #expect(answered.map(\.count) == [1, 1] + Array(repeating: 0, count: 8))
        #expect(answered[0] == said)
        #expect(relay.service.counters.drops[.chatRateLimited] == 8)
        // The keepalives' catch-up shares the budget: spent, it brings nothing either.
        #expect(relay.send(.keepalive(token: bobToken, highest: said[0].sequence - 1), from: bob, now: t0 + 1).isEmpty)
        // A second on, one more.
        #expect(events(to: bob, in: relay.send(ask, from: bob, now: t0 + 1 + ChatRelay.second)) == said)
        #expect(relay.service.counters.isBalanced)
    }

    /// A RESEND's unit of the catch-up budget bounds how often a member asks, not how much
    /// it pulls: with the default message rate, 10 RESENDs of 64 long events at once would
    /// bring 10 x 64 datagrams of over 1 KB. A flood of them from the member's address (an
    /// on-path party that copied its token) gets at most the repair burst plus the repair
    /// rate times the time, in whole datagrams; one past it is counted rate-limited.
    @Test func aFloodOfResendsGetsAtMostTheRepairBytes() throws {
        var settings = ChatRelay.testSettings
        settings.repairByteRate = 50_000  // 20 us a byte: the bound below is exact
        var relay = ChatRelay(settings)
        let s = ChatRelay.second
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let long = Array(repeating: UInt8(0x6d), count: ChatWire.maxText)
        var said: [ChatEvent] = []
        for i in 1...64 {  // 5 a second: within ada's and the room's limits
            said += events(
                to: bob,
                in: relay.send(
                    .say(token: a.token, clientSequence: UInt32(i), text: long),
                    from: ada, now: t0 + UInt64(i) * s / 5))
        }
        #expect(said.count == 64)
        let start = t0 + 20 * s  // bob not yet silent (35 s)
        try #require(said.count == 64)
        let ask = ChatMessage.resend(token: b.token, first: said[0].sequence, count: 64)
        let before = relay.sent.count
        // The first RESEND is answered whole: the burst is one full RESEND.
        #expect(events(to: bob, in: relay.send(ask, from: bob, now: start)) == said)
        // Then 10 a step, 20 steps of 100 ms: 2 s.
        for step in 0...20 {
            relay.batch(Array(repeating: (ask.encoded(), bob), count: 10), now: start + UInt64(step) * s / 10)
        }
        let pulled = relay.sent[before...].filter { $0.to == bob }.reduce(0) { $0 + $1.bytes.count }
        let bound = Int(settings.repairByteBurst) + Int(settings.repairByteRate) * 2
        #expect(pulled <= bound, "\(pulled) bytes, more than \(bound)")
        #expect(pulled > bound - 2 * ChatWire.largestDatagram)  // the budget is spent, not refused whole
        #expect(relay.service.counters.drops[.chatRateLimited] > 0)
        #expect(relay.service.counters.isBalanced)
        // A normal repair after a quiet spell gets what it asks.
        let one = ChatMessage.resend(token: b.token, first: said[63].sequence, count: 1)
        #expect(events(to: bob, in: relay.send(one, from: bob, now: start + 10 * s)) == [said[63]])
    }

    /// WHO brings up to 1232 bytes for 10: within the catch-up budget, as RESEND.
    @Test func membersListsAreBoundedPerMember() {
        var settings = ChatRelay.testSettings
        (settings.messageRate, settings.messageBurst) = (1, 2)
        var relay = ChatRelay(settings)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let answered = (0..<10).map { _ in relay.send(.who(token: a.token), from: ada, now: t0 + 1).count }
        #expect(answered == [1, 1] + Array(repeating: 0, count: 8))
        #expect(relay.service.counters.drops[.chatRateLimited] == 8)
        #expect(relay.send(.who(token: a.token), from: ada, now: t0 + 1 + ChatRelay.second).count == 1)
        #expect(relay.service.counters.isBalanced)
    }

    /// hello's and echo's limit per source address does not apply: a forger on other ports
    /// of a member's address would spend it and drop the member's own datagrams.
    @Test func theRepliesLimitPerSourceAddressIsNotTheRelays() {
        var policy = AdmissionPolicy.open
        policy.rateLimit = RateLimiter.Configuration(rate: 1, burst: 1)
        policy.limitLoopback = true
        var relay = ChatRelay(ChatRelay.testSettings, policy: policy)
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        for port: UInt16 in 50000..<50100 {  // the forger, on other ports of ada's address
            _ = relay.send(.keepalive(token: 7, highest: 0), from: .v4(0x0a00_0001, port: port), now: t0 + 1)
        }
        let said = relay.send(.say(token: a.token, clientSequence: 1, text: Array("m".utf8)), from: ada, now: t0 + 1)
        #expect(texts(events(to: ada, in: said)) == ["message ada m"])
        #expect(relay.service.counters.drops[.rateLimited] == 0)
        #expect(relay.service.counters.isBalanced)
    }

    @Test func silentMembersAreEvictedAndTheRoomIsTold() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let s = ChatRelay.second
        relay.send(.keepalive(token: a.token, highest: 0), from: ada, now: t0 + 30 * s)
        // 40 s: bob is silent (over 35 s): it is sent nothing more.
        let quiet = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("anyone?".utf8)), from: ada, now: t0 + 40 * s)
        #expect(events(to: bob, in: quiet).isEmpty)
        #expect(texts(events(to: ada, in: quiet)) == ["message ada anyone?"])
        #expect(relay.tick(now: t0 + 59 * s).isEmpty)
        let evicted = relay.tick(now: t0 + 60 * s)
        #expect(texts(events(to: ada, in: evicted)) == ["timedOut bob "])
        #expect(events(to: bob, in: evicted).isEmpty)
        // Bob's token is gone.
        #expect(relay.send(.who(token: 0), from: bob, now: t0 + 61 * s).map(\.message) == [.notAMember(token: 0)])
    }

    @Test func aRebindingMemberKeepsItsPlaceAndTheRoomSeesNothing() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let moved = Endpoint.v4(0xc633_6401, port: 50000)
        let rebind = relay.join("r", as: "ada", from: moved, secret: 1, token: a.token, now: t0 + 1)
        #expect(rebind.token == a.token)
        #expect(events(to: bob, in: rebind.sent).isEmpty)
        let out = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("moved".utf8)), from: moved, now: t0 + 2)
        #expect(texts(events(to: moved, in: out)) == ["message ada moved"])
        #expect(texts(events(to: bob, in: out)) == ["message ada moved"])
        #expect(events(to: ada, in: out).isEmpty)
        // The old address is no longer the member's: not acted on, only challenged.
        let old = relay.send(.say(token: a.token, clientSequence: 2, text: []), from: ada, now: t0 + 3)
        #expect(old.count == 1 && old[0].to == ada)
        guard case .challenge? = old.first?.message else { Issue.record("\(old)"); return }
        #expect(relay.service.counters.drops[.chatMoved] == 1 && relay.service.counters.chat.messages == 1)
    }

    @Test func aJoinFloodLeavesExistingMembersAlone() {
        var relay = ChatRelay()  // 4 rooms of 4
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        var refusals: [ChatMessage?] = []
        for i in 0..<40 {
            let peer = Endpoint.v4(0x0b00_0000 + UInt32(i), port: 40000)
            let out = relay.join(
                i % 2 == 0 ? "r" : "room\(i)", as: "n\(i)", from: peer, secret: UInt64(100 + i), now: t0 + 1)
            if out.token == 0 { refusals += out.sent.map(\.message) }
        }
        #expect(refusals.contains(.refused(.roomFull)))
        #expect(refusals.contains(.refused(.tooManyRooms)))
        let out = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("still here".utf8)), from: ada, now: t0 + 2)
        #expect(texts(events(to: ada, in: out)) == ["message ada still here"])
        #expect(relay.service.counters.isBalanced)
        // A taken nick and a bad one are refused too.
        let taken = relay.join("r", as: "ada", from: eve, secret: 3, now: t0 + 3)
        #expect(taken.token == 0 && taken.sent.last?.message == .refused(.nickTaken))
        let bad = relay.join("zz", as: "a\u{202E}b", from: eve, secret: 4, now: t0 + 3)
        #expect(bad.token == 0 && bad.sent.last?.message == .refused(.badName))
    }

    @Test func membershipsPerPrefixAreLimited() {
        var settings = ChatRelay.testSettings
        settings.membershipsPerPrefix = 2
        var relay = ChatRelay(settings)
        #expect(relay.join("a", as: "x", from: ada, secret: 1, now: t0).token != 0)
        #expect(relay.join("b", as: "x", from: Endpoint.v4(0x0a00_0001, port: 40100), secret: 2, now: t0).token != 0)
        let third = relay.join("c", as: "x", from: Endpoint.v4(0x0a00_0001, port: 40200), secret: 3, now: t0)
        #expect(third.token == 0 && third.sent.last?.message == .refused(.tooManyMemberships))
    }
}
