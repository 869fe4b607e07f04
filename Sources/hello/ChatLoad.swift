import Glibc
import HelloCLI
import HelloChatWire
import HelloService
import HelloSocket
import Histogram

/// The engine of `hello bench chat`: M members, each its own socket (source port), in R
/// rooms of a relay; messages at a total rate, open loop (paced, never waiting for what
/// comes back), round robin over the members; every member's receipt of every message
/// checked against the room it should reach.
///
/// Each message's text starts with its send time and its id (`ChatLoadText`), so one
/// clock measures send-to-receipt latency for every (message, recipient) pair, a
/// delivery, and the ledger tells lost, duplicated and out-of-order ones apart.
///
/// Two protocols, one clock: `.chat` speaks hellod's chat protocol (JOIN through
/// CHALLENGE and cookie to WELCOME, then SAY; deliveries come in EVENTS datagrams, maybe
/// several to one); `.raw` speaks bench/reference/relay.c's none (a member is a source
/// that has sent once; every datagram goes to every member), so both relays can be
/// measured at the same load.
struct ChatLoad {
    enum Wire: String { case chat, raw }

    struct Settings {
        var wire: Wire = .chat
        var members = 64
        var rooms = 1
        var rate = 1000.0
        var duration: UInt64 = 5_000_000_000
        var size = 64
        /// How long after the last send a delivery may still come.
        var timeout: UInt64 = 1_000_000_000
        var batch = 64
        var progress = false
        /// The relay's process, when it runs here: its CPU time over the measured interval
        /// and its memory go in the report.
        var serverPID: Int32?
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let settings: Settings
    let sockets: [DatagramSocket]
    private var ledger: DeliveryLedger
    private var report = ChatLoadReport()
    private(set) var latencies = Histogram<UInt64>(
        highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    /// Each member's token (chat), and its next message's number (from 1).
    private var tokens: [UInt64]
    /// Each member's tag and secret (chat), random, as a client's are.
    private let tags: [UInt64]
    private let secrets: [ChatSecret]
    private var nextSequence: [UInt32]
    /// The latest room sequence each member has received (chat).
    private var lastRoomSequence: [UInt32]
    /// Each room's member count: a message to a room is expected that many times.
    private let roomSizes: [Int]
    /// Each member's own receive vector and buffer: a sweep reads every member's socket,
    /// and notes when, before it looks at what any of them got (`measure`).
    private let incoming: [MessageVector]
    private let receiveBuffer: UnsafeMutableRawPointer
    /// The last sweep's datagrams and time of receipt, by member.
    private var received: [Int]
    private var receivedAt: [UInt64]
    private let sendBuffer: UnsafeMutableRawPointer
    private static let receiveSlot = 2048

    init(settings: Settings, sockets: [DatagramSocket]) {
        self.settings = settings
        self.sockets = sockets
        let m = settings.members
        ledger = DeliveryLedger(members: m)
        tokens = Array(repeating: 0, count: m)
        var random = SystemRandomNumberGenerator()
        tags = (0..<m).map { _ in random.next() }
        secrets = (0..<m).map { _ in ChatSecret(high: random.next(), low: random.next()) }
        nextSequence = Array(repeating: 1, count: m)
        lastRoomSequence = Array(repeating: 0, count: m)
        roomSizes = (0..<settings.rooms).map { r in (0..<m).filter { $0 % settings.rooms == r }.count }
        // Reserved, not touched: a slot no datagram reaches costs no memory.
        let buffer = UnsafeMutableRawPointer.allocate(
            byteCount: m * settings.batch * Self.receiveSlot, alignment: 64)
        let (batch, slot) = (settings.batch, Self.receiveSlot)
        receiveBuffer = buffer
        incoming = (0..<m).map { member in
            let vector = MessageVector(capacity: batch, names: false)
            for i in 0..<batch { vector.setBuffer(i, buffer + (member * batch + i) * slot, length: slot) }
            return vector
        }
        received = Array(repeating: 0, count: m)
        receivedAt = Array(repeating: 0, count: m)
        sendBuffer = .allocate(byteCount: 2048, alignment: 64)
    }

    func room(of member: Int) -> Int { member % settings.rooms }

    mutating func run() throws(Failure) -> ChatLoadReport {
        switch settings.wire {
        case .chat: try join()
        case .raw: register()
        }
        drain(for: 200_000_000)  // the joins' announcements, the registrations' copies
        measure()
        if settings.wire == .chat { leave() }
        return report
    }

    // MARK: Joining

    /// Joins every member through the real handshake: a JOIN without a cookie, padded to
    /// 64 bytes, gets a CHALLENGE; the JOIN with its cookie gets a WELCOME and a token.
    /// The relay rate-limits challenges per source prefix (all of loopback is one), so
    /// unanswered JOINs are sent again every 100 ms until the join deadline.
    private mutating func join() throws(Failure) {
        let m = settings.members
        var cookies = Array(repeating: ChatCookie.none, count: m)
        var lastTry = Array(repeating: UInt64(0), count: m)
        var joined = 0
        let deadline = monotonicNanoseconds() + 5_000_000_000 + UInt64(m) * 100_000_000
        while joined < m {
            let now = monotonicNanoseconds()
            guard now < deadline else {
                throw Failure(
                    description:
                        "only \(joined) of \(m) members joined (is it a chat relay? are --chat-members and --chat-memberships-per-prefix at least \(m)?)"
                )
            }
            for i in 0..<m where tokens[i] == 0 && now - lastTry[i] >= 100_000_000 {
                sendJoin(member: i, cookie: cookies[i])
                lastTry[i] = now
            }
            for i in 0..<m {
                let count = receive(member: i)
                for k in 0..<count {
                    guard let (tag, message) = ChatMessage.decode(datagram(k, of: i)),
                        tag == tags[i]
                    else {
                        continue
                    }
                    switch message {
                    case .challenge(let cookie):
                        cookies[i] = cookie
                        sendJoin(member: i, cookie: cookie)
                        lastTry[i] = now
                    case .welcome(let token, _, _, _) where tokens[i] == 0:
                        tokens[i] = token
                        joined += 1
                    case .refused(let reason):
                        throw Failure(
                            description: "the relay refused member \(i) of \(m): \(reason) (raise its chat limits?)")
                    default:
                        break
                    }
                }
            }
        }
    }

    private func sendJoin(member i: Int, cookie: ChatCookie) {
        let room = Array("bench-\(room(of: i))".utf8)
        let nick = Array("m\(i)".utf8)
        let bytes = ChatMessage.join(cookie: cookie, secret: secrets[i], token: 0, room: room, nick: nick).encoded(
            tag: tags[i])
        _ = bytes.withUnsafeBytes { try? sockets[i].send($0) }
    }

    private func leave() {
        for i in sockets.indices where tokens[i] != 0 {
            let bytes = ChatMessage.leave(token: tokens[i]).encoded(tag: tags[i])
            _ = bytes.withUnsafeBytes { try? sockets[i].send($0) }
        }
    }

    /// relay.c's way in: a member is a source that has sent once. One datagram each, a
    /// little apart, that is no message of the load.
    private func register() {
        let bytes = [UInt8](repeating: UInt8(ascii: "r"), count: settings.size)
        for socket in sockets {
            _ = bytes.withUnsafeBytes { try? socket.send($0) }
            usleep(200)
        }
    }

    private func drain(for nanoseconds: UInt64) {
        let end = monotonicNanoseconds() + nanoseconds
        while monotonicNanoseconds() < end {
            var any = 0
            for i in sockets.indices { any += receive(member: i) }
            if any == 0 { usleep(1000) }
        }
    }

    // MARK: The measured run

    private mutating func measure() {
        let start = monotonicNanoseconds()
        let sendingEnds = start + settings.duration
        let givesUp = sendingEnds + settings.timeout
        var nextProgress = start + 1_000_000_000
        var nextKeepalive = start + 5_000_000_000
        var sender = 0
        var now = start
        var lastDelivery = start
        let cpuBefore = settings.serverPID.flatMap(ServerProcess.cpuNanoseconds)
        while true {
            now = monotonicNanoseconds()
            if now < sendingEnds {
                let due = UInt64(Double(now - start) * settings.rate / 1e9) + 1
                while report.sent < due {
                    guard send(from: sender) else { break }
                    sender = (sender + 1) % settings.members
                }
            } else if report.deliveries >= report.expected || now >= givesUp {
                break
            }
            // Every socket read, and the time noted, before any datagram is looked at: a
            // member read after another waits for no one's decoding, so the clock does not
            // charge one protocol's client work (EVENTS, which raw has not) to the relay.
            for i in sockets.indices {
                received[i] = receive(member: i)
                if received[i] > 0 { receivedAt[i] = monotonicNanoseconds() }
            }
            for i in sockets.indices where received[i] > 0 {
                report.datagrams += UInt64(received[i])
                for k in 0..<received[i] { take(datagram(k, of: i), at: i, now: receivedAt[i]) }
                lastDelivery = max(lastDelivery, receivedAt[i])
            }
            if settings.wire == .chat && now >= nextKeepalive {
                keepalive()  // the relay stops sending to a member silent for 35 s
                nextKeepalive += 5_000_000_000
            }
            if settings.progress && now >= nextProgress {
                showProgress(elapsed: now - start)
                nextProgress += 1_000_000_000
            }
        }
        if let pid = settings.serverPID, let cpuBefore, let cpuAfter = ServerProcess.cpuNanoseconds(pid) {
            report.server = (
                cpuAfter - cpuBefore, ServerProcess.statusKiB(pid, "VmHWM") ?? 0,
                ServerProcess.statusKiB(pid, "RssAnon") ?? 0
            )
        }
        if settings.progress { writeOut(to: STDERR_FILENO, "\r\u{1B}[K") }
        report.seconds = Double(max(lastDelivery, start + 1) - start) / 1e9
        report.lost = report.expected - min(report.deliveries, report.expected)
        report.p50 = latencies.valueAtPercentile(50)
        report.p99 = latencies.valueAtPercentile(99)
        report.p999 = latencies.valueAtPercentile(99.9)
    }

    /// Sends `member`'s next message; false if its socket would block.
    private mutating func send(from member: Int) -> Bool {
        let sequence = nextSequence[member]
        // The text is written where a SAY's goes, and the SAY around it: the writer's copy
        // of the text onto itself moves nothing (copyMemory is a memmove).
        let textAt = settings.wire == .chat ? sendBuffer + ChatWire.sayHeaderLength : sendBuffer
        ChatLoadText.write(
            sentAt: monotonicNanoseconds(), member: member, sequence: sequence, size: settings.size, to: textAt)
        var length = settings.size
        if settings.wire == .chat {
            var w = ChatWriter(sendBuffer, capacity: 2048)
            w.say(
                tag: tags[member], token: tokens[member], clientSequence: sequence,
                text: UnsafeRawBufferPointer(start: textAt, count: settings.size))
            length = w.count
        }
        let taken: Bool
        do {
            taken = try sockets[member].send(UnsafeRawBufferPointer(start: sendBuffer, count: length))
        } catch {
            report.sendErrors += 1
            taken = false
        }
        guard taken else { return false }
        nextSequence[member] = sequence + 1
        report.sent += 1
        report.expected += UInt64(roomSizes[room(of: member)])
        return true
    }

    private func keepalive() {
        for i in sockets.indices {
            let bytes = ChatMessage.keepalive(token: tokens[i], highest: 0).encoded(tag: tags[i])
            _ = bytes.withUnsafeBytes { try? sockets[i].send($0) }
        }
    }

    /// One datagram received by `receiver`: one delivery (raw), or an EVENTS datagram's
    /// messages (chat; other events and datagrams are not part of the load).
    private mutating func take(_ bytes: UnsafeRawBufferPointer, at receiver: Int, now: UInt64) {
        guard settings.wire == .chat else {
            deliver(bytes, to: receiver, now: now)
            return
        }
        guard var events = ChatEvents(bytes), events.tag == tags[receiver] else { return }
        while let event = events.next() {
            if event.kind == .message { deliver(event.text, to: receiver, roomSequence: event.sequence, now: now) }
        }
        if events.malformed { report.wrong += 1 }
    }

    /// One delivery: out of order if it comes after a later message of its sender, or
    /// (chat) after an event later in the room's order.
    private mutating func deliver(
        _ text: UnsafeRawBufferPointer, to receiver: Int, roomSequence: UInt32? = nil,
        now: UInt64
    ) {
        guard text.count == settings.size, let (sentAt, sender, sequence) = ChatLoadText.parse(text),
            sender < settings.members, room(of: sender) == room(of: receiver), sentAt <= now
        else {
            report.wrong += 1
            return
        }
        var outcome = ledger.record(receiver: receiver, sender: sender, sequence: sequence)
        if let roomSequence {
            if outcome == .inOrder && roomSequence < lastRoomSequence[receiver] { outcome = .outOfOrder }
            lastRoomSequence[receiver] = max(lastRoomSequence[receiver], roomSequence)
        }
        switch outcome {
        case .inOrder:
            report.deliveries += 1
            latencies.record(now - sentAt)
        case .outOfOrder:
            report.deliveries += 1
            report.reordered += 1
            latencies.record(now - sentAt)
        case .duplicate:
            report.duplicated += 1
        }
    }

    private func receive(member i: Int) -> Int {
        (try? incoming[i].receive(from: sockets[i], count: settings.batch)) ?? 0
    }

    /// Datagram `k` of what member `i` last received.
    private func datagram(_ k: Int, of i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(
            start: receiveBuffer + (i * settings.batch + k) * Self.receiveSlot, count: incoming[i].length(k))
    }

    private func showProgress(elapsed: UInt64) {
        let seconds = Double(elapsed) / 1e9
        let line =
            "\r\u{1B}[K\(Int(seconds)) s  sent \(report.sent)  delivered \(report.deliveries) of \(report.expected)  duplicated \(report.duplicated)  reordered \(report.reordered)  \(Int(Double(report.deliveries) / seconds))/s"
        writeOut(to: STDERR_FILENO, line)
    }
}

/// The text of a load message: `T` and the send time (monotonic ns, 16 hex digits), `M`
/// and the sender (4), `S` and its sequence (8), then `.` to the message's size; printable,
/// so that any relay carries it as it is.
enum ChatLoadText {
    static let headerLength = 31

