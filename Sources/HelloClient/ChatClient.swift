import HelloChatWire

/// The chat client's state, as a reducer: each input (a datagram, keys or a line, the
/// clock, the end of input) changes it and says what to do (send, print, redraw, exit).
/// No system calls and no clock of its own: the loop in `hello` owns the socket, the
/// terminal and the time, so that every path here can be tested by feeding it inputs.
package struct ChatClient {
    package enum Phase: Equatable {
        case joining, member
        case failed(String)
    }

    /// Own messages in flight at most, and lines waiting at most (`DeliveryLedger`).
    package static let window = DeliveryLedger.window
    package static let queuedLinesLimit = DeliveryLedger.queuedLinesLimit
    static let longestBackoff: UInt64 = 4_000_000_000
    /// Shown when a WELCOME (after NOT A MEMBER) comes from a new relay instance.
    package static let restartNote = "* the relay restarted: members rejoin"

    let settings: ChatSettings
    package private(set) var nick: [UInt8]
    /// Who this client is: its secret, sent only in JOIN, and the id events name it by
    /// (`ChatSecret.id`); both kept for its life, so that it is the same member to the
    /// room after a relay restart or a rebinding. Its tag (`settings.tag`), in every
    /// datagram either way: what does not carry it did not come from the relay
    /// (docs/PROTOCOL.md, "Framing").
    let id: UInt64

    package private(set) var phase = Phase.joining
    var cookie = ChatCookie.none
    var joinAttempts = 0
    /// 0: the first tick sends the first JOIN.
    var joinDue: UInt64 = 0
    var welcomedAt: UInt64 = 0
    var token: UInt64 = 0
    var keepaliveDue: UInt64 = 0
    /// The relay instance the room sequences belong to; the room's events in its order,
    /// and the RESEND of a gap in it.
    var instance: UInt64?
    var order = RoomOrder()
    var gapAttempts = 0
    var gapDue: UInt64?
    var ownJoinSeen = false
    /// Messages shown, by (sender id, client sequence): a relay that restarted may deliver one
    /// again under a new instance.
    var shown = RecentKeys<MessageKey>(capacity: 4096)
    /// /who typed before the join completed: sent once it has.
    var whoWanted = false
    /// WHOs sent and not answered yet (a MEMBERS that none asked for is not shown), and until
    /// when their answer is waited for.
    var whoUnanswered = 0
    var whoDue: UInt64 = 0

    var ledger = DeliveryLedger()
    package private(set) var inputEnded = false
    /// Leave now (a signal, a second Ctrl-C), without waiting for acknowledgements.
    var quit = false
    var exited = false
    /// The line being typed on a terminal.
    var editor = LineEditor()
    var drawn: LiveArea?
    /// What this input asks for, in order.
    var effects: [ChatEffect] = []

    struct MessageKey: Hashable {
        let sender: UInt64
        let clientSequence: UInt32
    }

    package init(_ settings: ChatSettings) {
        self.settings = settings
        self.nick = settings.nick
        self.id = settings.secret.id
    }

    // MARK: The reducer

    package mutating func handle(_ input: ChatInput, now: UInt64) -> [ChatEffect] {
        guard !exited else { return [] }
        effects = []
        switch input {
        case .datagram(let bytes): receive(bytes, now)
        case .keys(let bytes): keys(bytes, now)
        case .line(let bytes): line(bytes, now)
        case .endOfInput: inputEnded = true
        case .leaveNow: quit = true
        case .tick:
            timers(now)
            if isFinished(now) { finish() }
        }
        if settings.terminal && !exited { redraw() }
        return effects
    }

    /// Whether the loop is to give this client more lines from a pipe now: not past the end
    /// of input, and only while the queue has room.
    package var takesLines: Bool { !inputEnded && !quit && ledger.hasRoom }

    /// When the next tick is due; nil: none (only input or a datagram moves things on).
    package func nextDeadline(_ now: UInt64) -> UInt64? {
        if quit { return now }
        switch phase {
        case .joining: return joinDue
        case .failed: return now
        case .member:
            var next = keepaliveDue
            if let due = ledger.nextDue { next = min(next, due) }
            if let gapDue { next = min(next, gapDue) }
            if whoUnanswered > 0 { next = min(next, whoDue) }
            if inputEnded && ledger.isSettled && !ownJoinSeen { next = min(next, welcomedAt + 4 * settings.timeout) }
            return next
        }
    }

    func isFinished(_ now: UInt64) -> Bool {
        if quit { return true }
        if case .failed = phase { return true }
        guard inputEnded && ledger.isSettled && phase == .member && !whoWanted && whoUnanswered == 0
        else { return false }
        // Wait for our own "joined" (the history comes before it), a little at most.
        return ownJoinSeen || now >= welcomedAt + 4 * settings.timeout
    }

    func backoff(_ attempts: Int) -> UInt64 {
        let timeout = settings.timeout
        let doubled = attempts >= 30 ? UInt64.max : timeout << UInt64(max(attempts - 1, 0))
        return min(doubled, max(Self.longestBackoff, timeout))
    }

    // MARK: Timers

    mutating func timers(_ now: UInt64) {
        switch phase {
        case .failed: return
        case .joining:
            if now >= joinDue {
                if joinAttempts >= settings.attempts {
                    phase = .failed("no answer to JOIN from \(settings.address) after \(joinAttempts) attempt(s)")
                } else {
                    sendJoin(now)
                }
            }
        case .member:
            sendDue(now)
            if let due = gapDue, due <= now {
                if gapAttempts >= settings.attempts {
                    // The relay's backlog no longer has the missing events: show what came after.
                    gapAttempts = 0
                    gapDue = nil
                    show(order.skipGap(), now)
                } else {
                    requestResend(now)
                }
            }
            if whoWanted {
                whoWanted = false
                askWho(now)
            }
            if whoUnanswered > 0 && now >= whoDue { whoUnanswered = 0 }  // lost: WHO is not resent
            if now >= keepaliveDue {
                send(.keepalive(token: token, highest: order.expected.map { $0 &- 1 } ?? 0))
                keepaliveDue = now + settings.keepalive
            }
        }
    }

    /// Own messages whose time came, sent (again) or given up; lines waiting, sent.
    mutating func sendDue(_ now: UInt64) {
        for step in ledger.due(now, attempts: settings.attempts, backoff: backoff) {
            switch step {
            case .send(let m): send(.say(token: token, clientSequence: m.sequence, text: m.text))
            case .givenUp(let text):
                if settings.terminal { note("not acknowledged after \(settings.attempts) attempt(s): \(quoted(text))") }
            }
        }
    }

    // MARK: Sending

    mutating func send(_ message: ChatMessage) {
        effects.append(.send(message.encoded(tag: settings.tag)))
    }

    mutating func sendJoin(_ now: UInt64) {
        joinAttempts += 1
        joinDue = now + backoff(joinAttempts)
        send(.join(cookie: cookie, secret: settings.secret, token: 0, room: settings.room, nick: nick))
    }

    mutating func requestResend(_ now: UInt64) {
        guard let gap = order.gap else { return }
        gapAttempts += 1
        gapDue = now + backoff(gapAttempts)
        send(.resend(token: token, first: gap.first, count: UInt16(min(gap.count, UInt32(ChatWire.maxResend)))))
    }

    mutating func askWho(_ now: UInt64) {
        send(.who(token: token))
        whoUnanswered += 1
        whoDue = now + 4 * settings.timeout
    }

    // MARK: Receiving

    mutating func receive(_ bytes: [UInt8], _ now: UInt64) {
        // No relay that keeps the protocol sends more (docs/PROTOCOL.md): nor is it held.
        guard bytes.count <= ChatWire.largestDatagram else { return }
        // What does not carry our tag is not the relay's answer to us: an off-path forger
        // never saw the tag.
        guard let (tag, message) = ChatMessage.decode(bytes), tag == settings.tag else { return }
        receive(message, now)
    }

    mutating func receive(_ message: ChatMessage, _ now: UInt64) {
        switch message {
        case .challenge(let c):
            if phase == .member {
                // Our datagram came from an address the relay does not know us by (a NAT
                // rebound us): the same membership from here, proven by the secret.
                send(.join(cookie: c, secret: settings.secret, token: token, room: settings.room, nick: nick))
                return
            }
            guard phase == .joining else { return }
            cookie = c
            sendJoin(now)
        case let .welcome(token, _, _, _) where phase == .member:
            guard token == self.token else { return }
            // Moved to our new address: what it sent the old one is asked for by the
            // keepalive, what we sent that it did not take goes again, now.
            keepaliveDue = now
            ledger.resendAll(now, attemptsAnew: false)
        case let .welcome(token, instance, _, _):
            guard phase == .joining else { return }
            welcome(token: token, instance: instance, now)
        case let .events(instance, events):
            guard phase == .member, instance == self.instance else { return }
            for e in events { accept(e, now) }
        case let .members(instance, nicks):
            guard instance == self.instance, whoUnanswered > 0 else { return }
            whoUnanswered -= 1
            printLine("* members: " + nicks.map(neutralised).joined(separator: ", "))
        case .notAMember(let t):
            guard phase == .member, t == token else { return }
            // The relay restarted or evicted us: join again (a new challenge and cookie).
            phase = .joining
            token = 0
            cookie = .none
            joinAttempts = 0
            ownJoinSeen = false
            sendJoin(now)
        case .refused(let reason):
            if phase == .joining {
                phase = .failed("\(settings.address) refused to join: \(Self.why(reason))")
            } else {
                note("refused: \(Self.why(reason))")
            }
        default:
            return
        }
    }

    mutating func welcome(token: UInt64, instance: UInt64, _ now: UInt64) {
        self.token = token
        phase = .member
        welcomedAt = now
        keepaliveDue = now + settings.keepalive
        if instance != self.instance {
            // Joined before under another instance: the relay restarted and forgot the
            // room. Said once, before the "joined" of everyone who comes back, so that
            // those read as a restart and not as a crowd arriving.
            if self.instance != nil { printLine(Self.restartNote) }
            self.instance = instance
            order = RoomOrder()
            gapAttempts = 0
            gapDue = nil
        }
        // Joined again: everything not acknowledged goes out now, with its attempts anew.
        ledger.resendAll(now, attemptsAnew: true)
    }

    static func why(_ reason: ChatRefusal) -> String {
        switch reason {
        case .roomFull: "the room is full"
        case .nickTaken: "the nick, or one that reads the same, is taken"
        case .tooManyRooms: "the relay has too many rooms"
        case .tooManyMemberships: "too many memberships from this address"
        case .badName: "a bad room name or nick (invisible or control characters, or mixed scripts)"
        }
    }

    mutating func accept(_ e: ChatEvent, _ now: UInt64) {
        if e.kind == .message && e.sender == id {
            // Our own copy: its acknowledgement, whether shown now or a duplicate.
            ledger.acknowledge(clientSequence: e.clientSequence, text: e.text)
        }
        show(order.accept(e), now)
    }

    /// The room's lines in order; then a gap left, if any, is asked for again.
    mutating func show(_ lines: [RoomOrder.Line], _ now: UInt64) {
        for line in lines {
            switch line {
            case .event(let e): show(e)
            case .missed(let count): printLine("* missed \(count) event(s)")
            case .jumped: printLine("* missed an unknown number of events (the relay's sequence jumped)")
            }
        }
        if order.gap == nil {
            gapAttempts = 0
            gapDue = nil
        } else if gapDue == nil {
            requestResend(now)
        }
    }

    mutating func show(_ e: ChatEvent) {
        let who = neutralised(e.nick)
        switch e.kind {
        case .message:
            guard shown.insert(MessageKey(sender: e.sender, clientSequence: e.clientSequence)) else { return }
            let acknowledged = settings.terminal && e.sender == id ? " ✓" : ""
            printLine("\(who): \(neutralised(e.text))\(acknowledged)")
        case .joined:
            if e.sender == id { ownJoinSeen = true }
            printLine("* \(who) joined")
        case .left: printLine("* \(who) left")
        case .timedOut: printLine("* \(who) timed out")
        case .renamed:
            if e.sender == id && ChatWire.isValidName(e.text) { nick = e.text }
            printLine("* \(who) is now \(neutralised(e.text))")
        }
    }

    mutating func printLine(_ line: String) {
        effects.append(.print(line))
    }

    mutating func note(_ text: String) {
        effects.append(.note(text))
    }

    /// The live area, if it changed since last drawn.
    mutating func redraw() {
        let own = neutralised(nick)
        let pending = ledger.pending.map { "\(own): \(neutralised($0)) (sending)" }
        let state =
            switch phase {
            case .joining: " (joining)"
            case .member: inputEnded ? " (leaving)" : ""
            case .failed: ""
            }
        let live = LiveArea(
            pending: pending, prompt: "[\(neutralised(settings.room))] \(own)\(state)> ",
            text: editor.text, cursor: editor.cursor)
        guard live != drawn else { return }
        drawn = live
        effects.append(.redraw(live))
    }

    // MARK: Input

    mutating func keys(_ bytes: [UInt8], _ now: UInt64) {
        for action in editor.feed(bytes) {
            switch action {
            case .interrupt: if inputEnded { quit = true } else { inputEnded = true }  // a second one leaves at once
            case _ where inputEnded: break  // leaving: only Ctrl-C counts
            case .submit(let text): line(text, now)
            case .endOfInput: inputEnded = true
            }
        }
        if inputEnded { editor = LineEditor() }
    }

    mutating func line(_ bytes: [UInt8], _ now: UInt64) {
        var text = bytes
        if text.last == UInt8(ascii: "\r") { text.removeLast() }
        guard !text.isEmpty else { return }
        if text.first == UInt8(ascii: "/") {
            if text.starts(with: [UInt8(ascii: "/"), UInt8(ascii: "/")]) {
                text.removeFirst()
            } else {
                command(String(decoding: text, as: UTF8.self), now)
                return
            }
        }
        if text.count > ChatWire.maxText {
            note("not sent, longer than \(ChatWire.maxText) bytes: \(quoted(text))")
            ledger.refuse(text)
            return
        }
        ledger.enqueue(text)
    }

    mutating func command(_ line: String, _ now: UInt64) {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first ?? "" {
        case "/quit":
            inputEnded = true  // leaves once every message sent is acknowledged (or lost)
        case "/who":
            if phase == .member { askWho(now) } else { whoWanted = true }  // sent once joined
        case "/nick" where words.count == 2:
            let new = Array(words[1].utf8)
            if let problem = NamePolicy.problem(new) {
                note("/nick: not sent: a nick \(problem)")  // the relay would refuse it as a bad name
            } else if phase == .member {
                send(.nick(token: token, nick: new))
            } else {
                nick = new
            }
        case "/nick":
            note("/nick NEW: a new nick, 1-32 bytes")
        case let word:
            note("\(neutralised(Array(word.utf8))): no such command (/who, /nick NEW, /quit; //text sends /text)")
        }
    }

    // MARK: The end

    mutating func finish() {
        exited = true
        if phase == .member { send(.leave(token: token)) }
        let unacknowledged = ledger.unacknowledged
        var problems: [String] = []
        if case .failed(let why) = phase { problems.append(why) }
        if !unacknowledged.isEmpty {
            problems.append(
                "\(unacknowledged.count) message(s) not acknowledged by \(settings.address): "
                    + unacknowledged.map(quoted).joined(separator: ", "))
        }
        effects.append(
            .exit(code: problems.isEmpty ? 0 : 1, message: problems.isEmpty ? nil : problems.joined(separator: "; ")))
    }

    func quoted(_ text: [UInt8]) -> String { "\"" + neutralised(text) + "\"" }
}
