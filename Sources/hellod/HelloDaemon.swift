import ArgumentParser
import HelloCLI
import HelloChat
import HelloChatWire
import HelloDatagram
import HelloLauncher
import HelloServer
import HelloService
import HelloSocket
import Logging

@main
struct HelloDaemon: ParsableCommand, OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "hellod",
        abstract: "A UDP daemon that answers every datagram: \"Michael\" gets \"Hello, Michael!\".",
        discussion: """
            Each socket answers with one service: hello ("Hello, <request>!"), echo (RFC 862, \
            the request itself) or chat (a group chat relay: docs/PROTOCOL.md). With no --listen, serves --mode on UDP port 9999 on every \
            address, IPv4 and IPv6 ([::]:9999). Started by systemd socket activation, it serves \
            the sockets systemd passes instead, each with the service its FileDescriptorName= \
            names (hello, echo, chat; "unknown" or a unit's name: --mode). \
            SIGTERM or SIGINT: answers every datagram already read, then exits 0. \
            SIGHUP: logs the counters (within 120 ms), and goes on serving. \
            SIGUSR1: switches the per-datagram trace (--trace) on or off.
            """,
        version: hellodVersion
    )

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "A service and an address to serve it on: hello@127.0.0.1:9999, echo@[::1]:8899, echo@8899 for [::]:8899; without SERVICE@, --mode's. Repeatable.",
            valueName: "[service@]host:port"),
        transform: ListenAddress.parse)
    var listen: [ListenAddress] = []

    @Option(
        help: ArgumentHelp(
            "The service of a --listen address without SERVICE@ (and of a systemd socket without FileDescriptorName=): hello (\"Hello, <request>!\") or echo (the request itself).",
            valueName: "service"))
    var mode: ServiceName = .hello

    @Option(
        help: ArgumentHelp(
            "At most this many datagrams per recvmmsg/sendmmsg call (1: one at a time). Where datagrams come alone (a ping-pong, a small chat room), a receive asks for one: asking for a batch made the kernel look at the empty queue once more.",
            valueName: "n"))
    var batch: Int = 64

    @Option(
        name: .customLong("max-datagram"),
        help: ArgumentHelp(
            "The largest request read whole; a larger one is dropped as truncated. At most 1224 (hello) or 1232 (echo), every reply fits any path, and leaves whole: never fragmented, whatever ICMP says.",
            valueName: "bytes"))
    var maxDatagram: Int = 65527

    @Option(help: ArgumentHelp("Sockets and threads per --listen address (SO_REUSEPORT).", valueName: "n"))
    var workers: Int = 1

    @Option(
        name: .customLong("spin-us"),
        help: ArgumentHelp(
            "After a batch of fewer than an eighth of --batch (a lone request, a few in step), poll up to this many microseconds before sleeping (0: sleep at once); polling that finds nothing, or finds traffic only after a quarter of this, polls half as long the next time. After a larger batch (bulk traffic) sleep at once. hello and echo only: chat always sleeps at once, a message costing it a send per member.",
            valueName: "us"))
    var spinMicroseconds: Int = 50

    @Option(
        name: .customLong("coalesce-us"),
        help: ArgumentHelp(
            "Under load, wait this many microseconds for a partly full batch to fill (0: never). A batch of fewer than an eighth of --batch (8 of 64) is never followed by a wait: a lone request or a few in step are not delayed. hello and echo only, as --spin-us.",
            valueName: "us"))
    var coalesceMicroseconds: Int = 30

    @Flag(
        inversion: .prefixedNo,
        help: "Send same-length replies to one peer as one segmented send (UDP GSO).")
    var gso = true

    @Flag(
        inversion: .prefixedNo,
        help:
            "Take a train of datagrams from one peer as one receive (UDP GRO), each still answered alone. On only with --max-datagram 65527, the default: shorter slots would cut trains."
    )
    var gro = true

    @Flag(
        name: .customLong("allow-privileged-ports"),
        help: "Answer source ports below 1024 (refused by default: echo, chargen, DNS, NTP live there).")
    var allowPrivilegedPorts = false

    @Flag(
        name: .customLong("allow-own-ports"),
        help: "Answer datagrams from a port hellod listens on (refused by default: two hellods would loop).")
    var allowOwnPorts = false

    @Option(
        name: .customLong("rate-limit"),
        help: ArgumentHelp(
            "hello and echo: replies per second per source prefix (0: no limit). chat has limits of its own.",
            valueName: "per-second"))
    var rateLimit: UInt64 = 1000

    @Option(name: .customLong("rate-burst"), help: ArgumentHelp("Replies a source may get at once.", valueName: "n"))
    var rateBurst: UInt64 = 200

    @Option(
        name: .customLong("rate-prefix-v4"),
        help: ArgumentHelp("IPv4 prefix length one limit covers.", valueName: "bits"))
    var ratePrefixV4 = 32

    @Option(
        name: .customLong("rate-prefix-v6"),
        help: ArgumentHelp("IPv6 prefix length one limit covers.", valueName: "bits"))
    var ratePrefixV6 = 64

    @Option(
        name: .customLong("rate-table"),
        help: ArgumentHelp(
            "Sources the limiter tracks at once, per worker (fixed memory: 16 bytes each).", valueName: "n"))
    var rateTable = 4096

    @Flag(name: .customLong("rate-limit-loopback"), help: "Rate-limit loopback peers too (exempt by default).")
    var rateLimitLoopback = false

    @Option(name: .customLong("chat-rooms"), help: ArgumentHelp("chat: rooms at once (fixed tables).", valueName: "n"))
    var chatRooms = 64

    @Option(name: .customLong("chat-members"), help: ArgumentHelp("chat: members per room.", valueName: "n"))
    var chatMembers = 32

    @Option(
        name: .customLong("chat-memberships-per-prefix"),
        help: ArgumentHelp("chat: memberships one source prefix (IPv4 /32, IPv6 /64) may hold.", valueName: "n"))
    var chatMembershipsPerPrefix = 8

    @Option(
        name: .customLong("chat-history"),
        help: ArgumentHelp("chat: past events a joining member gets.", valueName: "n"))
    var chatHistory = 32

    @Option(
        name: .customLong("chat-backlog"),
        help: ArgumentHelp("chat: events each room keeps for RESEND.", valueName: "n"))
    var chatBacklog = 256

    @Option(
        name: .customLong("chat-max-message"), help: ArgumentHelp("chat: the longest message text.", valueName: "bytes")
    )
    var chatMaxMessage = 1000

    @Option(
        name: .customLong("chat-message-rate"),
        help: ArgumentHelp("chat: messages per second per member.", valueName: "per-second"))
    var chatMessageRate: UInt64 = 5

    @Option(
        name: .customLong("chat-message-burst"),
        help: ArgumentHelp("chat: messages a member may send at once.", valueName: "n"))
    var chatMessageBurst: UInt64 = 10

    @Option(
        name: .customLong("chat-room-delivery-rate"),
        help: ArgumentHelp(
            "chat: deliveries per second per room (a message is one per member).", valueName: "per-second"))
    var chatRoomDeliveryRate: UInt64 = 10_240

    @Option(
        name: .customLong("chat-room-delivery-burst"),
        help: ArgumentHelp("chat: deliveries a room may make at once (at least --chat-members).", valueName: "n"))
    var chatRoomDeliveryBurst: UInt64 = 20_480

    @Option(
        name: .customLong("chat-repair-bytes-rate"),
        help: ArgumentHelp(
            "chat: bytes per second per member of what it is sent again on request (RESEND, a keepalive's catch-up).",
            valueName: "bytes"))
    var chatRepairBytesRate: UInt64 = 65_536

    @Option(
        name: .customLong("chat-repair-bytes-burst"),
        help: ArgumentHelp(
            "chat: bytes of it a member may be sent at once (at least 1232, one datagram; default one full RESEND, 64 x 1232).",
            valueName: "bytes"))
    var chatRepairBytesBurst = UInt64(ChatWire.maxResend * ChatWire.largestDatagram)

    @Option(
        name: .customLong("chat-join-rate"),
        help: ArgumentHelp(
            "chat: joins per second per source prefix (each is announced to its room).", valueName: "per-second"))
    var chatJoinRate: UInt64 = 4

    @Option(
        name: .customLong("chat-join-burst"),
        help: ArgumentHelp("chat: joins a source prefix may make at once.", valueName: "n"))
    var chatJoinBurst: UInt64 = 16

    @Option(
        name: .customLong("chat-unproven-answer-rate"),
        help: ArgumentHelp(
            "chat: challenges and NOT A MEMBER answers per second from the whole relay, all sources and --workers together (each at most 64 bytes and never longer than its request; besides 20 a second per source address and port).",
            valueName: "per-second"))
    var chatUnprovenAnswerRate: UInt64 = 20_000

    @Option(
        name: .customLong("chat-unproven-answer-burst"),
        help: ArgumentHelp("chat: challenges and NOT A MEMBER answers the relay may send at once.", valueName: "n"))
    var chatUnprovenAnswerBurst: UInt64 = 20_000

    @Option(
        name: .customLong("chat-epoch-s"),
        help: ArgumentHelp(
            "chat: seconds a cookie key lives (a cookie of the previous epoch is still taken).", valueName: "s"))
    var chatEpochSeconds: UInt64 = 120

    @Option(
        name: .customLong("chat-silence-s"),
        help: ArgumentHelp("chat: a member silent this long is sent nothing more.", valueName: "s"))
    var chatSilenceSeconds: UInt64 = 35

    @Option(
        name: .customLong("chat-evict-s"),
        help: ArgumentHelp("chat: a member silent this long is evicted (\"timed out\").", valueName: "s"))
    var chatEvictSeconds: UInt64 = 60

    @Option(
        name: .customLong("chat-fanout-us"),
        help: ArgumentHelp(
            "chat: the least time between two sends of a room's new messages to its members (0: at once). Above one message per interval, a room's messages gather, several to a datagram: less CPU per delivery, for up to this much more latency. A message after a quiet interval goes at once.",
            valueName: "us"))
    var chatFanOutMicroseconds: UInt64 = 0

    @Option(
        name: .customLong("metrics-file"),
        help: ArgumentHelp(
            "Write the counters here in Prometheus's text format, for node_exporter's textfile collector (name it *.prom): at start, every --metrics-interval, on SIGHUP and at stop; replaced atomically, mode 0644.",
            valueName: "path"))
    var metricsFile: String?

    @Option(
        name: .customLong("metrics-interval"),
        help: ArgumentHelp("Seconds between writes of --metrics-file.", valueName: "s"))
    var metricsInterval: Int = 5

    @Flag(
        name: .customLong("trace"),
        help:
            "Log a line for each datagram read: service, peer, local address, size and what became of it (replied, served, or the drop reason), with HELLOD_* journal fields. Off by default; SIGUSR1 switches it at run time."
    )
    var trace = false

    @Option(
        name: .customLong("trace-from"),
        help: ArgumentHelp(
            "Trace only datagrams from this address or prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/32. Repeatable.",
            valueName: "prefix"),
        transform: TraceSettings.parseSource)
    var traceFrom: [IPPrefix] = []

    @Option(
        name: .customLong("trace-rate"),
        help: ArgumentHelp(
            "Trace lines a second at most; the datagrams past it are counted in one line a second.",
            valueName: "per-second"))
    var traceRate = 200

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Flag(
        name: .customLong("check-config"),
        help: "Check the options as a start would, print one line and exit (0: OK, 64: not) without binding or serving."
    )
    var checkConfig = false

    func validate() throws {
        try require("--batch", batch, in: 1...1024)
        try require("--max-datagram", maxDatagram, in: 1...65527)
        try require("--workers", workers, in: 1...256)
        try require("--spin-us", spinMicroseconds, in: 0...1_000_000)
        try require("--coalesce-us", coalesceMicroseconds, in: 0...10_000)
        try require("--rate-limit", rateLimit, in: 0...1_000_000_000)
        try require("--rate-burst", rateBurst, in: 1...1_000_000_000)
        try require("--rate-prefix-v4", ratePrefixV4, in: 0...32)
        try require("--rate-prefix-v6", ratePrefixV6, in: 0...128)
        try require("--rate-table", rateTable, in: 8...(1 << 24))
        try require("--chat-rooms", chatRooms, in: 1...65536)
        try require("--chat-members", chatMembers, in: 1...4096)
        try require("--chat-memberships-per-prefix", chatMembershipsPerPrefix, in: 1...1_000_000)
        try require("--chat-history", chatHistory, in: 0...1024)
        try require("--chat-backlog", chatBacklog, in: 1...65536)
        try require("--chat-max-message", chatMaxMessage, in: 0...1000)
        try require("--chat-message-rate", chatMessageRate, in: 1...1_000_000)
        try require("--chat-message-burst", chatMessageBurst, in: 1...1_000_000)
        try require("--chat-room-delivery-rate", chatRoomDeliveryRate, in: 1...1_000_000_000)
        try require("--chat-join-rate", chatJoinRate, in: 1...1_000_000)
        try require("--chat-join-burst", chatJoinBurst, in: 1...1_000_000)
        try require("--chat-room-delivery-burst", chatRoomDeliveryBurst, in: 1...1_000_000_000)
        if chatRoomDeliveryBurst < UInt64(chatMembers) {  // a message to a full room would never fit
            throw ValidationError(
                "--chat-room-delivery-burst must be at least --chat-members (\(chatMembers)), not \(chatRoomDeliveryBurst)."
            )
        }
        try require("--chat-repair-bytes-rate", chatRepairBytesRate, in: 1...1_000_000_000)
        try require(
            "--chat-repair-bytes-burst", chatRepairBytesBurst, in: UInt64(ChatWire.largestDatagram)...1_000_000_000)
        try require("--chat-unproven-answer-rate", chatUnprovenAnswerRate, in: 1...1_000_000_000)
        try require("--chat-unproven-answer-burst", chatUnprovenAnswerBurst, in: 1...1_000_000_000)
        try require("--chat-epoch-s", chatEpochSeconds, in: 1...86400)
        try require("--chat-silence-s", chatSilenceSeconds, in: 1...86400)
        try require("--chat-evict-s", chatEvictSeconds, in: 1...86400)
        try require("--chat-fanout-us", chatFanOutMicroseconds, in: 0...1_000_000)
        try require("--metrics-interval", metricsInterval, in: 1...86400)
        try require("--trace-rate", traceRate, in: 1...10_000)
        // Each chat worker's tables are allocated at start: settings whose address space is
        // more than the machine's memory and swap would fail that allocation (Linux refuses
        // such an obvious overcommit), so they are refused here, in one line.
        let tables = ChatService.tableBytes(ServiceSettings(batchSize: batch), chat: chatLimits())
        let machine = Self.memoryAndSwap()
        if tables > machine {
            throw ValidationError(
                "the chat tables (--chat-rooms x --chat-members, --chat-backlog) would take \(gibibytes(tables)) GiB, more than this machine's \(gibibytes(machine)) GiB of memory and swap."
            )
        }
        if let metricsFile, metricsFile.isEmpty || metricsFile.hasSuffix("/") {
            throw ValidationError("--metrics-file must name a file, not \"\(metricsFile)\".")
        }
    }

    func run() throws {
        if checkConfig {  // parsed and validated as a start is: no socket, no worker
            _ = policy(ownPorts: listen.map(\.address.port))
            print("hellod: configuration OK")
            return
        }
        DaemonLog.bootstrap(level: logLevel)
        let log = Logger(label: "hellod")
        do {
            try start(log: log)
        } catch {
            log.error("\(error)")
            throw error.exitCode
        }
    }

    /// Opens the sockets and serves them until a signal says stop.
    private func start(log: Logger) throws(StartFailure) {
        let sockets = try ServedSocket.open(listen: listen, defaultService: mode, workers: workers, log: log)
        let configuration = WorkerConfiguration(
            batchSize: batch, maxDatagram: maxDatagram,
            spinLimit: UInt64(spinMicroseconds) * 1000, coalesceDelay: UInt64(coalesceMicroseconds) * 1000,
            segmentation: gso,
            coalescing: gro && WorkerConfiguration.coalescingAllowed(maxDatagram: maxDatagram))
        let server = try Supervisor(
            sockets: sockets, configuration: configuration,
            policy: policy(ownPorts: sockets.map(\.address.port)), chat: try chatSettings(),
            metrics: metricsFile.map { ($0, UInt64(metricsInterval) * 1_000_000_000) },
            trace: TraceSettings(on: trace, sources: traceFrom, rate: traceRate), log: log)
        try server.run()
    }
}

