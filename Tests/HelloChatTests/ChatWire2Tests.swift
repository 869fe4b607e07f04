import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The relay under version 2: tags on every answer, ids for senders, secrets never sent,
/// rebinding, and hellod 1.x's clients told in their own format.
@Suite struct ChatWire2Tests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let cy = Endpoint.v4(0x0a00_0004, port: 40004)
    let dee = Endpoint.v4(0x0a00_0005, port: 40005)
    let eve = Endpoint.v4(0x0a00_0003, port: 40003)
    /// Where ada's NAT moves her.
    let moved = Endpoint.v4(0xc633_6401, port: 50000)
    let t0 = 5 * ChatRelay.second

    /// Answers to unproven sources carry the tag of the request they answer.
    @Test func answersToUnprovenSourcesCarryTheRequestsTag() {
        var relay = ChatRelay()
        let join = ChatMessage.join(cookie: .none, secret: testSecret(7), token: 0, room: [0x72], nick: [0x6e])
        var out = relay.send(join, from: eve, now: t0, tag: 0x1111)
        #expect(out.count == 1 && out[0].tag == 0x1111)
        guard case .challenge(let cookie)? = out.first?.message else { Issue.record("\(out)"); return }
        // Another tag, a forged cookie: CHALLENGE again, with that tag.
        let forged = ChatMessage.join(
            cookie: ChatCookie(epoch: cookie.epoch, mac: cookie.mac ^ 1), secret: testSecret(7),
            token: 0, room: [0x72], nick: [0x6e])
        out = relay.send(forged, from: eve, now: t0, tag: 0x2222)
        #expect(out.count == 1 && out[0].tag == 0x2222 && relay.service.counters.drops[.chatBadCookie] == 1)
        // NOT A MEMBER.
        out = relay.send(.leave(token: 0x5eed), from: eve, now: t0, tag: 0x3333)
        #expect(out.map(\.message) == [.notAMember(token: 0x5eed)] && out[0].tag == 0x3333)
        // REFUSED: a bad room name, a taken nick.
        let bad = ChatMessage.join(
            cookie: cookie, secret: testSecret(7), token: 0, room: Array("a\u{202E}b".utf8), nick: [0x6e])
        out = relay.send(bad, from: eve, now: t0, tag: 0x4444)
        #expect(out.map(\.message) == [.refused(.badName)] && out[0].tag == 0x4444)
        #expect(relay.join("r", as: "ada", from: ada, secret: 1, now: t0).token != 0)
        let taken = ChatMessage.join(
            cookie: cookie, secret: testSecret(7), token: 0, room: [0x72], nick: Array("ada".utf8))
        out = relay.send(taken, from: eve, now: t0, tag: 0x5555)
        #expect(out.map(\.message) == [.refused(.nickTaken)] && out[0].tag == 0x5555)
        #expect(relay.service.counters.isBalanced)
    }

    /// What a member is sent carries the tag of its JOIN, whatever tag its later requests
    /// carry: WELCOME, the room's EVENTS, MEMBERS, a RESEND's events, a duplicate's copy,
    /// a keepalive's catch-up, a refused rename.
    @Test func aMembersDatagramsCarryTheTagOfItsJoin() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        #expect(a.sent.filter { $0.to == ada }.allSatisfy { $0.tag == testTag(ada) })
        #expect(a.sent.contains { if case .welcome? = $0.message { return true } else { return false } })
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let other: UInt64 = 0x07e4_0000_0000_0001
        let say = ChatMessage.say(token: a.token, clientSequence: 1, text: Array("hi".utf8))
        let said = relay.send(say, from: ada, now: t0 + 1, tag: other)
        let copy = relay.send(say, from: ada, now: t0 + 2, tag: other)  // a duplicate: its copy
        let who = relay.send(.who(token: a.token), from: ada, now: t0 + 3, tag: other)
        guard let first = events(to: bob, in: said).first?.sequence else { Issue.record("bob got \(said)"); return }
        let resend = relay.send(.resend(token: a.token, first: first, count: 1), from: ada, now: t0 + 4, tag: other)
        let behind = relay.send(.keepalive(token: a.token, highest: first - 1), from: ada, now: t0 + 5, tag: other)
        let rename = relay.send(.nick(token: a.token, nick: Array("bob".utf8)), from: ada, now: t0 + 6, tag: other)
        for (what, out) in [
            ("events", said), ("copy", copy), ("members", who), ("resend", resend), ("catch-up", behind),
            ("refused", rename),
        ] {
            let toAda = out.filter { $0.to == ada }
            #expect(!toAda.isEmpty && toAda.allSatisfy { $0.tag == testTag(ada) }, "\(what): \(toAda)")
        }
        #expect(rename.map(\.message) == [.refused(.nickTaken)])
        #expect(said.filter { $0.to == bob }.map(\.tag) == [testTag(bob)])
        _ = b
        #expect(relay.service.counters.isBalanced)
    }

    /// A fan-out: the first member's EVENTS written whole, every other member's a repeat
    /// with its own head; each carries its own member's tag.
    @Test func everyMemberOfAFanOutGetsItsOwnTag() {
        var relay = ChatRelay()  // rooms of 4
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        for (k, peer) in [bob, cy, dee].enumerated() {
            #expect(relay.join("r", as: "m\(k)", from: peer, secret: UInt64(k + 2), now: t0).token != 0)
        }
        ChatMessage.say(token: a.token, clientSequence: 1, text: Array("all".utf8)).encoded(tag: 9).withUnsafeBytes {
            #expect(relay.service.handle(Datagram(payload: $0, peer: ada), now: t0 + 1, into: &relay.outbox))
        }
        #expect(relay.service.endBatch(now: t0 + 1, into: &relay.outbox))
        let entries = Array(relay.outbox.entries)
        #expect(entries.count == 4 && entries.filter { $0.headLength == ChatWire.headerLength }.count == 3)
        for entry in entries {
            let decoded = ChatMessage.decode(relay.outbox.datagram(entry))
            #expect(decoded?.tag == testTag(entry.destination), "to \(entry.destination)")
            guard
                case .events(
                    _,
                    let events)? = decoded?.message
            else { Issue.record("\(String(describing: decoded))"); continue }
            #expect(events.map(\.sender) == [testSecret(1).id])
        }
        relay.flush()
    }

    /// Every repeat of a fan-out begins as every datagram does: version 2, then the type
    /// (EVENTS, 131), then the member's tag, byte for byte. (Its first form stored the two
    /// bytes as a native UInt16: every member but the first got [131, 2, ...].)
    @Test func aRepeatsHeadIsVersionTypeAndTagInOrder() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        #expect(relay.join("r", as: "bob", from: bob, secret: 2, now: t0).token != 0)
        ChatMessage.say(token: a.token, clientSequence: 1, text: [0x61]).encoded(tag: 9).withUnsafeBytes {
            #expect(relay.service.handle(Datagram(payload: $0, peer: ada), now: t0 + 1, into: &relay.outbox))
        }
        #expect(relay.service.endBatch(now: t0 + 1, into: &relay.outbox))
        let repeats = relay.outbox.entries.filter { $0.headLength > 0 }
        #expect(repeats.count == 1)
        let tag = testTag(bob)
        let expected: [UInt8] = [2, 131] + (0..<8).map { UInt8(truncatingIfNeeded: tag >> (56 - 8 * $0)) }
        for entry in repeats {
            #expect(entry.destination == bob)
            #expect(Array(relay.outbox.head(of: entry)) == expected)
        }
        relay.flush()
    }

    /// Events name their sender by the SHA-256 id of its secret: joined, message, renamed,
    /// left alike.
    @Test func eventsNameTheSenderByItsSecretsId() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        var seen = events(to: bob, in: b.sent)
        seen += events(
            to: bob, in: relay.send(.say(token: a.token, clientSequence: 1, text: [0x61]), from: ada, now: t0 + 1))
        seen += events(to: bob, in: relay.send(.nick(token: a.token, nick: Array("ada2".utf8)), from: ada, now: t0 + 2))
        seen += events(to: bob, in: relay.send(.leave(token: a.token), from: ada, now: t0 + 3))
        #expect(seen.map(\.kind) == [.joined, .joined, .message, .renamed, .left])
        #expect(
            seen.map(\.sender) == [testSecret(1).id, testSecret(2).id] + Array(repeating: testSecret(1).id, count: 3))
        // The id is SHA-256's: ChatSecret.id of these bytes is hashlib's (SHA256Tests), and
        // nothing else (not the secret's words themselves).
        #expect(!seen.contains { $0.sender == testSecret(1).high || $0.sender == testSecret(1).low })
    }

    /// The secret travels only in JOIN, client to relay: nothing the relay sends holds it,
    /// nor either half of it, through joins, messages, a rename, WHO, RESEND, a duplicate
    /// JOIN, a move and a leave.
    @Test func noRelayDatagramContainsASecret() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        _ = relay.join("r", as: "ada", from: ada, secret: 1, now: t0 + 1)  // a duplicate: WELCOME again
        for k in 1...3 {
            relay.send(
                .say(token: a.token, clientSequence: UInt32(k), text: Array("m\(k)".utf8)), from: ada, now: t0 + 2)
            relay.send(
                .say(token: b.token, clientSequence: UInt32(k), text: Array("n\(k)".utf8)), from: bob, now: t0 + 2)
        }
        relay.send(.nick(token: b.token, nick: Array("bobby".utf8)), from: bob, now: t0 + 3)
        relay.send(.who(token: b.token), from: bob, now: t0 + 3)
        relay.send(.resend(token: b.token, first: 0, count: 64), from: bob, now: t0 + 3)
        relay.send(.keepalive(token: a.token, highest: 0), from: moved, now: t0 + 4)
        _ = relay.join("r", as: "ada", from: moved, secret: 1, token: a.token, now: t0 + 4)
        relay.send(.leave(token: b.token), from: bob, now: t0 + 5)
        #expect(relay.sent.count > 20)
        func bytes(_ words: UInt64...) -> [UInt8] {
            words.flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (56 - 8 * $0)) } }
        }
        for secret in [testSecret(1), testSecret(2)] {
            for needle in [bytes(secret.high, secret.low), bytes(secret.high), bytes(secret.low)] {
                for sent in relay.sent {
                    let found =
                        sent.bytes.count >= needle.count
                        && (0...(sent.bytes.count - needle.count)).contains {
                            Array(sent.bytes[$0..<$0 + needle.count]) == needle
                        }
                    #expect(!found, "a secret's bytes in a datagram to \(sent.to)")
                }
            }
        }
    }

    /// A JOIN repeated because its WELCOME was lost is known by the secret's id and the
    /// address together: the same member, WELCOMEd again (same token, nothing to the room).
    /// Another secret from that address, or that secret from another, is a new joiner.
    @Test func aRepeatedJoinIsKnownByItsIdAndAddress() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let again = relay.join("r", as: "ada", from: ada, secret: 1, now: t0 + 1)
        #expect(again.token == a.token && events(to: bob, in: again.sent).isEmpty)
        #expect(relay.service.counters.chat.members == 2)
        let otherSecret = relay.join("r", as: "ada", from: ada, secret: 3, now: t0 + 2)
        #expect(otherSecret.token == 0 && otherSecret.sent.last?.message == .refused(.nickTaken))
        let otherAddress = relay.join("r", as: "ada", from: eve, secret: 1, now: t0 + 2)
        #expect(otherAddress.token == 0 && otherAddress.sent.last?.message == .refused(.nickTaken))
        #expect(relay.service.counters.isBalanced)
    }

    // MARK: Rebinding

    /// A member's datagram from a new address: not acted on, counted chat-moved, answered
    /// with a CHALLENGE for that address (with the datagram's tag, no longer than it); the
    /// JOIN with that cookie, the token and the member's secret moves it: the same token, a
    /// WELCOME, nothing to the room; from then on it is sent at the new address only.
    @Test func aMovedMemberIsChallengedThenRejoinsWithItsSecret() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let tag: UInt64 = 0x0bad_cafe
        let asked = relay.send(.keepalive(token: a.token, highest: 0), from: moved, now: t0 + 1, tag: tag)
        #expect(asked.count == 1 && asked[0].to == moved && asked[0].tag == tag)
        #expect(relay.sent.last?.bytes.count == ChatWire.challengeLength)  // 22: the keepalive's own length
        guard case .challenge(let cookie)? = asked.first?.message else { Issue.record("\(asked)"); return }
        var c = relay.service.counters
        #expect(c.drops[.chatMoved] == 1 && c.read == c.replied + c.drops.total)
        let joins = c.chat.joins
        let rejoin = ChatMessage.join(
            cookie: cookie, secret: testSecret(1), token: a.token, room: Array("r".utf8),
            nick: Array("ada".utf8))
        let out = relay.send(rejoin, from: moved, now: t0 + 2, tag: tag)
        #expect(out.count == 1 && out[0].to == moved && out[0].tag == tag)
        guard case .welcome(let token, _, _, _)? = out.first?.message else { Issue.record("\(out)"); return }
        #expect(token == a.token)
        c = relay.service.counters
        #expect(c.chat.joins == joins && c.chat.members == 2)
        #expect(events(to: bob, in: out).isEmpty)  // no joined, no left
        // Her messages now reach bob from the new address; she is sent at the new one only.
        let said = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("here".utf8)), from: moved, now: t0 + 3,
            tag: tag)
        #expect(texts(events(to: bob, in: said)) == ["message ada here"])
        #expect(texts(events(to: moved, in: said)) == ["message ada here"])
        #expect(events(to: ada, in: said).isEmpty)
        let bobs = relay.send(.say(token: b.token, clientSequence: 1, text: Array("hi".utf8)), from: bob, now: t0 + 4)
        #expect(texts(events(to: moved, in: bobs)) == ["message bob hi"] && events(to: ada, in: bobs).isEmpty)
        #expect(bobs.filter { $0.to == moved }.allSatisfy { $0.tag == tag })
        #expect(relay.service.counters.isBalanced)
    }

    /// The token alone does not move a member: a JOIN with a valid cookie for its address
    /// and the member's token but another secret is dropped (chat-bad-token), unanswered,
    /// and the member stays where it was.
    @Test func aRebindingJoinWithAnotherSecretIsDropped() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        let cookie = relay.cookie(for: eve, now: t0 + 1)
        #expect(!cookie.isNone)
        let steal = ChatMessage.join(
            cookie: cookie, secret: testSecret(99), token: a.token, room: Array("r".utf8),
            nick: Array("ada".utf8))
        #expect(relay.send(steal, from: eve, now: t0 + 1).isEmpty)
        #expect(relay.service.counters.drops[.chatBadToken] == 1)
        // Still ada's, at her address: her SAY is acted on; one from eve's is not.
        let said = relay.send(
            .say(token: a.token, clientSequence: 1, text: Array("still me".utf8)), from: ada, now: t0 + 2)
        #expect(texts(events(to: bob, in: said)) == ["message ada still me"])
        #expect(texts(events(to: ada, in: said)) == ["message ada still me"])
        let forged = relay.send(.say(token: a.token, clientSequence: 2, text: Array("me".utf8)), from: eve, now: t0 + 3)
        #expect(events(to: bob, in: forged).isEmpty && forged.allSatisfy { $0.to == eve })
        #expect(relay.service.counters.drops[.chatMoved] == 1 && relay.service.counters.isBalanced)
    }

    /// A member's datagram of under 22 bytes (LEAVE, WHO: 18) from a new address gets
    /// nothing (a CHALLENGE would be longer) and spends no budget, is counted chat-moved,
    /// and is not acted on.
    @Test func aShortDatagramFromANewAddressGetsNothing() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        _ = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        for _ in 0..<15 {
            #expect(relay.send(.leave(token: a.token), from: moved, now: t0 + 1).isEmpty)
            #expect(relay.send(.who(token: a.token), from: moved, now: t0 + 1).isEmpty)
        }
        #expect(relay.service.counters.drops[.chatMoved] == 30)
        // Unanswered, they spent none of the address's budget of answers (20 at once): a
        // keepalive from there is still challenged.
        let asked = relay.send(.keepalive(token: a.token, highest: 0), from: moved, now: t0 + 1)
        guard case .challenge? = asked.first?.message else { Issue.record("\(asked)"); return }
        #expect(relay.service.counters.drops[.chatMoved] == 31 && relay.service.counters.drops[.chatRateLimited] == 0)
        #expect(relay.service.counters.chat.members == 2)
        let who = relay.send(.who(token: a.token), from: ada, now: t0 + 2)
        guard case .members(_, let nicks)? = who.first?.message else { Issue.record("\(who)"); return }
        #expect(Set(nicks) == [Array("ada".utf8), Array("bob".utf8)])
        #expect(relay.service.counters.isBalanced)
    }

    // MARK: Version 1

    static let legacyRefusal: [UInt8] = {
        let words = [1, 134, 3, 0] + Array("chat protocol 2".utf8)
        return words + [UInt8](repeating: 0, count: 64 - words.count)
    }()

    /// hellod 1.x's JOIN (64 bytes at least): a version-1 REFUSED, too many rooms, 64 bytes.
    static func legacyJoin(length: Int = 64) -> [UInt8] {
        let head: [UInt8] = [1, 1] + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 0, 0, 0, 0, 1]
        return head + [1, 0x72, 1, 0x6e] + [UInt8](repeating: 0, count: max(0, length - head.count - 4))
    }

    /// hellod 1.x's SAY: version, type, token, client sequence, text.
    static func legacySay(token: UInt64) -> [UInt8] {
        [1, 2] + (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * $0)) } + [0, 0, 0, 1, 0, 2, 0x68, 0x69]
    }

    @Test func versionOneRequestsGetVersionOneRefusalsNeverLonger() {
        var relay = ChatRelay()
        func answer(_ bytes: [UInt8]) -> [[UInt8]] {
            let before = relay.sent.count
            relay.batch([(bytes, eve)], now: t0)
            #expect(relay.sent[before...].allSatisfy { $0.to == eve && $0.bytes.count <= bytes.count })
            return relay.sent[before...].map(\.bytes)
        }
        #expect(answer(Self.legacyJoin()) == [Self.legacyRefusal])
        #expect(answer(Self.legacyJoin(length: 300)) == [Self.legacyRefusal])
        let token: UInt64 = 0x0102_0304_0506_0708
        #expect(answer(Self.legacySay(token: token)) == [[1, 133, 1, 2, 3, 4, 5, 6, 7, 8]])
        // a LEAVE: 10 bytes for 10
        #expect(answer([1, 4, 1, 2, 3, 4, 5, 6, 7, 8]) == [[1, 133, 1, 2, 3, 4, 5, 6, 7, 8]])
        #expect(relay.service.counters.drops[.chatOldVersion] == 4)
        // Nothing for a JOIN under 64 bytes, or a request with token 0: malformed.
        #expect(answer(Self.legacyJoin(length: 63)).isEmpty)
        #expect(answer(Self.legacySay(token: 0)).isEmpty)
        #expect(answer([1, 4, 0, 0, 0, 0, 0, 0, 0, 0]).isEmpty)
        #expect(answer([1, 4, 1, 2, 3]).isEmpty)  // no token at all
        let c = relay.service.counters
        #expect(c.drops[.chatOldVersion] == 4 && c.drops[.chatMalformed] == 4)
        #expect(c.read == 8 && c.isBalanced && c.replied == 0)
    }

    /// The unproven-answer budget (20 at once, 20 a second per endpoint in the tests'
    /// settings) bounds version-1 refusals and moved members' CHALLENGEs as it does every
    /// answer to a source not proven.
    @Test(arguments: 0..<3) func theUnprovenBudgetBoundsVersionOneRefusalsAndRebindingChallenges(kind: Int) {
        var relay = ChatRelay()
        let a = relay.join("r", as: "ada", from: ada, secret: 1, now: t0)
        let request: [UInt8]
        switch kind {
        case 0: request = Self.legacyJoin()
        case 1: request = Self.legacySay(token: 42)
        default: request = ChatMessage.keepalive(token: a.token, highest: 0).encoded(tag: 3)
        }
        func flood(_ times: Int, at now: UInt64) -> Int {
            let before = relay.sent.count
            relay.batch(Array(repeating: (request, moved), count: times), now: now)
            return relay.sent[before...].filter { $0.to == moved }.count
        }
        #expect(flood(100, at: t0 + 1) == 20)
        #expect(flood(100, at: t0 + 1 + ChatRelay.second / 2) == 10)
        #expect(relay.service.counters.drops[.chatRateLimited] == 170)
        #expect(relay.service.counters.drops[kind == 2 ? .chatMoved : .chatOldVersion] == 30)
        #expect(relay.service.counters.isBalanced)
    }
}
