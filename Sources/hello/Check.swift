import ArgumentParser
import Glibc
import HelloCLI
import HelloChatWire
import HelloLauncher
import HelloSocket

/// `hello check`: one probe of one service, in the monitoring-plugins convention (one line,
/// exit 0 or 2), for ExaBGP's healthcheck, keepalived's vrrp_script, an exec probe.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Probe a service once: one line, exit 0 if it answered right within --timeout, 2 if not.",
        discussion: """
            hello: a random text, answered by exactly "Hello, <text>!"; echo: the same bytes \
            back; chat: a JOIN without a cookie, answered by a CHALLENGE with the probe's tag \
            (which leaves no state on the relay). Prints "HELLO OK - <answer> in <N> ms" or \
            "HELLO CRITICAL - <why>" (ECHO, CHAT), as monitoring plugins do. Datagrams that \
            do not answer this probe (another tag, another text) are ignored until the timeout.
            """
    )

    @Option(help: "The service to probe: hello, echo or chat.")
    var service: ServiceName

    @Option(help: "The server's name or address.")
    var host = "127.0.0.1"

    // Optional, unlike ServerOptions' port: each service's own port is the default.
    @Option(help: "The server's UDP port (default: the service's own, hello 9999, echo 8899, chat 6000).")
    var port: UInt16?

    @Option(help: ArgumentHelp("Seconds to wait for the answer.", valueName: "seconds"))
    var timeout = 1.0

    func validate() throws {
        try require("--timeout", timeout, in: 0.001...3600)
    }

    func run() throws {
        let label = service.rawValue.uppercased()
        let (socket, _) = try ServerOptions.connect(host: host, port: port ?? Self.defaultPort(service))
        defer { try? socket.close() }  // exiting anyway
        switch Probe(service).run(socket, timeout: UInt64(timeout * 1e9)) {
        case .ok(let answer, let nanoseconds):
            let ms = (Double(nanoseconds) / 1e5).rounded() / 10  // 0.1 ms: a near server answers in less than 1
            writeOut(to: STDOUT_FILENO, "\(label) OK - \(answer) in \(ms) ms\n")
        case .critical(let why):
            writeOut(to: STDOUT_FILENO, "\(label) CRITICAL - \(why)\n")
            throw ExitCode(2)
        }
    }

    static func defaultPort(_ service: ServiceName) -> UInt16 {
        switch service {
        case .hello: 9999
        case .echo: 8899
        case .chat: 6000
        }
    }
}

/// One request, and what counts as its answer.
struct Probe {
    enum Verdict {
        case ok(String, UInt64)
        case critical(String)
    }

    /// What a datagram is to this probe.
    enum Reading {
        case right(String)
        case wrong(String)
        case notOurs(String)
    }

    let request: [UInt8]
    let read: ([UInt8]) -> Reading

    init(_ service: ServiceName) {
        var random = SystemRandomNumberGenerator()
        switch service {
        case .hello, .echo:
            // The random text tells this probe's answer from any other datagram.
            let text = "check-" + String(random.next() as UInt64, radix: 16)
            let request = Array(text.utf8)
            let expected = service.replyRule!.reply(to: request)
            self.request = request
            read = { answer in
                if answer == expected { return .right(Self.shown(answer)) }
                // One that carries the text answers this probe, wrongly; any other is stale.
                let ours =
                    answer.count >= request.count
                    && (0...(answer.count - request.count)).contains {
                        Array(answer[$0..<$0 + request.count]) == request
                    }
                return ours ? .wrong(Self.shown(answer)) : .notOurs(Self.shown(answer))
            }
        case .chat:
            let tag: UInt64 = random.next()
            request = ChatMessage.join(
                cookie: .none, secret: ChatSecret(high: random.next(), low: random.next()), token: 0,
                room: Array("check".utf8), nick: Array("check".utf8)
            ).encoded(tag: tag)
            read = { answer in
                guard let (answerTag, message) = ChatMessage.decode(answer) else {
                    return .notOurs("\(answer.count) bytes that are no chat message")
                }
                let name = Self.name(message)
                guard answerTag == tag else { return .notOurs("\(name) with another tag") }
                if case .challenge = message { return .right("CHALLENGE") }
                return .wrong(name)
            }
        }
    }

    func run(_ socket: DatagramSocket, timeout: UInt64) -> Verdict {
        let started = monotonicNanoseconds()
        let deadline = started + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        var ignored: [String] = []
        do {
            try request.withUnsafeBytes { _ = try socket.send($0) }
            while true {
                let now = monotonicNanoseconds()
                guard now < deadline,
                    let n = try buffer.withUnsafeMutableBytes({ try socket.receive(into: $0, timeout: deadline - now) })
                else { break }
                switch read(Array(buffer[..<n])) {
                case .right(let answer): return .ok(answer, monotonicNanoseconds() - started)
                case .wrong(let answer): return .critical("wrong answer: \(answer)")
                case .notOurs(let what): ignored.append(what)  // stale, or another tag: wait on
                }
            }
        } catch {
            // ECONNREFUSED: an ICMP port unreachable came back, nothing listens there.
            return .critical(
                (error as? SocketError)?.errno == .connectionRefused ? "connection refused" : "\(error)")
        }
        let also = ignored.last.map { " (ignored \(ignored.count) other datagram(s), the last \($0))" } ?? ""
        return .critical("no answer within \(Double(timeout) / 1e9) s\(also)")
    }

    /// A datagram as one short, safe line: printable ASCII, the rest as \xNN, 64 bytes at most.
    static func shown(_ bytes: [UInt8]) -> String {
        let text = bytes.prefix(64).map {
            (32..<127).contains($0) && $0 != UInt8(ascii: "\\")
                ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16).leftPadded(2)
        }.joined()
        return "\"" + text + "\"" + (bytes.count > 64 ? "..." : "")
    }

    static func name(_ message: ChatMessage) -> String {
        switch message {
        case .challenge: "CHALLENGE"
        case .welcome: "WELCOME"
        case .events: "EVENTS"
        case .members: "MEMBERS"
        case .notAMember: "NOT A MEMBER"
        case .refused(let reason): "REFUSED (\(reason))"
        case .join: "its own JOIN back (an echo service?)"
        default: "a client's request"
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
