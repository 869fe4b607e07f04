import ArgumentParser
import Glibc
import HelloCLI
import HelloChatWire
import HelloService
import HelloSocket

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Join a room of hellod's chat service: type while messages arrive (on a terminal), or each line of input a message and each event a line of output (pipes).",
        discussion: """
            Events, in room order: "nick: text" for a message (your own too, when its copy \
            comes back: that is its acknowledgement), "* nick joined", "* nick left", \
            "* nick timed out", "* old is now new"; "* the relay restarted: members rejoin" once the \
            relay restarted (before the "joined" of those who come back); "* members: a, b" answers /who (typed before \
            the join completes, it waits for it); "* missed N event(s)" when the relay could not \
            resend a gap (one of more than 256 is not asked for), "* missed an unknown number of \
            events (the relay's sequence jumped)" for a jump no relay's backlog (65,536 events at \
            most) could mean; "* skipped N event(s) (the relay sent faster than they were \
            shown)" when the terminal or the pipe fell behind (64 KiB of lines wait at most). \
            Whatever a relay sends, the client stays under 32 MiB and takes Ctrl-C at once. \
            Control characters (C0, DEL, C1) \
            from the network show as \\xNN, bidirectional controls as \\uNNNN, bytes that are not \
            UTF-8 as U+FFFD: nothing received can drive a terminal. Input: /who, /nick NEW, \
            /quit; "//text" sends "/text". Messages are resent until their copy comes back; a \
            relay that forgot the member (restarted) is joined again and every unacknowledged \
            message resent. Exits 0 once input has ended (or /quit) and every message is \
            acknowledged, 1 naming those that were not (or if the room could not be joined).

            On a terminal (standard input and output both), the line you type stays at the \
            bottom, after the prompt "[room] nick>", and events appear above it as they come. \
            Your messages wait above the prompt as "(sending)" until their copy comes back; \
            then they take their place in the room's order, marked with a check mark. Notes \
            that are yours alone (a refusal, an unknown command) start with "!". Keys: Enter \
            sends; Backspace, Delete, Left, Right, Home and End (or Ctrl-A, Ctrl-E) edit; \
            Ctrl-U and Ctrl-K erase to the start and to the end, Ctrl-W the word before; \
            Ctrl-D on an empty line and Ctrl-C are /quit, a second Ctrl-C leaves at once, as \
            SIGTERM does. The terminal is restored on every way out.
            """
    )

    @Option(help: "The relay's name or address.")
    var host = "127.0.0.1"

    @Option(help: "The relay's UDP port.")
    var port: UInt16 = 6000

    @Option(help: "The room to join (1-32 bytes).")
    var room: String

    @Option(help: "Your nick in the room (1-32 bytes, one script, nothing invisible).")
    var nick: String

    @Option(help: ArgumentHelp("Seconds between keepalives.", valueName: "seconds"))
    var keepalive = 10.0

    @Option(help: ArgumentHelp("Seconds before the first resend of an unanswered JOIN, message or RESEND (then doubling, to 4 s at most).",
                               valueName: "seconds"))
    var timeout = 0.5

    @Option(help: "Resends of a JOIN or a message before it counts as lost (a message's count starts again when another of yours is acknowledged).")
    var retries = 5

    func validate() throws {
        try require("--keepalive", keepalive, in: 0.01...3600)
        try require("--timeout", timeout, in: 0.001...60)
        try require("--retries", retries, in: 0...100)
        for (option, name) in [("--room", room), ("--nick", nick)] {
            // What the relay would refuse as a bad name, refused here before anything is sent.
            if let problem = NamePolicy.problem(Array(name.utf8)) { throw ValidationError("\(option) \(problem).") }
        }
    }

    func run() throws {
        let (socket, address) = try ServerOptions.connect(host: host, port: port)
        var random = SystemRandomNumberGenerator()
        var client = ChatClient(socket: socket, address: "\(address)", room: Array(room.utf8), nick: Array(nick.utf8),
                                secret: ChatSecret(high: random.next(), low: random.next()), tag: random.next(),
                                timeout: UInt64(timeout * 1e9), attempts: retries + 1,
                                keepalive: UInt64(keepalive * 1e9), screen: ChatScreen.open())
        let code = client.run()
        try? socket.close()  // exiting anyway
        if code != 0 { throw ExitCode(code) }
    }
}

