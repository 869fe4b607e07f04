import ArgumentParser
import Glibc
import HelloCLI
import HelloChatWire
import HelloClient
import HelloSocket

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract:
            "Join a room of hellod's chat service: type while messages arrive (on a terminal), or each line of input a message and each event a line of output (pipes).",
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

    @Option(
        help: ArgumentHelp(
            "Seconds before the first resend of an unanswered JOIN, message or RESEND (then doubling, to 4 s at most).",
            valueName: "seconds"))
    var timeout = 0.5

    @Option(
        help:
            "Resends of a JOIN or a message before it counts as lost (a message's count starts again when another of yours is acknowledged)."
    )
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
        // Everything it sends fits any path: whole, as the relay sends, so that a forged
        // ICMP cannot make it send fragments, which are easier to forge than datagrams.
        try socket.sendWhole(true)
        var random = SystemRandomNumberGenerator()
        let screen = ChatScreen.open()
        let settings = ChatSettings(
            address: "\(address)", room: Array(room.utf8), nick: Array(nick.utf8),
            secret: ChatSecret(high: random.next(), low: random.next()), tag: random.next(),
            timeout: UInt64(timeout * 1e9), attempts: retries + 1,
            keepalive: UInt64(keepalive * 1e9), terminal: screen != nil)
        var client = ChatLoop(socket: socket, client: ChatClient(settings), screen: screen)
        let code = client.run()
        try? socket.close()  // exiting anyway
        if code != 0 { throw ExitCode(code) }
    }
}

/// The chat client's one loop: poll(2) over standard input, the socket, the signals and
/// standard output, with a timeout for the next tick. What comes in goes to the client
/// (`ChatClient`, the state) as an input; what it asks for (send, print, redraw, exit) is
/// done here. On a terminal (`screen`), input is keys for its line editor and events are
/// shown above the line being typed; else (a pipe) each input line is a message and each
/// event a line of output.
struct ChatLoop {
    /// Datagrams read from the socket at most before the keys, the signals and the output
    /// have their turn: a flood must not keep Ctrl-C waiting.
    static let receiveBatch = 64

    let socket: DatagramSocket
    var client: ChatClient
    var screen: ChatScreen?
    /// The room's lines on their way to the screen or standard output.
    var output = OutputQueue()
    var pipeOutput = PendingOutput()
    /// The live area last asked for: drawn again after a signal erased it.
    var live: LiveArea?
    var lines = InputLines()
    /// Standard input can still be read: a terminal is, after the end of input, for Ctrl-C.
    var inputOpen = true
    var exit: (code: Int32, message: String?)?
    var buffer = [UInt8](repeating: 0, count: 65536)

    init(socket: DatagramSocket, client: ChatClient, screen: ChatScreen?) {
        self.socket = socket
        self.client = client
        self.screen = screen
    }

    mutating func run() -> Int32 {
        while true {
            let now = monotonicNanoseconds()
            takeLines(now)
            perform(client.handle(.tick, now: now))
            if exit != nil { break }
            present()
            var fds = (
                pollfd(fd: socket.descriptor.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: readsInput ? STDIN_FILENO : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: screen?.signals ?? -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: unwritten > 0 ? STDOUT_FILENO : -1, events: Int16(POLLOUT), revents: 0)
            )
            let wait =
                client.nextDeadline(now).map { $0 > now ? Int32(clamping: ($0 - now + 999_999) / 1_000_000) : 0 } ?? -1
            let ready = withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), 4, wait)
            }
            guard ready > 0 else { continue }
            if fds.0.revents != 0 { receiveSome() }
            if fds.1.revents != 0 { readInput() }
            if fds.2.revents != 0, let signals = screen?.takeSignals() {
                if signals.contains(where: [SIGTERM, SIGINT, SIGHUP].contains) {
                    perform(client.handle(.leaveNow, now: monotonicNanoseconds()))
                }
            }
            if fds.3.revents != 0 { writeSome() }
        }
        // What waits to be shown (a bounded queue) is shown before the way out.
        while let line = output.next() { emit(line) }
        if screen != nil { screen!.restore() } else { pipeOutput.writeAll(to: STDOUT_FILENO) }
        if let message = exit?.message { writeErr("hello: \(message)\n") }
        return exit?.code ?? 1
    }

    /// What the client asked for, done.
    mutating func perform(_ effects: [ChatEffect]) {
        for effect in effects {
            switch effect {
            case .send(let bytes):
                // A refusal (ECONNREFUSED: nothing listens, e.g. the relay is restarting) or a
                // full buffer is a lost datagram like any other: the resends cover it.
                _ = try? bytes.withUnsafeBytes { try socket.send($0) }
            case .print(let line): output.append(line)
            case .note(let text):
                // Something local: on standard error, or on the screen among the room's lines
                // but marked apart.
                if screen != nil { output.append("! " + text) } else { writeErr("hello: \(text)\n") }
            case .redraw(let area): live = area
            case .exit(let code, let message): exit = (code, message)
            }
        }
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
            // One longer than any of the protocol is refused by the client: no more of it is copied.
            let bytes = Array(buffer[..<min(n, ChatWire.largestDatagram + 1)])
            perform(client.handle(.datagram(bytes), now: monotonicNanoseconds()))
        }
    }

    // MARK: Output

    /// Lines from the queue to the screen or the pipe, a chunk's worth ahead of what is
    /// written at most, and the live area drawn.
    mutating func present() {
        while unwritten < PendingOutput.chunk, let line = output.next() { emit(line) }
        if let live { screen?.draw(live) }
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

    // MARK: Input

    mutating func readInput() {
        let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
        let now = monotonicNanoseconds()
        if screen != nil && n > 0 {
            perform(client.handle(.keys(Array(buffer[..<n])), now: now))
            return
        }
        guard n > 0 else {
            inputOpen = false
            if let rest = lines.rest() { perform(client.handle(.line(rest), now: now)) }
            perform(client.handle(.endOfInput, now: now))
            return
        }
        lines.append(buffer[..<n])
        takeLines(now)
    }

    /// Whether standard input is to be read now: a terminal always (its keys), a pipe only
    /// while the client takes lines and what was read holds no whole line still to take.
    var readsInput: Bool {
        guard inputOpen else { return false }
        if screen != nil { return true }
        return client.takesLines && !lines.hasWholeLine
    }

    /// The whole lines read from a pipe, each a message or a command, while the client takes them.
    mutating func takeLines(_ now: UInt64) {
        while client.takesLines, let line = lines.next() {
            perform(client.handle(.line(line), now: now))
        }
    }
}