    static func write(sentAt: UInt64, member: Int, sequence: UInt32, size: Int, to out: UnsafeMutableRawPointer) {
        let bytes = out.assumingMemoryBound(to: UInt8.self)
        bytes[0] = UInt8(ascii: "T")
        hex(sentAt, count: 16, at: bytes + 1)
        bytes[17] = UInt8(ascii: "M")
        hex(UInt64(member), count: 4, at: bytes + 18)
        bytes[22] = UInt8(ascii: "S")
        hex(UInt64(sequence), count: 8, at: bytes + 23)
        for i in headerLength..<size { bytes[i] = UInt8(ascii: ".") }
    }

    static func parse(_ text: UnsafeRawBufferPointer) -> (sentAt: UInt64, member: Int, sequence: UInt32)? {
        guard text.count >= headerLength, text[0] == UInt8(ascii: "T"), text[17] == UInt8(ascii: "M"),
            text[22] == UInt8(ascii: "S"),
            let sentAt = number(text, 1..<17), let member = number(text, 18..<22), let sequence = number(text, 23..<31)
        else { return nil }
        return (sentAt, Int(member), UInt32(sequence))
    }

    private static let digits = Array("0123456789abcdef".utf8)

    private static func hex(_ value: UInt64, count: Int, at out: UnsafeMutablePointer<UInt8>) {
        var value = value
        for i in stride(from: count - 1, through: 0, by: -1) {
            out[i] = digits[Int(value & 15)]
            value >>= 4
        }
    }

