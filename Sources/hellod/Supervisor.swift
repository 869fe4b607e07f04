import Atomics
import Glibc
import HelloCore
import HelloServer
import HelloSocket
import Logging
import SystemPackage

/// Runs the daemon's life: one worker thread per socket; READY=1 once every one of them is
/// serving; a status line every few seconds; on SIGTERM or SIGINT, STOPPING=1, the batches
/// in hand finished, a stop line with the final counters, exit 0. Signals are taken
/// synchronously (sigtimedwait) by this thread alone, so no code runs in a signal handler.
final class Supervisor {
    let sockets: [ServedSocket]
    let configuration: WorkerConfiguration
    let log: Logger
    let stop = StopSignal()
    let reports: [PublishedReport]
    /// Each socket's kernel drop count when hellod started: drops are counted from there.
    let dropBaselines: [UInt32]
    let statusInterval: UInt64 = 5_000_000_000
    /// Drop warnings are summarised, at most one line this often.
    let warningInterval: UInt64 = 60_000_000_000

    init(sockets: [ServedSocket], configuration: WorkerConfiguration, log: Logger) {
        self.sockets = sockets
        self.configuration = configuration
        self.log = log
        self.reports = sockets.map { _ in PublishedReport() }
        self.dropBaselines = sockets.map { $0.socket.kernelDrops ?? 0 }
    }

    func run() {
        let signals = Self.blockStopSignals()  // before any thread exists: they inherit the mask
        let started = monotonicNanoseconds()
        let liveness = Systemd.watchdogInterval().map { interval in
            Liveness(interval: interval, workers: sockets.count) { Systemd.notify("WATCHDOG=1") }
        }
        let serving = ManagedAtomic<Int>(0)
        let threads = sockets.enumerated().map { index, served in
            startWorker(index, served, liveness: liveness, serving: serving)
        }
        while serving.load(ordering: .acquiring) < sockets.count {
            usleep(100)
        }
        logStart(liveness: liveness)
        var status = StatusTracker(started: started)
        Systemd.notify("READY=1\nSTATUS=\(status.line(total(), sockets: sockets.count, now: started))")

        var warned = (at: UInt64(0), report: WorkerReport())
        let signal = waitForStopSignal(signals) { now in
            let report = total()
            Systemd.notify("STATUS=\(status.line(report, sockets: sockets.count, now: now))")
            let changed = report.counters.drops != warned.report.counters.drops
                || report.receiveErrors != warned.report.receiveErrors
            if changed && (warned.at == 0 || now - warned.at >= warningInterval) {
                warn(report, since: warned.report)
                warned = (now, report)
            }
        }

        Systemd.notify("STOPPING=1\nSTATUS=stopping (\(Self.signalName(signal)))")
        stop.stop()
        threads.forEach { $0.join() }
        let final = reports.map { $0.snapshot() }
        logStop(total(final), perSocket: final.map(\.counters.read), signal: signal,
                uptime: monotonicNanoseconds() - started)
    }

    private func startWorker(_ index: Int, _ served: ServedSocket, liveness: Liveness?,
                             serving: ManagedAtomic<Int>) -> WorkerThread {
        let configuration = configuration
        let report = reports[index]
        let stop = stop
        return WorkerThread.spawn(name: "hellod-w\(index)") {
            var worker = Worker(index: index, socket: served.socket, configuration: configuration,
                                publishingTo: report)
            serving.wrappingIncrement(ordering: .releasing)
            worker.run(until: stop, liveness: liveness)
        }
    }

    /// Every worker's report (latest, unless given), summed, with the kernel's drops on
    /// every socket since start.
    private func total(_ snapshots: [WorkerReport]? = nil) -> WorkerReport {
        var sum = (snapshots ?? reports.map { $0.snapshot() }).reduce(WorkerReport(), +)
        sum.counters.queueOverflows = zip(sockets, dropBaselines).reduce(0) { total, pair in
            total + UInt64((pair.0.socket.kernelDrops ?? pair.1) &- pair.1)
        }
        return sum
    }

    // MARK: Signals

    private static let stopSignals = [SIGTERM, SIGINT]

    private static func blockStopSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in stopSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// Calls `tick` every status interval until a stop signal arrives; returns the signal.
    private func waitForStopSignal(_ set: sigset_t, tick: (UInt64) -> Void) -> Int32 {
        var set = set
        var next = monotonicNanoseconds() + statusInterval
        while true {
            let now = monotonicNanoseconds()
            if now >= next {
                tick(now)
                next = now + statusInterval
                continue
            }
            var timeout = timespec(tv_sec: Int((next - now) / 1_000_000_000), tv_nsec: Int((next - now) % 1_000_000_000))
            let signal = sigtimedwait(&set, nil, &timeout)
            if signal > 0 { return signal }
        }
    }