/// The chat client's state and its one loop: poll(2) over standard input and the socket,
/// with a timeout for the next resend or keepalive. On a terminal (`screen`), input is
/// edited a key at a time and events are shown above the line being typed; else (a pipe)
/// each input line is a message and each event a line of output. Both go the same way from
/// there: `line(_:)` takes what was typed, `printLine(_:)` and `note(_:)` show what came.
struct ChatClient {
    struct Outgoing {
        let sequence: UInt32
        let text: [UInt8]
        var attempts = 0
        var due: UInt64 = 0
    }

    enum Phase: Equatable {
        case joining, member
        case failed(String)
    }

    /// Messages sent and not yet acknowledged, at most: the relay's rate limit (a burst of
    /// 10) and its duplicate window (64 client sequences) are then never in the way.
    static let window = 8
    /// The relay's duplicate window: a SAY 64 or more client sequences below the highest it
    /// delivered counts as delivered, so none is sent while an older one is unacknowledged
    /// that far back (docs/PROTOCOL.md, "Delivery").
    static let sequenceSpan: UInt32 = 64
    /// Lines read and waiting to be sent, at most: past it a pipe is not read until the
    /// relay has acknowledged some, so a relay that acknowledges nothing cannot make the
    /// client read all its input into memory (a terminal's keys are read whatever the
    /// queue: Ctrl-C must work).
    static let queuedLinesLimit = 256
    static let longestBackoff: UInt64 = 4_000_000_000
    /// Datagrams read from the socket at most before the keys, the signals and the output
    /// have their turn: a flood must not keep Ctrl-C waiting.
    static let receiveBatch = 64
    /// Shown when a WELCOME (after NOT A MEMBER) comes from a new relay instance.
    static let restartNote = "* the relay restarted: members rejoin"

    let socket: DatagramSocket
    let address: String
    let room: [UInt8]
    var nick: [UInt8]
    /// Who this client is: its secret, sent only in JOIN, and the id events name it by
    /// (`ChatSecret.id`); both kept for its life, so that it is the same member to the
    /// room after a relay restart or a rebinding. Its tag, in every datagram either way:
    /// what does not carry it did not come from the relay (docs/PROTOCOL.md, "Framing").
    let secret: ChatSecret
    let id: UInt64
    let tag: UInt64
    let timeout: UInt64
    let attempts: Int
    let keepaliveInterval: UInt64

    var phase = Phase.joining
    var cookie = ChatCookie.none
    var joinAttempts = 0
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
    var shown = RecentKeys<Pair>(capacity: 4096)
    /// /who typed before the join completed: sent once it has.
    var whoWanted = false
    /// WHOs sent and not answered yet (a MEMBERS that none asked for is not shown), and until
    /// when their answer is waited for.
    var whoUnanswered = 0
    var whoDue: UInt64 = 0
    /// The room's lines on their way to the screen or standard output.
    var output = OutputQueue()
    var pipeOutput = PendingOutput()

