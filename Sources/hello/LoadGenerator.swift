import Glibc
import HelloCLI
import HelloReplies
import HelloSocket
import Histogram

/// The engine of `hello bench`: numbered requests out by sendmmsg on each flow's
/// connected socket, replies in by recvmmsg, each reply matched to its request and
/// checked byte for byte, round trips in an HDR histogram.
///
/// One thread drives every flow. While requests are in flight it polls without sleeping,
/// as a load generator must: a sleeping client would add its own wake-up time to every
/// round trip it measures.
struct LoadGenerator {
    let sockets: [DatagramSocket]
    let rule: any ReplyRule
    let codec: RequestCodec
    let batch: Int
    /// Requests a send: each message a train of this many, cut by the socket's UDP_SEGMENT.
    let train: Int
    let window: Int?
    let rate: Double?
    let requestsPerFlow: Int?
    let duration: UInt64
    let timeout: UInt64
    let progress: Bool

    private var flows: [FlowState]
    private var report = BenchReport()
    private(set) var roundTrips = Histogram<UInt64>(
        highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    private let outgoing: MessageVector
    private let incoming: MessageVector
    private let sendBuffer: UnsafeMutableRawPointer
    private let receiveBuffer: UnsafeMutableRawPointer
    private let expected: UnsafeMutableRawPointer
    private static let receiveSlot = 65536

    init(
        sockets: [DatagramSocket], rule: any ReplyRule, size: RequestSize, batch: Int, train: Int = 1, window: Int?,
        rate: Double?,
        requestsPerFlow: Int?, duration: UInt64, timeout: UInt64, progress: Bool
    ) {
        self.sockets = sockets
        self.rule = rule
        self.codec = RequestCodec(size: size)
        self.batch = batch
        self.train = train
        self.window = window
        self.rate = rate
        self.requestsPerFlow = requestsPerFlow
        self.duration = duration
        self.timeout = timeout
        self.progress = progress
        // Room for every request that can be in flight: the window, or what the rate sends
        // within the timeout (and a margin), rounded to a power of two.
        let ratePerFlow: Double = (rate ?? 1) / Double(sockets.count)
        let withinTimeout: Double = ratePerFlow * Double(timeout) / 1e9 * 2 + 1024
        let perFlow = window ?? Int(min(withinTimeout, Double(1 << 22)))
        let ring = 1 << (Int.bitWidth - (max(perFlow, 64) - 1).leadingZeroBitCount)
        flows = sockets.map { _ in FlowState(ringSize: ring) }
        outgoing = MessageVector(capacity: batch, names: false)
        incoming = MessageVector(capacity: batch, names: false)
        sendBuffer = .allocate(byteCount: batch * train * size.upper, alignment: 64)
        receiveBuffer = .allocate(byteCount: batch * Self.receiveSlot, alignment: 64)
        expected = .allocate(byteCount: Self.receiveSlot, alignment: 64)
        for i in 0..<batch {
            incoming.setBuffer(i, receiveBuffer + i * Self.receiveSlot, length: Self.receiveSlot)
        }
    }

    mutating func run() -> BenchReport {
        let start = monotonicNanoseconds()
        let sendingEnds = start + duration
        var nextProgress = start + 1_000_000_000
        var now = start
        while true {
            now = monotonicNanoseconds()
            let sending = now < sendingEnds
            var inFlight = 0
            for f in flows.indices {
                if sending {
                    send(flow: f, now: now, elapsed: now - start)
                }
                receive(flow: f)
                expire(flow: f, now: now)
                inFlight += flows[f].inFlight
            }
            let allSent = requestsPerFlow.map { limit in flows.allSatisfy { $0.sent >= limit } } ?? false
            if (!sending || allSent) && inFlight == 0 {
                break
            }
            if progress && now >= nextProgress {
                showProgress(elapsed: now - start)
                nextProgress += 1_000_000_000
            }
            if window == nil && inFlight == 0 {
                usleep(50)  // open loop between sends: nothing to wait for yet
            }
        }
        if progress { writeOut(to: STDERR_FILENO, "\r\u{1B}[K") }
        report.seconds = Double(now - start) / 1e9
        report.p50 = roundTrips.valueAtPercentile(50)
        report.p99 = roundTrips.valueAtPercentile(99)
        report.p999 = roundTrips.valueAtPercentile(99.9)
        return report
    }

    private mutating func send(flow f: Int, now: UInt64, elapsed: UInt64) {
        var quota: Int
        if let window {
            quota = window - flows[f].inFlight
        } else {
            let due = Int(rate! / Double(flows.count) * Double(elapsed) / 1e9)
            quota = due - flows[f].sent
        }
        if let requestsPerFlow {
            quota = min(quota, requestsPerFlow - flows[f].sent)
        }
        quota = min(quota, batch * train, flows[f].ringSize - Int(flows[f].next &- flows[f].oldest))
        guard quota > 0 else { return }
        // Message m carries requests m * train ..< (m + 1) * train, side by side: with
        // UDP_SEGMENT on the socket, the kernel cuts it into datagrams of one request each.
        var offset = 0
        let messages = (quota + train - 1) / train
        for m in 0..<messages {
            let start = offset
            for k in m * train..<min((m + 1) * train, quota) {
                offset += codec.write(flow: f, sequence: flows[f].next &+ UInt32(k), to: sendBuffer + offset)
            }
            outgoing.setBuffer(m, sendBuffer + start, length: offset - start)
        }
        let taken: Int
        do {
            taken = try outgoing.send(via: sockets[f], 0..<messages) ?? 0
        } catch {
            report.sendErrors += 1  // e.g. ECONNREFUSED while the server restarts: try again next pass
            return
        }
        let launched = min(taken * train, quota)
        for _ in 0..<launched {
            flows[f].launch(at: now)
        }
        report.sent += UInt64(launched)
    }

    private mutating func receive(flow f: Int) {
        let count: Int
        do {
            count = try incoming.receive(from: sockets[f], count: batch)
        } catch {
            report.receiveErrors += 1
            return
        }
        guard count > 0 else { return }
        let now = monotonicNanoseconds()
        for i in 0..<count {
            let reply = UnsafeRawBufferPointer(start: receiveBuffer + i * Self.receiveSlot, count: incoming.length(i))
            check(reply, flow: f, now: now)
        }
    }

    /// Matches a reply to its request and checks every byte of it.
    private mutating func check(_ reply: UnsafeRawBufferPointer, flow f: Int, now: UInt64) {
        guard let request = rule.request(inReply: reply), let (flow, sequence) = codec.parse(request),
            flow == f % 10000,
            flows[f].isTracked(sequence)
        else {
            report.wrong += 1
            return
        }
        let length = codec.write(flow: f, sequence: sequence, to: expected)
        guard request.count == length, memcmp(request.baseAddress!, expected, length) == 0,
            reply.count == rule.replyLength(forRequestOf: length)
        else {
            report.wrong += 1
            return
        }
        switch flows[f].answer(sequence) {
        case .onTime(let sentAt):
            report.answered += 1
            roundTrips.record(now - sentAt)
        case .late:
            report.answered += 1
            report.late += 1
            report.lost -= 1
        case .duplicate:
            report.duplicates += 1
        }
    }

    private mutating func expire(flow f: Int, now: UInt64) {
        report.lost += UInt64(flows[f].expire(now: now, timeout: timeout))
    }

    private func showProgress(elapsed: UInt64) {
        let seconds = Double(elapsed) / 1e9
        let line =
            "\r\u{1B}[K\(Int(seconds)) s  sent \(report.sent)  answered \(report.answered)  lost \(report.lost)  wrong \(report.wrong)  \(Int(Double(report.answered) / seconds))/s"
        writeOut(to: STDERR_FILENO, line)
    }
}

/// One flow's requests in flight, in a ring indexed by sequence number.
struct FlowState {
    enum Slot: UInt8 { case outstanding, lost, answered }
    enum Answer { case onTime(sentAt: UInt64), late, duplicate }