    private static func number(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        var value: UInt64 = 0
        for i in range {
            let c = bytes[i]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}

/// What /proc says of the relay's process.
enum ServerProcess {
    /// Its threads' time on a CPU, user and system, to the nanosecond: the first field of
    /// each /proc/PID/task/TID/schedstat, summed (the scheduler's own count; utime and
    /// stime in /proc/PID/stat come in 10 ms ticks, too coarse for a small room's run).
    /// utime + stime where schedstat is missing.
    static func cpuNanoseconds(_ pid: Int32) -> UInt64? {
        if let directory = opendir("/proc/\(pid)/task") {
            defer { closedir(directory) }
            var total: UInt64 = 0
            var found = false
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard name.first?.isNumber == true, let stat = read("/proc/\(pid)/task/\(name)/schedstat"),
                    let onCPU = stat.split(separator: " ").first.flatMap({ UInt64($0) })
                else { continue }
                total += onCPU
                found = true
            }
            if found { return total }
        }
        guard let stat = read("/proc/\(pid)/stat"), let end = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return (user + system) * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A line of /proc/PID/status in KiB: VmHWM (peak RSS), RssAnon.
    static func statusKiB(_ pid: Int32, _ key: String) -> UInt64? {
        guard let status = read("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(key + ":") {
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { UInt64($0) }
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 8192)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: bytes[..<n], as: UTF8.self)
    }
}

/// What each member has received from each sender: the highest sequence and the 64 below
/// it as bits. A sequence below the highest that was not seen is out of order; one seen is
/// a duplicate (more than 64 below: counted out of order, the window cannot tell).
struct DeliveryLedger {
    enum Outcome { case inOrder, outOfOrder, duplicate }