extension HelloDaemon {
    /// The chat relay's settings from the options, all but its secret.
    func chatLimits() -> ChatSettings {
        var chat = ChatSettings()
        chat.rooms = chatRooms
        chat.membersPerRoom = chatMembers
        chat.membershipsPerPrefix = chatMembershipsPerPrefix
        chat.history = chatHistory
        chat.backlog = chatBacklog
        chat.maxMessage = chatMaxMessage
        chat.messageRate = chatMessageRate
        chat.messageBurst = chatMessageBurst
        chat.roomDeliveryRate = chatRoomDeliveryRate
        chat.joinLimit.rate = chatJoinRate
        chat.joinLimit.burst = chatJoinBurst
        chat.roomDeliveryBurst = chatRoomDeliveryBurst
        chat.repairByteRate = chatRepairBytesRate
        chat.repairByteBurst = chatRepairBytesBurst
        chat.unprovenAnswerCap = RelayRate(rate: chatUnprovenAnswerRate, burst: chatUnprovenAnswerBurst)
        chat.epochSeconds = chatEpochSeconds
        chat.silenceSeconds = chatSilenceSeconds
        chat.evictSeconds = chatEvictSeconds
        chat.fanOutInterval = chatFanOutMicroseconds * 1000
        return chat
    }

    /// This machine's memory and swap, in bytes (as good as unlimited if not known).
    static func memoryAndSwap() -> Int {
        let bytes = Posix.memoryAndSwap()
        return bytes == 0 || bytes > UInt64(Int.max) ? Int.max : Int(bytes)
    }