    let ringSize: Int
    private var sentAt: [UInt64]
    private var slots: [Slot]
    /// The next sequence number to send, and the oldest not yet answered or lost.
    private(set) var next: UInt32 = 0
    private(set) var oldest: UInt32 = 0
    private(set) var inFlight = 0
    private(set) var sent = 0

    init(ringSize: Int) {
        self.ringSize = ringSize
        sentAt = Array(repeating: 0, count: ringSize)
        slots = Array(repeating: .answered, count: ringSize)
    }

    private func index(_ sequence: UInt32) -> Int { Int(sequence) & (ringSize - 1) }

    mutating func launch(at now: UInt64) {
        sentAt[index(next)] = now
        slots[index(next)] = .outstanding
        next &+= 1
        inFlight += 1
        sent += 1
    }

    /// Whether `sequence` was sent and is still in the ring.
    func isTracked(_ sequence: UInt32) -> Bool {
        next &- sequence >= 1 && Int(next &- sequence) <= ringSize
    }

    mutating func answer(_ sequence: UInt32) -> Answer {
        let i = index(sequence)
        switch slots[i] {
        case .outstanding:
            slots[i] = .answered
            inFlight -= 1
            return .onTime(sentAt: sentAt[i])
        case .lost:
            slots[i] = .answered
            return .late
        case .answered:
            return .duplicate
        }
    }