    let members: Int
    private var highest: [UInt32]
    private var seen: [UInt64]

    init(members: Int) {
        self.members = members
        highest = Array(repeating: 0, count: members * members)
        seen = Array(repeating: 0, count: members * members)
    }

    /// Sequences start at 1.
    mutating func record(receiver: Int, sender: Int, sequence: UInt32) -> Outcome {
        let pair = receiver * members + sender
        let top = highest[pair]
        if sequence > top {
            let shift = UInt64(sequence - top)
            seen[pair] = (shift >= 64 ? 0 : seen[pair] << shift) | 1
            highest[pair] = sequence
            return .inOrder  // a gap is lost unless it comes later (out of order)
        }
        let distance = UInt64(top - sequence)
        guard distance < 64 else { return .outOfOrder }
        if seen[pair] & (1 << distance) != 0 { return .duplicate }
        seen[pair] |= 1 << distance
        return .outOfOrder
    }
}

/// What `hello bench chat` prints.
struct ChatLoadReport {
    var sent: UInt64 = 0
    var expected: UInt64 = 0
    var deliveries: UInt64 = 0
    /// Datagrams received in the measured interval: a chat relay may put several
    /// deliveries to one member in one datagram.
    var datagrams: UInt64 = 0
    var lost: UInt64 = 0
    var duplicated: UInt64 = 0
    var reordered: UInt64 = 0
    var wrong: UInt64 = 0
    var sendErrors: UInt64 = 0
    var seconds = 0.0
    var p50: UInt64 = 0
    var p99: UInt64 = 0
    var p999: UInt64 = 0
    /// The relay's CPU over the measured interval, peak RSS and anonymous RSS at the end.
    var server: (cpuNanoseconds: UInt64, peakKiB: UInt64, anonKiB: UInt64)?

