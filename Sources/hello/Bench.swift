import ArgumentParser
import Glibc
import HelloCLI
import HelloChatWire
import HelloLauncher
import HelloSocket
import Histogram

/// `hello bench`: load a server and check everything that comes back. Two loads, each a
/// subcommand with only its own options; `requests` is the default.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract:
            "Load a server and check everything that comes back: requests to hello or echo (the default), or messages through a chat relay.",
        subcommands: [BenchRequests.self, BenchChat.self],
        defaultSubcommand: BenchRequests.self
    )
}

/// What both loads take: how long, how many datagrams a system call, how to report.
struct BenchRun: ParsableArguments {
    @Option(help: ArgumentHelp("Seconds to send for.", valueName: "seconds"))
    var duration = 5.0

    @Option(help: "Datagrams per sendmmsg/recvmmsg.")
    var batch = 64

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(
        help: ArgumentHelp(
            "Also write the latency histogram to this file in HdrHistogram's percentile-distribution format (.hgrm, microseconds), as wrk2 does.",
            valueName: "file"),
        completion: .file())
    var hgrm: String?

    func validate() throws {
        try require("--duration", duration, in: 0.001...86400)
        try require("--batch", batch, in: 1...1024)
    }

    var nanoseconds: UInt64 { UInt64(duration * 1e9) }
}

struct BenchRequests: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requests",
        abstract: "Load a hello or echo server with numbered requests and check every reply byte for byte.",
        discussion: """
            Closed loop (default): each flow keeps --window requests in flight. \
            Open loop (--rate): requests leave at that total rate whatever comes back, so an outage \
            shows as unanswered requests. A request unanswered after --timeout is lost; a reply \
            that comes later still counts as answered. Exits 1 if any request was lost or any reply wrong.
            """
    )

    @OptionGroup var server: ServerOptions
    @OptionGroup var load: BenchRun

    @Option(help: "Sockets sending at once, each its own flow (source port).")
    var flows = 8

    @Option(help: "Requests in flight per flow (closed loop).")
    var window = 32

    @Option(
        help: ArgumentHelp(
            "Requests per second over all flows (open loop), instead of --window.", valueName: "per-second"))
    var rate: Double?

    @Option(help: ArgumentHelp("Stop after this many requests per flow (or at --duration).", valueName: "n"))
    var requests: Int?

    @Option(help: ArgumentHelp("Request size in bytes, or a range such as 16-1400 (at least 16).", valueName: "bytes"))
    var size = RequestSize(lower: 16, upper: 16)

    @Option(help: "The server's service: hello or echo.")
    var mode: ServiceName = .hello

    @Option(
        help: ArgumentHelp(
            "Send trains of this many requests, each train one UDP_SEGMENT send (what GSO senders do; 1: plain sends). Needs one --size.",
            valueName: "n"))
    var gso = 1

    @Option(help: ArgumentHelp("Seconds after which an unanswered request is lost.", valueName: "seconds"))
    var timeout = 1.0

    func validate() throws {
        try require("--flows", flows, in: 1...1024)
        try require("--window", window, in: 1...65536)
        try require("--timeout", timeout, in: 0.001...60)
        if let rate { try require("--rate", rate, in: 1...1e8) }
        if let requests { try require("--requests", requests, in: 1...Int(UInt32.max)) }
        // The kernel's limit on segments in one send (UDP_MAX_SEGMENTS).
        try require("--gso", gso, in: 1...64)
        if gso > 1 {
            guard size.lower == size.upper else {
                throw ValidationError("--gso \(gso) needs one --size: a train's datagrams are all of one length.")
            }
            guard gso * size.upper <= 65507 else {
                throw ValidationError("--gso \(gso) trains of \(size.upper) bytes are longer than one UDP send allows.")
            }
        }
        guard let rule = mode.replyRule else {
            throw ValidationError(
                "--mode \(mode.rawValue) does not answer each request with one reply: bench measures hello and echo.")
        }
        let largest = rule.replyLength(forRequestOf: size.upper)
        guard largest <= 65507 else {
            throw ValidationError("--size \(size.upper) makes replies larger than UDP allows.")
        }
    }

    func run() throws {
        let hgrm = try HgrmFile(load.hgrm)
        var sockets: [DatagramSocket] = []
        var target: SocketAddress?
        for _ in 0..<flows {
            let (socket, address) = try server.connect()
            try? socket.setReceiveBufferSize(4 << 20)
            try? socket.setSendBufferSize(4 << 20)
            if gso > 1 { try socket.segmentEverySend(size: size.upper) }
            sockets.append(socket)
            target = address
        }
        defer { sockets.forEach { try? $0.close() } }  // exiting anyway
        var generator = LoadGenerator(
            sockets: sockets, rule: mode.replyRule!, size: size, batch: load.batch, train: gso,
            window: rate == nil ? window : nil, rate: rate, requestsPerFlow: requests,
            duration: load.nanoseconds, timeout: UInt64(timeout * 1e9),
            progress: isatty(STDERR_FILENO) == 1)
        let report = generator.run()
        writeOut(to: STDOUT_FILENO, load.json ? report.json : report.text(target: target.map { "\($0)" } ?? "?"))
        try hgrm?.write(generator.roundTrips)  // replies in time: answered less late
        if report.lost > 0 || report.wrong > 0 {
            throw ExitCode.failure
        }
    }
}