    /// Marks requests unanswered for longer than `timeout` as lost; returns how many.
    mutating func expire(now: UInt64, timeout: UInt64) -> Int {
        var lost = 0
        while oldest != next {
            let i = index(oldest)
            if slots[i] == .outstanding {
                guard now - sentAt[i] > timeout else { break }
                slots[i] = .lost
                inFlight -= 1
                lost += 1
            }
            oldest &+= 1
        }
        return lost
    }
}

/// What `hello bench` prints.
struct BenchReport {
    var sent: UInt64 = 0
    var answered: UInt64 = 0
    var lost: UInt64 = 0
    var wrong: UInt64 = 0
    var late: UInt64 = 0
    var duplicates: UInt64 = 0
    var sendErrors: UInt64 = 0
    var receiveErrors: UInt64 = 0
    var seconds = 0.0
    var p50: UInt64 = 0
    var p99: UInt64 = 0
    var p999: UInt64 = 0

    var repliesPerSecond: Double { seconds > 0 ? Double(answered) / seconds : 0 }

    func text(target: String) -> String {
        """
        target     \(target)
        sent       \(sent)
        answered   \(answered)\(late > 0 ? " (\(late) late)" : "")
        lost       \(lost)
        wrong      \(wrong)\(duplicates > 0 ? "\nduplicates \(duplicates)" : "")
        replies/s  \(Int(repliesPerSecond.rounded()))
        round trip p50 \(microseconds(p50)) us, p99 \(microseconds(p99)) us, p99.9 \(microseconds(p999)) us
        seconds    \(String(format3(seconds)))

        """
    }

    var json: String {
        """
        {"sent":\(sent),"answered":\(answered),"lost":\(lost),"wrong":\(wrong),"late":\(late),\
        "duplicates":\(duplicates),"send_errors":\(sendErrors),"receive_errors":\(receiveErrors),\
        "seconds":\(format3(seconds)),"replies_per_second":\(Int(repliesPerSecond.rounded())),\
        "rtt_us":{"p50":\(microseconds(p50)),"p99":\(microseconds(p99)),"p999":\(microseconds(p999))}}

        """
    }
}

/// Nanoseconds as microseconds with one decimal: "121.4".
func microseconds(_ ns: UInt64) -> String {
    let tenths = (ns + 50) / 100
    return "\(tenths / 10).\(tenths % 10)"
}

/// A value with three decimals: "5.002".
func format3(_ value: Double) -> String {
    let thousandths = Int((value * 1000).rounded())
    let fraction = String(thousandths % 1000)
    return "\(thousandths / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}