    private static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        default: return "signal \(signal)"
        }
    }

    // MARK: Log lines

    private func logStart(liveness: Liveness?) {
        let addresses = sockets.map { "\($0.address)" }.joined(separator: " ")
        let origin = Set(sockets.map(\.origin.rawValue)).sorted().joined(separator: "+")
        let watchdog = liveness.map { "\($0.interval / 1_000_000) ms" } ?? "off"
        let policy = configuration.policy
        var refused: [String] = []
        if !policy.allowPrivilegedSourcePorts { refused.append("privileged") }
        if !policy.allowOwnPorts { refused.append("own (\(policy.ownPorts.map(String.init).joined(separator: ",")))") }
        let ports = refused.isEmpty ? "no source ports refused" : "refusing \(refused.joined(separator: " and ")) source ports"
        let limit = policy.rateLimit.map {
            "rate limit \($0.rate)/s, burst \($0.burst), per IPv4 /\($0.ipv4PrefixLength) and IPv6 /\($0.ipv6PrefixLength)\(policy.limitLoopback ? "" : ", loopback exempt")"
        } ?? "no rate limit"
        log.info("hellod \(hellodVersion) serving \(addresses) (\(origin)): mode \(configuration.rule.mode.rawValue), batch \(configuration.batchSize), sockets \(sockets.count), max datagram \(configuration.maxDatagram), spin \(configuration.spinLimit / 1000) us, coalesce \(configuration.coalesceDelay / 1000) us, gso \(configuration.segmentation ? "on" : "off"), watchdog \(watchdog); \(ports); \(limit)",
                 metadata: ["mode": "\(configuration.rule.mode.rawValue)", "batch": "\(configuration.batchSize)",
                            "sockets": "\(addresses)", "origin": "\(origin)"])
    }

    private func logStop(_ report: WorkerReport, perSocket: [UInt64], signal: Int32, uptime: UInt64) {
        let c = report.counters
        let split = perSocket.count > 1 ? " (per socket \(perSocket.map(String.init).joined(separator: "/")))" : ""
        log.info("hellod stopped on \(Self.signalName(signal)) after \(uptime / 1_000_000_000) s: read \(c.read)\(split), replied \(c.replied), dropped \(c.drops.total) (\(DropSummary(c.drops))), kernel queue drops \(c.queueOverflows), batches \(report.batches), segmented sends \(report.segmentedSends) (\(report.segmentationFallbacks) resent as plain datagrams)",
                 metadata: ["read": "\(c.read)", "replied": "\(c.replied)", "dropped": "\(c.drops.total)",
                            "queue_overflows": "\(c.queueOverflows)"])
    }

    /// One line for everything that went wrong since the last warning.
    private func warn(_ report: WorkerReport, since earlier: WorkerReport) {
        var recent = DropCounts()
        for reason in DropReason.allCases {
            recent[reason] = report.counters.drops[reason] - earlier.counters.drops[reason]
        }
        var parts: [String] = []
        if recent.total > 0 {
            parts.append("dropped \(recent.total) datagrams since the last warning: \(DropSummary(recent))")
            if recent[.sendFailed] > 0, report.lastSendErrno != 0 {
                parts.append("last send error: \(Errno(rawValue: report.lastSendErrno))")
            }
        }
        let receiveErrors = report.receiveErrors - earlier.receiveErrors
        if receiveErrors > 0 {
            parts.append("\(receiveErrors) failed receives, the last: \(Errno(rawValue: report.lastReceiveErrno))")
        }
        log.warning("\(parts.joined(separator: "; "))")
    }
}

/// `truncated 3, send-failed 1`, or `none`.
struct DropSummary: CustomStringConvertible {
    let drops: DropCounts
    init(_ drops: DropCounts) { self.drops = drops }

    var description: String {
        let parts = DropReason.allCases.filter { drops[$0] > 0 }.map { "\($0.name) \(drops[$0])" }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// The STATUS= line `systemctl status hellod` shows: totals, the current rate, drops.
struct StatusTracker {
    private var lastReplied: UInt64 = 0
    private var lastTime: UInt64

    init(started: UInt64) {
        lastTime = started
    }

    mutating func line(_ report: WorkerReport, sockets: Int, now: UInt64) -> String {
        let c = report.counters
        let elapsed = max(now - lastTime, 1)
        let rate = now > lastTime ? Double(c.replied - lastReplied) * 1e9 / Double(elapsed) : 0
        lastReplied = c.replied
        lastTime = now
        return "replied \(c.replied) (\(Self.format(rate))/s), dropped \(c.drops.total) (\(DropSummary(c.drops))), kernel queue drops \(c.queueOverflows), sockets \(sockets)"
    }

    static func format(_ rate: Double) -> String {
        switch rate {
        case ..<1000: return String(Int(rate.rounded()))
        case ..<1_000_000: return "\(Int(rate / 100) / 10).\(Int(rate / 100) % 10)k"
        default: return "\(Int(rate / 100_000) / 10).\(Int(rate / 100_000) % 10)M"
        }
    }
}