    var failed: Bool { lost > 0 || duplicated > 0 || reordered > 0 || wrong > 0 }
    var deliveriesPerSecond: Double { seconds > 0 ? Double(deliveries) / seconds : 0 }

    func text(target: String, protocol name: String, members: Int, rooms: Int) -> String {
        """
        target       \(target) (\(name))
        members      \(members) in \(rooms) room(s)
        sent         \(sent) messages
        deliveries   \(deliveries) of \(expected), in \(datagrams) datagrams
        lost         \(lost)
        duplicated   \(duplicated)
        reordered    \(reordered)\(wrong > 0 ? "\nwrong        \(wrong)" : "")
        deliveries/s \(Int(deliveriesPerSecond.rounded()))
        latency      p50 \(microseconds(p50)) us, p99 \(microseconds(p99)) us, p99.9 \(microseconds(p999)) us
        seconds      \(format3(seconds))\(server.map { "\nserver       \(cpuPerDelivery($0.cpuNanoseconds)) ns CPU per delivery, peak RSS \($0.peakKiB) KiB, anonymous \($0.anonKiB) KiB" } ?? "")

        """
    }

    private func cpuPerDelivery(_ ns: UInt64) -> UInt64 { ns / max(deliveries, 1) }

    func json(protocol name: String, members: Int, rooms: Int) -> String {
        """
        {"protocol":"\(name)","members":\(members),"rooms":\(rooms),"sent":\(sent),"expected":\(expected),\
        "deliveries":\(deliveries),"datagrams":\(datagrams),"lost":\(lost),"duplicated":\(duplicated),"reordered":\(reordered),\
        "wrong":\(wrong),"send_errors":\(sendErrors),"seconds":\(format3(seconds)),\
        "deliveries_per_second":\(Int(deliveriesPerSecond.rounded())),\
        "latency_us":{"p50":\(microseconds(p50)),"p99":\(microseconds(p99)),"p999":\(microseconds(p999))}\
        \(server.map { ",\"server\":{\"cpu_ns\":\($0.cpuNanoseconds),\"cpu_ns_per_delivery\":\(cpuPerDelivery($0.cpuNanoseconds)),\"peak_rss_kb\":\($0.peakKiB),\"anon_rss_kb\":\($0.anonKiB)}" } ?? "")}

        """
    }
}
