import HelloChatWire
import HelloClient
import Testing

/// The chat client's state machine, input by input: every path the end-to-end tests
/// (Tests/integration/test_chat_*.py) take through a real relay, here without one.
@Suite struct ChatClientTests {
    typealias S = ChatSession
    let ms = ChatSession.ms

    // MARK: Joining

    @Test func theJoinTakesAChallengeACookieAWelcomeTheHistoryAndOwnJoined() {
        var s = ChatSession()
        #expect(
            S.sent(s.tick(at: 0)) == [
                .join(cookie: .none, secret: S.secret, token: 0, room: S.room, nick: Array("ada".utf8))
            ])
        #expect(
            S.sent(s.receive(.challenge(S.cookie)))
                == [.join(cookie: S.cookie, secret: S.secret, token: 0, room: S.room, nick: Array("ada".utf8))])
        #expect(s.receive(.welcome(token: S.token, instance: S.instance, nextSequence: 3, members: 2)).isEmpty)
        #expect(s.client.phase == .member)
        // The history, then our own "joined"; until it comes, input's end waits (a little).
        s.events(event(1, .joined), event(2, .message, clientSequence: 1, "hello"))
        s.input(.endOfInput)
        #expect(S.exit(s.tick(at: 1 * ms)) == nil)
        s.events(own(3, .joined))
        #expect(s.printed == ["* bob joined", "bob: hello", "* ada joined"])
        let end = s.tick(at: 2 * ms)
        #expect(S.sent(end) == [.leave(token: S.token)])
        #expect(S.exit(end) == S.Exit(0))
    }

    @Test func withoutItsOwnJoinedTheEndWaitsFourTimeoutsAtMost() {
        var s = ChatSession()
        s.join()
        s.input(.endOfInput)
        #expect(s.client.nextDeadline(0) == 4 * S.timeout)
        #expect(S.exit(s.tick(at: 4 * S.timeout - 1)) == nil)
        #expect(S.exit(s.tick(at: 4 * S.timeout)) == S.Exit(0))
    }

    @Test func aLostWelcomeMeansTheJoinIsSentAgainBackingOff() {
        var s = ChatSession(attempts: 4)
        s.tick(at: 0)
        s.receive(.challenge(S.cookie))  // the second JOIN: 1 s before the next
        #expect(S.sent(s.tick(at: 1000 * ms - 1)).isEmpty)
        let again = S.sent(s.tick(at: 1000 * ms))
        #expect(again == [.join(cookie: S.cookie, secret: S.secret, token: 0, room: S.room, nick: Array("ada".utf8))])
        #expect(S.sent(s.tick(at: 3000 * ms - 1)).isEmpty)
        #expect(S.sent(s.tick(at: 3000 * ms)).count == 1)
        s.receive(.welcome(token: S.token, instance: S.instance, nextSequence: 1, members: 1))
        #expect(s.client.phase == .member)
    }

    @Test func aJoinNeverAnsweredEndsInExit1AfterItsAttempts() {
        var s = ChatSession(attempts: 2)
        #expect(S.sent(s.tick(at: 0)).count == 1)
        #expect(S.sent(s.tick(at: 500 * ms)).count == 1)
        let end = s.tick(at: 1500 * ms)
        #expect(S.sent(end).isEmpty)
        #expect(S.exit(end) == S.Exit(1, "no answer to JOIN from \(S.address) after 2 attempt(s)"))
    }

    @Test func aRefusedJoinEndsInExit1SayingWhy() {
        var s = ChatSession()
        s.tick(at: 0)
        s.receive(.refused(.nickTaken))
        let end = s.tick(at: 1)
        #expect(
            S.exit(end) == S.Exit(1, "\(S.address) refused to join: the nick, or one that reads the same, is taken"))
        #expect(S.sent(end).isEmpty)  // no LEAVE: never a member
    }

    // MARK: Messages

    @Test func aMessageIsResentBackingOffAndGivenUpAfterItsRetriesNamingIt() {
        var s = ChatSession(attempts: 3)
        s.join()
        s.type("hi")
        #expect(S.says(s.tick(at: 0)).map(\.text) == ["hi"])
        #expect(S.says(s.tick(at: 500 * ms - 1)).isEmpty)
        #expect(S.says(s.tick(at: 500 * ms)).map(\.clientSequence) == [1])
        #expect(S.says(s.tick(at: 1500 * ms - 1)).isEmpty)
        #expect(S.says(s.tick(at: 1500 * ms)).map(\.clientSequence) == [1])
        s.input(.endOfInput)
        #expect(S.exit(s.tick(at: 3500 * ms - 1)) == nil)
        let end = s.tick(at: 3500 * ms)
        #expect(S.says(end).isEmpty)
        #expect(S.exit(end) == S.Exit(1, "1 message(s) not acknowledged by \(S.address): \"hi\""))
    }

    @Test func aMessageGivenUpThenAcknowledgedAfterAllIsOwedNoMore() {
        var s = ChatSession(attempts: 1)
        s.join()
        s.events(own(1, .joined))
        s.type("late")
        s.tick(at: 0)
        s.tick(at: 500 * ms)  // given up
        s.input(.endOfInput)
        s.events(own(2, .message, clientSequence: 1, "late"))
        #expect(S.exit(s.tick(at: 600 * ms)) == S.Exit(0))
    }

    @Test func ownCopyAcknowledgesByIdAndClientSequenceOnly() {
        var s = ChatSession()
        s.join()
        s.type("hi\r")  // a CRLF pipe's line: the CR is no part of it
        s.tick(at: 0)
        s.input(.endOfInput)
        // Another's message of the same client sequence and text, and ours under another
        // client sequence: neither is our acknowledgement.
        s.events(
            event(1, .message, clientSequence: 1, "hi"), own(2, .message, clientSequence: 7, "hi"), own(3, .joined))
        #expect(S.says(s.tick(at: 500 * ms)).map(\.clientSequence) == [1])
        s.events(own(4, .message, clientSequence: 1, "hi"))
        #expect(s.printed == ["bob: hi", "ada: hi", "* ada joined", "ada: hi"])
        let end = s.tick(at: 600 * ms)
        #expect(S.says(end).isEmpty)
        #expect(S.exit(end) == S.Exit(0))
    }

    @Test func anAcknowledgementStartsTheOthersAttemptsAgain() {
        var s = ChatSession(attempts: 2)
        s.join()
        s.type("one")
        s.type("two")
        #expect(S.says(s.tick(at: 0)).map(\.clientSequence) == [1, 2])
        #expect(S.says(s.tick(at: 500 * ms)).map(\.clientSequence) == [1, 2])
        s.events(own(1, .message, clientSequence: 1, "one"))
        // "two" had its last attempt; the relay took "one", so it is not given up but tried anew.
        s.input(.endOfInput)
        #expect(S.says(s.tick(at: 1500 * ms)).map(\.clientSequence) == [2])
        #expect(S.exit(s.effects) == nil)
    }

    @Test func noMoreThanTheWindowIsInFlight() {
        var s = ChatSession()
        s.join()
        for i in 1...10 { s.type("m\(i)") }
        #expect(S.says(s.tick(at: 0)).count == ChatClient.window)
        s.events(own(1, .message, clientSequence: 1, "m1"))
        #expect(S.says(s.tick(at: 1)).map(\.clientSequence) == [9])
    }

    @Test func noMessageIsSentPastTheRelaysDuplicateWindow() {
        var s = ChatSession()
        s.join()
        for i in 1...70 { s.type("m\(i)") }
        s.tick(at: 0)
        // Every message acknowledged but the first: the 64th after it waits for it.
        for sequence in 2...64 {
            s.events(own(UInt32(sequence), .message, clientSequence: UInt32(sequence), "m\(sequence)"))
            s.tick(at: 0)
        }
        #expect(S.says(s.effects).map(\.clientSequence).max() == 64)
        s.events(own(65, .message, clientSequence: 1, "m1"))
        #expect(S.says(s.tick(at: 0)).map(\.clientSequence) == Array(65...70))
    }

    @Test func aLineLongerThanAMessageIsNotSentAndNamedAtTheEnd() {
        var s = ChatSession()
        s.join()
        let long = String(repeating: "x", count: ChatWire.maxText + 1)
        #expect(S.notes(s.type(long)) == ["not sent, longer than \(ChatWire.maxText) bytes: \"\(long)\""])
        s.type("//who")  // a message "/who"
        #expect(S.says(s.tick(at: 0)).map(\.text) == ["/who"])
        s.events(own(1, .joined), own(2, .message, clientSequence: 1, "/who"))
        s.input(.endOfInput)
        #expect(S.exit(s.tick(at: 1)) == S.Exit(1, "1 message(s) not acknowledged by \(S.address): \"\(long)\""))
    }

    @Test func thePipeIsReadOnlyWhileTheQueueHasRoom() {
        var s = ChatSession()
        for i in 0..<ChatClient.queuedLinesLimit {
            #expect(s.client.takesLines)
            s.type("m\(i)")
        }
        #expect(!s.client.takesLines)
    }

    // MARK: The room's order

    @Test func anEventSentTwiceIsShownOnce() {
        var s = ChatSession()
        s.join()
        s.events(event(1, .joined), event(2, .message, clientSequence: 1, "once"))
        s.events(event(1, .joined), event(2, .message, clientSequence: 1, "once"))
        s.events(event(2, .message, clientSequence: 1, "once"), event(3, .left))
        #expect(s.printed == ["* bob joined", "bob: once", "* bob left"])
    }

    @Test func aGapIsAskedForWithResendAndFilledInOrder() {
        var s = ChatSession()
        s.join()
        s.events(event(1, .joined))
        #expect(S.sent(s.events(event(4, .left))) == [.resend(token: S.token, first: 2, count: 2)])
        #expect(s.printed == ["* bob joined"])
        // Unanswered, it is asked for again, backing off.
        #expect(S.sent(s.tick(at: 500 * ms)) == [.resend(token: S.token, first: 2, count: 2)])
        s.events(event(3, .message, clientSequence: 2, "b"), event(2, .message, clientSequence: 1, "a"))
        #expect(s.printed == ["* bob joined", "bob: a", "bob: b", "* bob left"])
        #expect(S.sent(s.tick(at: 5000 * ms)).isEmpty)
    }

    @Test func aGapNeverRepairedIsCountedAsMissed() {
        var s = ChatSession(attempts: 2)
        s.join()
        s.events(event(1, .joined))
        s.events(event(4, .left))  // RESEND 1
        s.tick(at: 500 * ms)  // RESEND 2
        #expect(S.sent(s.tick(at: 1500 * ms)).isEmpty)
        #expect(s.printed == ["* bob joined", "* missed 2 event(s)", "* bob left"])
    }

    @Test func aJumpTooFarToHoldIsCountedAtOnceAndOneNoBacklogCouldMeanIsNotCounted() {
        var s = ChatSession()
        s.join()
        s.events(event(1, .joined))
        s.events(event(4, .message, clientSequence: 1, "held"))  // a gap of 2, asked for
        // 300 ahead: more than is held, counted as missed at once (what was held goes first).
        #expect(S.sent(s.events(event(305, .left))).isEmpty)
        #expect(
            s.printed == ["* bob joined", "* missed 2 event(s)", "bob: held", "* missed 300 event(s)", "* bob left"])
        s.events(event(305 + 1 + 100_000, .joined))
        #expect(
            Array(s.printed.suffix(2)) == [
                "* missed an unknown number of events (the relay's sequence jumped)", "* bob joined",
            ])
        #expect(S.sent(s.tick(at: 500 * ms)).isEmpty)  // nothing left to ask for
    }

    @Test func theKeepaliveNamesTheHighestEventShown() {
        var s = ChatSession()
        s.join()
        s.events(event(1, .joined), event(2, .left))
        #expect(S.sent(s.tick(at: S.keepalive)) == [.keepalive(token: S.token, highest: 2)])
    }

    // MARK: Restarts and rebinding

    @Test func notAMemberAfterARelayRestartRejoinsAndResendsWhatWasNotAcknowledged() {
        var s = ChatSession()
        s.join()
        s.events(own(1, .joined))
        s.type("one")
        s.type("two")
        s.tick(at: 0)
        s.events(own(2, .message, clientSequence: 1, "one"))
        #expect(s.receive(.notAMember(token: S.token + 1)).isEmpty)  // not ours
        s.now = 100 * ms
        #expect(
            S.sent(s.receive(.notAMember(token: S.token)))
                == [.join(cookie: .none, secret: S.secret, token: 0, room: S.room, nick: Array("ada".utf8))])
        #expect(s.client.phase == .joining)
        s.receive(.challenge(S.cookie))
        s.receive(.welcome(token: 2, instance: S.instance + 1, nextSequence: 1, members: 1))
        // Said once, before the rejoins.
        s.events(event(1, .joined), own(2, .joined), instance: S.instance + 1)
        #expect(Array(s.printed.suffix(3)) == [ChatClient.restartNote, "* bob joined", "* ada joined"])
        // What was not acknowledged goes again at once, with the new token.
        #expect(S.sent(s.tick(at: 100 * ms)) == [.say(token: 2, clientSequence: 2, text: Array("two".utf8))])
        // A message the restarted relay delivers again is not shown again.
        s.events(own(3, .message, clientSequence: 1, "one"), instance: S.instance + 1)
        #expect(s.printed.filter { $0 == "ada: one" }.count == 1)
    }

    @Test func theRestartIsToldOnceAndAnEvictionNotAtAll() {
        var s = ChatSession()
        s.join()
        // Evicted, the same instance: joined again, nothing said.
        s.receive(.notAMember(token: S.token))
        s.receive(.challenge(S.cookie))
        s.receive(.welcome(token: S.token, instance: S.instance, nextSequence: 1, members: 1))
        #expect(s.printed.isEmpty)
        // Restarted: said once, however many datagrams follow.
        s.receive(.notAMember(token: S.token))
        s.receive(.challenge(S.cookie))
        s.receive(.welcome(token: S.token, instance: 99, nextSequence: 1, members: 1))
        s.receive(.welcome(token: S.token, instance: 99, nextSequence: 1, members: 1))
        #expect(s.printed == [ChatClient.restartNote])
        // Events of the old instance are not the room's any more.
        s.events(event(1, .joined), instance: S.instance)
        #expect(s.printed == [ChatClient.restartNote])
    }

    @Test func aChallengeWhileAMemberIsARebindingProvenByCookieTokenAndSecret() {
        var s = ChatSession()
        s.join()
        s.type("hi")
        s.tick(at: 0)
        s.now = 200 * ms
        let rebound = ChatCookie(epoch: 4, mac: 0xbeef)
        #expect(
            S.sent(s.receive(.challenge(rebound)))
                == [.join(cookie: rebound, secret: S.secret, token: S.token, room: S.room, nick: Array("ada".utf8))])
        #expect(s.client.phase == .member)
        // Another token's WELCOME is not ours; ours moves us: the message and a keepalive at once.
        s.receive(.welcome(token: S.token + 1, instance: S.instance, nextSequence: 1, members: 1))
        #expect(S.sent(s.tick(at: 200 * ms)).isEmpty)
        s.receive(.welcome(token: S.token, instance: S.instance, nextSequence: 1, members: 1))
        #expect(
            S.sent(s.tick(at: 200 * ms))
                == [
                    .say(token: S.token, clientSequence: 1, text: Array("hi".utf8)),
                    .keepalive(token: S.token, highest: 0),
                ])
    }

    // MARK: Names

    @Test func ownNickChangesOnlyOnARenameNamingOwnId() {
        var s = ChatSession()
        s.join()
        #expect(S.sent(s.type("/nick grace")) == [.nick(token: S.token, nick: Array("grace".utf8))])
        #expect(s.client.nick == Array("ada".utf8))  // until the relay says so
        s.events(event(1, .renamed, nick: "ada", "grace"))  // another "ada", not us
        #expect(s.client.nick == Array("ada".utf8))
        s.events(own(2, .renamed, "grace"))
        #expect(s.client.nick == Array("grace".utf8))
        #expect(s.printed == ["* ada is now grace", "* ada is now grace"])
        // The next JOIN (a restart) names us by it.
        let rejoin = S.sent(s.receive(.notAMember(token: S.token)))
        #expect(rejoin == [.join(cookie: .none, secret: S.secret, token: 0, room: S.room, nick: Array("grace".utf8))])
    }

    @Test func aBadNickIsRefusedHereAndACommandMistypedNoted() {
        var s = ChatSession()
        s.join()
        #expect(S.sent(s.type("/nick a\u{200B}b")).isEmpty)
        #expect(S.notes(s.effects).count == 1)
        #expect(S.notes(s.type("/nick")) == ["/nick NEW: a new nick, 1-32 bytes"])
        #expect(
            S.notes(s.type("/dance\u{1b}[2J")) == [
                "/dance\\x1b[2J: no such command (/who, /nick NEW, /quit; //text sends /text)"
            ])
    }

    @Test func aRefusalWhileAMemberIsANote() {
        var s = ChatSession()
        s.join()
        #expect(S.notes(s.receive(.refused(.badName))).count == 1)
        #expect(s.client.phase == .member)
    }

    // MARK: What is not ours

    @Test func datagramsWithoutOurTagAreIgnored() {
        var s = ChatSession()
        s.tick(at: 0)
        #expect(s.receive(.challenge(S.cookie), tag: S.tag ^ 1).isEmpty)
        s.join()
        let forged = ChatMessage.events(instance: S.instance, [event(1, .message, clientSequence: 1, "forged")])
        #expect(s.receive(forged, tag: 7).isEmpty)
        #expect(s.receive(.notAMember(token: S.token), tag: 7).isEmpty)
        #expect(s.client.phase == .member)
        // Nor is anything longer than the protocol allows, nor what does not parse.
        let text = String(repeating: "x", count: ChatWire.largestDatagram / 2)
        let long = ChatMessage.events(
            instance: S.instance,
            [
                event(1, .message, clientSequence: 1, text),
                event(2, .message, clientSequence: 2, text),
            ])
        #expect(s.receive(long).isEmpty)
        #expect(s.input(.datagram([1, 2, 3])).isEmpty)
        #expect(s.printed.isEmpty)
        // With our tag, the same is the room's.
        #expect(S.printed(s.receive(forged)) == ["bob: forged"])
    }

    // MARK: /who

    @Test func whoTypedBeforeTheJoinCompletesWaitsForIt() {
        var s = ChatSession()
        s.tick(at: 0)
        #expect(S.sent(s.type("/who")).isEmpty)
        s.input(.endOfInput)
        s.receive(.challenge(S.cookie))
        s.receive(.welcome(token: S.token, instance: S.instance, nextSequence: 1, members: 1))
        s.events(own(1, .joined))
        let asked = s.tick(at: 1)
        #expect(S.sent(asked) == [.who(token: S.token)])
        #expect(S.exit(asked) == nil)  // its answer is waited for
        s.receive(.members(instance: S.instance, [Array("ada".utf8), Array("b\u{1b}b".utf8)]))
        #expect(S.exit(s.tick(at: 2)) == S.Exit(0))
        #expect(s.printed == ["* ada joined", "* members: ada, b\\x1bb"])
    }

    @Test func membersThatNoneAskedForAreNotShown() {
        var s = ChatSession()
        s.join()
        s.receive(.members(instance: S.instance, [Array("ada".utf8)]))
        #expect(s.printed.isEmpty)
    }

    // MARK: A terminal

    @Test func onATerminalKeysAreEditedSentShownPendingThenChecked() {
        var s = ChatSession(terminal: true)
        s.join()
        let typed = s.input(.keys(Array("hx\u{7f}i".utf8)))
        #expect(typed == [.redraw(LiveArea(pending: [], prompt: "[lobby] ada> ", text: ["h", "i"], cursor: 2))])
        #expect(
            s.input(.keys([0x0d])) == [
                .redraw(LiveArea(pending: ["ada: hi (sending)"], prompt: "[lobby] ada> ", text: [], cursor: 0))
            ])
        #expect(S.says(s.tick(at: 0)).map(\.text) == ["hi"])
        s.events(own(1, .message, clientSequence: 1, "hi"))
        #expect(s.printed == ["ada: hi ✓"])
    }

    @Test func onATerminalCtrlCThenCtrlCLeavesAtOnceNamingWhatWasNotAcknowledged() {
        var s = ChatSession(terminal: true)
        s.join()
        s.input(.keys(Array("hi\r".utf8)))
        s.tick(at: 0)
        s.input(.keys([0x03]))  // /quit: waits for the acknowledgement
        #expect(S.exit(s.tick(at: 1)) == nil)
        #expect(
            s.effects.last
                == .redraw(
                    LiveArea(pending: ["ada: hi (sending)"], prompt: "[lobby] ada (leaving)> ", text: [], cursor: 0)))
        s.input(.keys(Array("ignored\r".utf8)))  // leaving: only Ctrl-C counts
        s.input(.keys([0x03]))
        let end = s.tick(at: 2)
        #expect(S.sent(end).last == .leave(token: S.token))
        #expect(S.exit(end) == S.Exit(1, "1 message(s) not acknowledged by \(S.address): \"hi\""))
    }

    @Test func onATerminalAMessageGivenUpIsNotedAtOnce() {
        var s = ChatSession(attempts: 1, terminal: true)
        s.join()
        s.input(.keys(Array("hi\r".utf8)))
        s.tick(at: 0)
        #expect(S.notes(s.tick(at: 500 * ms)) == ["not acknowledged after 1 attempt(s): \"hi\""])
    }

    @Test func aSignalLeavesAtOnce() {
        var s = ChatSession()
        s.join()
        s.type("hi")
        s.tick(at: 0)
        s.input(.leaveNow)
        #expect(s.client.nextDeadline(5) == 5)
        #expect(S.exit(s.tick(at: 5))?.code == 1)
        #expect(s.tick(at: 6).isEmpty)  // after the exit, nothing more
    }
}