struct BenchChat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Load a chat relay with messages from many members and check every delivery.",
        discussion: """
            --members sockets, each its own source port, join --rooms rooms (round robin) through \
            the real handshake (CHALLENGE, cookie, WELCOME); then messages of --size bytes of text \
            leave at --rate in all, open loop, from each member in turn. Each text carries its send \
            time and id, so every delivery (a message reaching one member, the sender included) \
            gives a latency and the ledger tells lost, duplicated and out-of-order deliveries apart. \
            --wire raw speaks no protocol, as the project's plain C relay (bench/reference/relay.c \
            in its source) does: a member is a source that has sent once, and a message is its \
            bytes; the same load and clock for both relays. Exits 1 if any delivery was lost, \
            duplicated, out of order or wrong.
            """
    )

    @OptionGroup var server: ServerOptions
    @OptionGroup var load: BenchRun

    @Option(help: "What the relay speaks: chat (hellod's chat protocol) or raw (no protocol, one room).")
    var wire: ChatLoad.Wire = .chat

    @Option(help: "Members, each its own socket.")
    var members = 64

    @Option(help: "Rooms, the members spread over them in turn.")
    var rooms = 1

    @Option(help: ArgumentHelp("Messages per second over all members.", valueName: "per-second"))
    var rate = 1000.0

    @Option(help: ArgumentHelp("The text of each message in bytes (31-1000).", valueName: "bytes"))
    var size = 64

    @Option(help: ArgumentHelp("How long after the last send a delivery may still come.", valueName: "seconds"))
    var timeout = 1.0

    @Option(
        name: .customLong("server-pid"),
        help: ArgumentHelp("The relay's process, to report its CPU per delivery and RSS (/proc).", valueName: "pid"))
    var serverPID: Int32?

    func validate() throws {
        try require("--members", members, in: 1...1024)
        try require("--rooms", rooms, in: 1...members)
        try require("--rate", rate, in: 1...1e8)
        try require("--timeout", timeout, in: 0.001...60)
        try require("--size", size, in: ChatLoadText.headerLength...ChatWire.maxText)
        if let serverPID, kill(serverPID, 0) != 0 && errno == ESRCH {
            throw ValidationError("--server-pid \(serverPID): no such process.")
        }
        if wire == .raw && rooms != 1 {
            throw ValidationError(
                "--wire raw has one room (the plain C relay relays to every member): not --rooms \(rooms).")
        }
    }

    func run() throws {
        let hgrm = try HgrmFile(load.hgrm)
        var settings = ChatLoad.Settings()
        settings.wire = wire
        settings.members = members
        settings.rooms = rooms
        settings.rate = rate
        settings.duration = load.nanoseconds
        settings.size = size
        settings.timeout = UInt64(timeout * 1e9)
        settings.batch = load.batch
        settings.progress = isatty(STDERR_FILENO) == 1
        settings.serverPID = serverPID
        var sockets: [DatagramSocket] = []
        var target: SocketAddress?
        defer { sockets.forEach { try? $0.close() } }  // exiting anyway
        for _ in 0..<members {
            let (socket, address) = try server.connect()
            try? socket.setReceiveBufferSize(4 << 20)
            sockets.append(socket)
            target = address
        }
        var chatLoad = ChatLoad(settings: settings, sockets: sockets)
        let report: ChatLoadReport
        do {
            report = try chatLoad.run()
        } catch {
            writeOut(to: STDERR_FILENO, "hello: bench chat: \(error)\n")
            throw ExitCode.failure
        }
        let name = wire.rawValue
        writeOut(
            to: STDOUT_FILENO,
            load.json
                ? report.json(protocol: name, members: members, rooms: rooms)
                : report.text(target: target.map { "\($0)" } ?? "?", protocol: name, members: members, rooms: rooms))
        try hgrm?.write(chatLoad.latencies)  // every delivery
        if report.failed {
            throw ExitCode.failure
        }
    }
}