    var queue: [[UInt8]] = []
    var inFlight: [Outgoing] = []
    var lost: [[UInt8]] = []
    var nextSequence: UInt32 = 1
    var inputEnded = false
    /// Standard input can still be read: a terminal is, after the end of input, for Ctrl-C.
    var inputOpen = true
    /// Leave now (a signal, a second Ctrl-C), without waiting for acknowledgements.
    var quit = false
    var screen: ChatScreen?
    var partial: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)

    struct Pair: Hashable {
        let a: UInt64
        let b: UInt32
    }

    init(socket: DatagramSocket, address: String, room: [UInt8], nick: [UInt8], secret: ChatSecret, tag: UInt64,
         timeout: UInt64, attempts: Int, keepalive: UInt64, screen: ChatScreen? = nil) {
        self.socket = socket
        self.address = address
        self.room = room
        self.nick = nick
        self.secret = secret
        self.id = secret.id
        self.tag = tag
        self.timeout = timeout
        self.attempts = attempts
        self.keepaliveInterval = keepalive
        self.screen = screen
    }

    // MARK: The loop

    mutating func run() -> Int32 {
        sendJoin(monotonicNanoseconds())
        while true {
            let now = monotonicNanoseconds()
            timers(now)
            takeLines()
            if isFinished(now) { break }
            present()
            var fds = (pollfd(fd: socket.descriptor.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: readsInput ? STDIN_FILENO : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: screen?.signals ?? -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: unwritten > 0 ? STDOUT_FILENO : -1, events: Int16(POLLOUT), revents: 0))
            let wait = nextDeadline(now).map { $0 > now ? Int32(clamping: ($0 - now + 999_999) / 1_000_000) : 0 } ?? -1
            let ready = withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), 4, wait)
            }
            guard ready > 0 else { continue }
            if fds.0.revents != 0 { receiveSome() }
            if fds.1.revents != 0 { readInput() }
            if fds.2.revents != 0, let signals = screen?.takeSignals() {
                if signals.contains(where: [SIGTERM, SIGINT, SIGHUP].contains) { quit = true }
            }
            if fds.3.revents != 0 { writeSome() }
        }
        // What waits to be shown (a bounded queue) is shown before the way out.
        while let line = output.next() { emit(line) }
        if screen != nil { screen!.restore() } else { pipeOutput.writeAll(to: STDOUT_FILENO) }
        return finish()
    }

    func isFinished(_ now: UInt64) -> Bool {
        if quit { return true }
        if case .failed = phase { return true }
        guard inputEnded && queue.isEmpty && inFlight.isEmpty && phase == .member && !whoWanted && whoUnanswered == 0
        else { return false }
        // Wait for our own "joined" (the history comes before it), a little at most.
        return ownJoinSeen || now >= welcomedAt + 4 * timeout
    }

    func backoff(_ attempts: Int) -> UInt64 {
        let doubled = attempts >= 30 ? UInt64.max : timeout << UInt64(max(attempts - 1, 0))
        return min(doubled, max(Self.longestBackoff, timeout))
    }

    func nextDeadline(_ now: UInt64) -> UInt64? {
        switch phase {
        case .joining: return joinDue
        case .failed: return now
        case .member:
            var next = keepaliveDue
            for m in inFlight { next = min(next, m.due) }
            if let gapDue { next = min(next, gapDue) }
            if whoUnanswered > 0 { next = min(next, whoDue) }
            if inputEnded && queue.isEmpty && inFlight.isEmpty && !ownJoinSeen { next = min(next, welcomedAt + 4 * timeout) }
            return next
        }
    }

    mutating func timers(_ now: UInt64) {
        switch phase {
        case .failed: return
        case .joining:
            if now >= joinDue {
                if joinAttempts >= attempts {
                    phase = .failed("no answer to JOIN from \(address) after \(joinAttempts) attempt(s)")
                } else {
                    sendJoin(now)
                }
            }
        case .member:
            var i = 0
            while i < inFlight.count {
                if inFlight[i].due <= now {
                    if inFlight[i].attempts >= attempts {
                        let text = inFlight.remove(at: i).text
                        lost.append(text)
                        if screen != nil { note("not acknowledged after \(attempts) attempt(s): \(quoted(text))") }
                        continue
                    }
                    var m = inFlight[i]
                    sendSay(&m, now)
                    inFlight[i] = m
                }
                i += 1
            }
            while inFlight.count < Self.window && !queue.isEmpty
                    && nextSequence &- (inFlight.first?.sequence ?? nextSequence) < Self.sequenceSpan {
                var m = Outgoing(sequence: nextSequence, text: queue.removeFirst())
                nextSequence &+= 1
                sendSay(&m, now)
                inFlight.append(m)
            }
            if let due = gapDue, due <= now {
                if gapAttempts >= attempts {
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
                keepaliveDue = now + keepaliveInterval
            }
        }
    }

    // MARK: Sending

    func send(_ message: ChatMessage) {
        let bytes = message.encoded(tag: tag)
        // A refusal (ECONNREFUSED: nothing listens, e.g. the relay is restarting) or a full
        // buffer is a lost datagram like any other: the resends cover it.
        _ = try? bytes.withUnsafeBytes { try socket.send($0) }
    }

    mutating func sendJoin(_ now: UInt64) {
        joinAttempts += 1
        joinDue = now + backoff(joinAttempts)
        send(.join(cookie: cookie, secret: secret, token: 0, room: room, nick: nick))
    }

    mutating func sendSay(_ m: inout Outgoing, _ now: UInt64) {
        m.attempts += 1
        m.due = now + backoff(m.attempts)
        send(.say(token: token, clientSequence: m.sequence, text: m.text))
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
        whoDue = now + 4 * timeout
    }

    // MARK: Receiving

    /// What the socket has, a batch at most (the loop comes back for the rest).
    mutating func receiveSome() {
        for _ in 0..<Self.receiveBatch {
            let n: Int?
            do {
                n = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0, timeout: 0) }
            } catch {
                return  // ECONNREFUSED from an earlier send (reported once): poll again
            }
            guard let n else { return }
            // No relay that keeps the protocol sends more (docs/PROTOCOL.md): nor is it held.
            guard n <= ChatWire.largestDatagram else { continue }
            let now = monotonicNanoseconds()
            // What does not carry our tag is not the relay's answer to us: an off-path
            // forger never saw the tag.
            guard let (tag, message) = buffer.withUnsafeBytes({ ChatMessage.decode(UnsafeRawBufferPointer(rebasing: $0[..<n])) }),
                  tag == self.tag else { continue }
            handle(message, now)
        }
    }

    mutating func handle(_ message: ChatMessage, _ now: UInt64) {
        switch message {
        case .challenge(let c):
            if phase == .member {
                // Our datagram came from an address the relay does not know us by (a NAT
                // rebound us): the same membership from here, proven by the secret.
                send(.join(cookie: c, secret: secret, token: token, room: room, nick: nick))
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
            for i in inFlight.indices { inFlight[i].due = now }
        case let .welcome(token, instance, _, _):
            guard phase == .joining else { return }
            self.token = token
            phase = .member
            welcomedAt = now
            keepaliveDue = now + keepaliveInterval
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
            for i in inFlight.indices {
                inFlight[i].attempts = 0
                inFlight[i].due = now
            }
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
            let why = switch reason {
                case .roomFull: "the room is full"
                case .nickTaken: "the nick, or one that reads the same, is taken"
                case .tooManyRooms: "the relay has too many rooms"
                case .tooManyMemberships: "too many memberships from this address"
                case .badName: "a bad room name or nick (invisible or control characters, or mixed scripts)"
            }
            if phase == .joining {
                phase = .failed("\(address) refused to join: \(why)")
            } else {
                note("refused: \(why)")
            }
        default:
            return
        }
    }

    mutating func accept(_ e: ChatEvent, _ now: UInt64) {
        if e.kind == .message && e.sender == id {
            // Our own copy: its acknowledgement, whether shown now or a duplicate.
            let waiting = inFlight.count
            inFlight.removeAll { $0.sequence == e.clientSequence && $0.text == e.text }
            if inFlight.count < waiting {
                // The relay takes our messages, if not all at once (a room over its rate
                // refuses them silently): the others count their attempts, and back off,
                // from here, so that they are slowed but not given up while it does.
                for i in inFlight.indices { inFlight[i].attempts = 0 }
            }
            if let i = lost.firstIndex(of: e.text) { lost.remove(at: i) }
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
            guard shown.insert(Pair(a: e.sender, b: e.clientSequence)) else { return }
            let acknowledged = screen != nil && e.sender == id ? " ✓" : ""
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

    /// An event of the room, in its order: queued, shown as fast as the terminal or the
    /// pipe takes it.
    mutating func printLine(_ line: String) {
        output.append(line)
    }

    /// Lines from the queue to the screen or the pipe, a chunk's worth ahead of what is
    /// written at most, and the live area drawn.
    mutating func present() {
        while unwritten < PendingOutput.chunk, let line = output.next() { emit(line) }
        drawScreen()
    }

    mutating func emit(_ line: String) {
        if screen != nil {
            screen!.show(line)
        } else {
            pipeOutput.append(line.utf8)
            pipeOutput.append(CollectionOfOne(UInt8(ascii: "\n")))
        }
    }

    /// Bytes shown or drawn and not yet written.
    var unwritten: Int { screen?.unwritten ?? pipeOutput.bytes.count }

    /// A chunk written: poll(2) said the terminal or the pipe takes more.
    mutating func writeSome() {
        if screen != nil { screen!.flush() } else { pipeOutput.write(to: STDOUT_FILENO) }
    }

    /// Something local (a refusal, a typo): on standard error, or on the screen among the
    /// room's lines but marked apart.
    mutating func note(_ text: String) {
        if screen != nil {
            printLine("! " + text)
        } else {
            writeErr("hello: \(text)\n")
        }
    }

    /// The live area: own messages not yet acknowledged, the prompt and the line typed.
    mutating func drawScreen() {
        guard screen != nil else { return }
        let own = neutralised(nick)
        let pending = (inFlight.map(\.text) + queue).map { "\(own): \(neutralised($0)) (sending)" }
        let state = switch phase {
            case .joining: " (joining)"
            case .member: inputEnded ? " (leaving)" : ""
            case .failed: ""
        }
        screen!.draw(pending: pending, prompt: "[\(neutralised(room))] \(own)\(state)> ")
    }

    // MARK: Input

    mutating func readInput() {
        let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
        if screen != nil && n > 0 {
            for action in screen!.editor.feed(buffer[..<n]) {
                switch action {
                case .interrupt: if inputEnded { quit = true } else { inputEnded = true }  // a second one leaves at once
                case _ where inputEnded: break  // leaving: only Ctrl-C counts
                case .submit(let text): line(text)
                case .endOfInput: inputEnded = true
                }
            }
            if inputEnded { screen!.editor = LineEditor() }
            return
        }
        guard n > 0 else {
            inputEnded = true
            inputOpen = false
            if !partial.isEmpty { line(partial) }
            partial = []
            return
        }
        partial += buffer[..<n]
        takeLines()
        // A line longer than any message is refused whole: of one with no end yet, no more
        // is kept than shows that (the rest up to its newline is dropped as it comes).
        if partial.count > ChatWire.maxText + 1 && !partial.contains(Self.newline) {
            partial.removeLast(partial.count - (ChatWire.maxText + 1))
        }
    }

    static let newline = UInt8(ascii: "\n")

    /// Whether standard input is to be read now: a terminal always (its keys), a pipe only
    /// while the queue has room and what was read holds no whole line still to take.
    var readsInput: Bool {
        guard inputOpen && !quit else { return false }
        if screen != nil { return true }
        return !inputEnded && queue.count < Self.queuedLinesLimit && !partial.contains(Self.newline)
    }

    /// The whole lines read from a pipe, each a message or a command, while the queue has room.
    mutating func takeLines() {
        while !inputEnded && queue.count < Self.queuedLinesLimit, let newline = partial.firstIndex(of: Self.newline) {
            let text = Array(partial[..<newline])
            partial.removeSubrange(...newline)
            line(text)
        }
    }

    mutating func line(_ bytes: [UInt8]) {
        var text = bytes
        if text.last == UInt8(ascii: "\r") { text.removeLast() }
        guard !text.isEmpty else { return }
        if text.first == UInt8(ascii: "/") {
            if text.starts(with: [UInt8(ascii: "/"), UInt8(ascii: "/")]) {
                text.removeFirst()
            } else {
                command(String(decoding: text, as: UTF8.self))
                return
            }
        }
        if text.count > ChatWire.maxText {
            note("not sent, longer than \(ChatWire.maxText) bytes: \(quoted(text))")
            lost.append(text)
            return
        }
        queue.append(text)
    }

    mutating func command(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        switch words[0] {
        case "/quit":
            inputEnded = true  // leaves once every message sent is acknowledged (or lost)
        case "/who":
            if phase == .member { askWho(monotonicNanoseconds()) } else { whoWanted = true }  // sent once joined
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
        default:
            note("\(neutralised(Array(words[0].utf8))): no such command (/who, /nick NEW, /quit; //text sends /text)")
        }
    }

    // MARK: The end

    mutating func finish() -> Int32 {
        if phase == .member { send(.leave(token: token)) }
        let unacknowledged = lost + inFlight.map(\.text) + queue
        var problems: [String] = []
        if case .failed(let why) = phase { problems.append(why) }
        if !unacknowledged.isEmpty {
            problems.append("\(unacknowledged.count) message(s) not acknowledged by \(address): "
                            + unacknowledged.map(quoted).joined(separator: ", "))
        }
        guard !problems.isEmpty else { return 0 }
        writeErr("hello: " + problems.joined(separator: "; ") + "\n")
        return 1
    }

    func quoted(_ text: [UInt8]) -> String { "\"" + neutralised(text) + "\"" }
}

/// Text from the network made harmless to show: control characters (C0, DEL, C1) as \xNN,
/// bidirectional controls (marks, embeddings, overrides, isolates) as \uNNNN, bytes that are
/// not UTF-8 as U+FFFD. An escape sequence then shows as text and cannot drive a terminal.
func neutralised(_ bytes: [UInt8]) -> String {
    var out = String.UnicodeScalarView()
    var input = bytes.makeIterator()
    var decoder = UTF8()
    func escape(_ prefix: String, _ value: UInt32, digits: Int) {
        let hex = String(value, radix: 16)
        out.append(contentsOf: (prefix + String(repeating: "0", count: max(digits - hex.count, 0)) + hex).unicodeScalars)
    }
    loop: while true {
        switch decoder.decode(&input) {
        case .scalarValue(let scalar):
            if isShownAsIs(scalar) {
                out.append(scalar)
            } else if scalar.value < 0x100 {
                escape("\\x", scalar.value, digits: 2)
            } else {
                escape("\\u", scalar.value, digits: 4)
            }
        case .emptyInput: break loop
        case .error: out.append("\u{FFFD}")
        }
    }
    return String(out)
}

/// Whether a character can be shown as it is: not a control character (C0, DEL, C1) nor a
/// bidirectional control (marks, embeddings, overrides, isolates).
func isShownAsIs(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0..<0x20, 0x7f...0x9f, 0x061c, 0x200e, 0x200f, 0x202a...0x202e, 0x2066...0x2069: false
    default: true
    }
}
