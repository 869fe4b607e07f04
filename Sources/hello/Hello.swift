import ArgumentParser
import Glibc
import HelloCLI
import HelloLauncher
import HelloSocket

@main
struct Hello: ParsableCommand, OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "hello",
        abstract: "The client of hellod: send names, print the greetings; load it (hello bench); chat (hello chat).",
        version: hellodVersion,
        subcommands: [Send.self, Bench.self, Chat.self, Check.self],
        defaultSubcommand: Send.self
    )
}

/// Where the server is, for both subcommands.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server's name or address.")
    var host = "127.0.0.1"

    @Option(help: "The server's UDP port.")
    var port: UInt16 = 9999

    /// A socket connected to the server: only its datagrams are received, and an ICMP
    /// "port unreachable" shows as ECONNREFUSED.
    func connect() throws -> (DatagramSocket, SocketAddress) {
        try Self.connect(host: host, port: port)
    }

    static func connect(host: String, port: UInt16) throws -> (DatagramSocket, SocketAddress) {
        let addresses = try SocketAddress.resolve(host: host, port: port)
        guard let address = addresses.first else {
            throw ResolutionError(host: host, code: 0)
        }
        let socket = try DatagramSocket.open(family: address.family)
        try socket.connect(to: address)
        return (socket, address)
    }
}

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send each name and print each reply on its own line (the default subcommand).",
        discussion: "With no names, sends each line read from standard input. Exits 1 if any name got no reply."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: ArgumentHelp("Seconds to wait for each reply, per attempt.", valueName: "seconds"))
    var timeout = 1.0

    @Option(help: "Attempts after the first, for a name whose reply did not come.")
    var retries = 2

    @Argument(help: "Names to send, e.g. Michael Tracy Sarah.")
    var names: [String] = []

    func validate() throws {
        try require("--timeout", timeout, in: 0.001...3600)
        try require("--retries", retries, in: 0...100)
    }

    func run() throws {
        let (socket, address) = try server.connect()
        defer { try? socket.close() }  // exiting anyway
        var exchange = Exchange(socket: socket, timeout: UInt64(timeout * 1e9), attempts: retries + 1)
        var lost: [String] = []
        func ask(_ name: String) {
            switch exchange.ask(Array(name.utf8)) {
            case .reply(let bytes):
                writeOut(bytes + [UInt8(ascii: "\n")])
            case .noReply(let reason):
                lost.append(name)
                writeErr("hello: no reply to \"\(name)\" from \(address) after \(retries + 1) attempt(s): \(reason)\n")
            }
        }
        if names.isEmpty {
            while let line = readLine(strippingNewline: true) { ask(line) }
        } else {
            names.forEach(ask)
        }
        if !lost.isEmpty {
            writeErr(
                "hello: \(lost.count) of \(names.isEmpty ? lost.count + exchange.answered : names.count) got no reply: \(lost.joined(separator: ", "))\n"
            )
            throw ExitCode.failure
        }
    }
}

/// One request and its reply over UDP, which may lose either: resend after `timeout`, up
/// to `attempts` times. A reply that matches an earlier request (it came late) is skipped.
struct Exchange {
    enum Outcome {
        case reply([UInt8])
        case noReply(String)
    }

    let socket: DatagramSocket
    let timeout: UInt64
    let attempts: Int
    private(set) var answered = 0
    private var earlier: Set<[UInt8]> = []
    private var buffer = [UInt8](repeating: 0, count: 65536)

    init(socket: DatagramSocket, timeout: UInt64, attempts: Int) {
        self.socket = socket
        self.timeout = timeout
        self.attempts = attempts
    }

    mutating func ask(_ request: [UInt8]) -> Outcome {
        let expected = Set(ServiceName.allCases.compactMap { $0.replyRule?.reply(to: request) })
        var reason = "timed out"
        for _ in 0..<attempts {
            do {
                try request.withUnsafeBytes { _ = try socket.send($0) }
                let deadline = monotonicNanoseconds() + timeout
                while true {
                    let now = monotonicNanoseconds()
                    guard now < deadline else { break }
                    guard
                        let n = try buffer.withUnsafeMutableBytes({
                            try socket.receive(into: $0, timeout: deadline - now)
                        })
                    else { break }
                    let reply = Array(buffer[..<n])
                    if earlier.contains(reply) && !expected.contains(reply) { continue }  // a late reply
                    earlier.formUnion(expected)
                    answered += 1
                    return .reply(reply)
                }
                reason = "timed out"
            } catch {
                // ECONNREFUSED: nothing listens there (an ICMP port unreachable came back).
                reason =
                    (error as? SocketError)?.errno == .connectionRefused
                    ? "connection refused (no server on that port?)" : "\(error)"
                usleep(UInt32(min(timeout / 1000, 100_000)))  // refusals are instant: pace the retries a little
            }
        }
        earlier.formUnion(expected)
        return .noReply(reason)
    }
}

func writeErr(_ text: String) {
    writeOut(to: STDERR_FILENO, text)
}