extension ChatLoad.Wire: ExpressibleByArgument {}

/// A request size, or a range of them (each request's size then follows from its number).
struct RequestSize: ExpressibleByArgument {
    let lower: Int
    let upper: Int

    init(lower: Int, upper: Int) {
        self.lower = lower
        self.upper = upper
    }

    init?(argument: String) {
        let parts = argument.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard let lower = parts.first ?? nil,
            let upper = parts.count == 2 ? parts[1] : (parts.count == 1 ? lower : nil),
            lower >= RequestCodec.headerLength, upper >= lower, upper <= 65527
        else { return nil }
        self.init(lower: lower, upper: upper)
    }

    var defaultValueDescription: String { lower == upper ? "\(lower)" : "\(lower)-\(upper)" }
}

/// The bytes of request `sequence` of flow `flow`: a 16-byte printable header
/// `#FFFF.SSSSSSSSSS` (flow, sequence) then a pattern, so a reply can be matched to its
/// request and checked byte for byte without storing what was sent.
struct RequestCodec {
    static let headerLength = 16
    let size: RequestSize

    func length(of sequence: UInt32) -> Int {
        guard size.upper > size.lower else { return size.lower }
        let mixed = (UInt64(sequence) &* 0x9E37_79B9_7F4A_7C15) >> 32
        return size.lower + Int(mixed % UInt64(size.upper - size.lower + 1))
    }

    /// Writes the request at `to` and returns its length.
    func write(flow: Int, sequence: UInt32, to out: UnsafeMutableRawPointer) -> Int {
        let length = length(of: sequence)
        let bytes = out.assumingMemoryBound(to: UInt8.self)
        bytes[0] = UInt8(ascii: "#")
        Self.digits(UInt64(flow % 10000), count: 4, at: bytes + 1)
        bytes[5] = UInt8(ascii: ".")
        Self.digits(UInt64(sequence), count: 10, at: bytes + 6)
        for i in Self.headerLength..<length {
            bytes[i] = UInt8(ascii: "a") + UInt8((Int(sequence) &+ i) % 26)
        }
        return length
    }

    /// The flow and sequence a request says it is, if its header reads right.
    func parse(_ request: UnsafeRawBufferPointer) -> (flow: Int, sequence: UInt32)? {
        guard request.count >= Self.headerLength, request[0] == UInt8(ascii: "#"), request[5] == UInt8(ascii: ".")
        else { return nil }
        guard let flow = Self.number(request, 1..<5), let sequence = Self.number(request, 6..<16),
            sequence <= UInt64(UInt32.max)
        else { return nil }
        return (Int(flow), UInt32(sequence))
    }

    private static func digits(_ value: UInt64, count: Int, at out: UnsafeMutablePointer<UInt8>) {
        var value = value
        for i in stride(from: count - 1, through: 0, by: -1) {
            out[i] = UInt8(ascii: "0") + UInt8(value % 10)
            value /= 10
        }
    }

    private static func number(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        var value: UInt64 = 0
        for i in range {
            let digit = bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + UInt64(digit)
        }
        return value
    }
}