    /// The chat relay's settings, with 128 bits from getrandom(2) as its secret: cookies
    /// and tokens of an earlier run are worth nothing to this one.
    func chatSettings() throws(StartFailure) -> ChatSettings {
        var chat = chatLimits()
        var secret: (UInt64, UInt64) = (0, 0)
        let got: Int
        do {
            got = try withUnsafeMutableBytes(of: &secret) { bytes throws(SocketError) in try Posix.fillRandom(bytes) }
        } catch {
            throw .noRandomness(error)
        }
        guard got == MemoryLayout.size(ofValue: secret) else { throw .noRandomness(nil) }
        chat.secret = secret
        return chat
    }

    func policy(ownPorts: [UInt16]) -> AdmissionPolicy {
        var policy = AdmissionPolicy()
        policy.allowPrivilegedSourcePorts = allowPrivilegedPorts
        policy.allowOwnPorts = allowOwnPorts
        policy.ownPorts = Array(Set(ownPorts)).sorted()
        policy.rateLimit =
            rateLimit == 0
            ? nil
            : RateLimiter.Configuration(
                rate: rateLimit, burst: rateBurst, ipv4PrefixLength: ratePrefixV4, ipv6PrefixLength: ratePrefixV6,
                tableSize: rateTable)
        policy.limitLoopback = rateLimitLoopback
        return policy
    }
}

/// Bytes as GiB, one decimal.
func gibibytes(_ bytes: Int) -> String {
    let tenths = bytes / (1 << 30 / 10)
    return "\(tenths / 10).\(tenths % 10)"
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
