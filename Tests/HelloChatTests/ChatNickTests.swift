import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The relay's nick policy (docs/PROTOCOL.md, "Names"): a nick that reads as a member's
/// nick is taken, on JOIN and on NICK; one with invisible characters or mixed scripts is
/// a bad name.
@Suite struct ChatNickTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let bob = Endpoint.v4(0x0a00_0002, port: 40002)
    let eve = Endpoint.v4(0x0a00_0003, port: 40003)
    let t0 = 5 * ChatRelay.second

    /// `nick` joining room "r", where "alice" is a member: nil if welcomed, else why not.
    func refusalNextToAlice(_ nick: String) -> ChatRefusal? {
        var relay = ChatRelay()
        #expect(relay.join("r", as: "alice", from: ada, secret: 1, now: t0).token != 0)
        let out = relay.join("r", as: nick, from: eve, secret: 2, now: t0 + 1)
        #expect(relay.service.counters.isBalanced)
        guard out.token == 0 else { return nil }
        guard case .refused(let reason)? = out.sent.last?.message else {
            Issue.record("\(nick): neither welcomed nor refused")
            return nil
        }
        return reason
    }

    @Test func aLookAlikeOfAMembersNickIsTakenOnJoin() {
        #expect(refusalNextToAlice("Alice") == .nickTaken)
        #expect(refusalNextToAlice("ＡＬＩＣＥ") == .nickTaken)  // fullwidth
        // All Cyrillic, single script: its letters read as Latin ones.
        #expect(refusalNextToAlice("\u{0430}\u{04CF}\u{0456}\u{0441}\u{0435}") == .nickTaken)
        // Invisible or mixed-script: refused for its characters, whoever is in the room.
        #expect(refusalNextToAlice("alice\u{200B}") == .badName)
        #expect(refusalNextToAlice("\u{0430}lice") == .badName)
    }

    @Test func aDistinctNickIsWelcomed() {
        for nick in ["alicia", "bob", "alice2", "алиса", "אליס"] {
            #expect(refusalNextToAlice(nick) == nil, "\(nick)")
        }
    }

    @Test func precomposedAndCombiningFormsAreOneNick() {
        var relay = ChatRelay()
        #expect(relay.join("r", as: "jos\u{E9}", from: ada, secret: 1, now: t0).token != 0)
        let out = relay.join("r", as: "jose\u{301}", from: eve, secret: 2, now: t0 + 1)
        #expect(out.token == 0 && out.sent.last?.message == .refused(.nickTaken))
    }

    @Test func aLookAlikeRenameIsRefusedAndADistinctOneTaken() {
        var relay = ChatRelay()
        let a = relay.join("r", as: "alice", from: ada, secret: 1, now: t0)
        let b = relay.join("r", as: "bob", from: bob, secret: 2, now: t0)
        #expect(a.token != 0 && b.token != 0)
        for lookAlike in ["ALICE", "\u{0430}\u{04CF}\u{0456}\u{0441}\u{0435}"] {
            let out = relay.send(.nick(token: b.token, nick: Array(lookAlike.utf8)), from: bob, now: t0 + 1)
            #expect(out.map(\.message) == [.refused(.nickTaken)], "\(lookAlike)")
        }
        for bad in ["bob\u{200D}", "b\u{043E}b", "bob\u{FE0F}", "bo\u{AD}b"] {
            let out = relay.send(.nick(token: b.token, nick: Array(bad.utf8)), from: bob, now: t0 + 1)
            #expect(out.map(\.message) == [.refused(.badName)], "\(bad.unicodeScalars.map { $0.value })")
        }
        // Its own nick in another case is not another member's.
        let own = relay.send(.nick(token: b.token, nick: Array("Bob".utf8)), from: bob, now: t0 + 2)
        #expect(texts(events(to: ada, in: own)) == ["renamed bob Bob"])
        let out = relay.send(.nick(token: b.token, nick: Array("carol".utf8)), from: bob, now: t0 + 3)
        #expect(texts(events(to: ada, in: out)) == ["renamed Bob carol"])
        // ...and "bob" is free again, "carol" is not.
        let again = relay.send(.nick(token: a.token, nick: Array("CAROL".utf8)), from: ada, now: t0 + 4)
        #expect(again.map(\.message) == [.refused(.nickTaken)])
        #expect(relay.service.counters.isBalanced)
    }

    @Test func roomNamesRefuseInvisibleAndMixedScriptCharacters() {
        var relay = ChatRelay()
        #expect(
            relay.join("lobby\u{200B}", as: "ada", from: ada, secret: 1, now: t0).sent.last?.message
                == .refused(.badName))
        #expect(
            relay.join("l\u{043E}bby", as: "ada", from: ada, secret: 2, now: t0).sent.last?.message
                == .refused(.badName))
        #expect(relay.join("лобби", as: "ada", from: ada, secret: 3, now: t0).token != 0)
    }
}
