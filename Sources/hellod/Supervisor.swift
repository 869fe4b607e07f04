import Atomics
import HelloCLI
import HelloChat
import HelloChatWire
import HelloLauncher
import HelloServer
import HelloService
import HelloSocket
import Logging
import SystemPackage

/// Runs the daemon's life: one worker thread per socket, each with its socket's service;
/// READY=1 once every one of them is serving; a status line every few seconds; on SIGHUP,
/// the counters logged now; on SIGTERM or SIGINT, STOPPING=1, the batches in hand
/// finished, a stop line with the final counters, exit 0. With a metrics file, the counters
/// are written there at start, every metrics interval, on SIGHUP and, last, at stop.
/// Signals are taken synchronously (sigtimedwait) by this thread alone, so no code runs in
/// a signal handler.
final class Supervisor {
    let sockets: [ServedSocket]
    let configuration: WorkerConfiguration
    let policy: AdmissionPolicy
    let chat: ChatSettings
    let metrics: MetricsFile?
    let log: Logger
    let stop = StopSignal()
    let reports: [PublishedReport]
    /// The services served, in a fixed order, each with the indices of its sockets.
    let services: [(name: ServiceName, sockets: [Int])]
    /// The chat sockets, when there are several: their workers share the rooms, each owning
    /// some, and hand each other what they read for a room they do not own.
    let chatGroup: HandoverGroup?
    /// Each socket's kernel drop count when hellod started: drops are counted from there.
    let dropBaselines: [UInt32?]
    let statusInterval: UInt64 = 5_000_000_000
    /// How often a stopping worker is interrupted until it ends (one about to sleep in its
    /// receive when the stop came sleeps through the first).
    static let stopNudge: UInt64 = 10_000_000
    /// Drop warnings are summarised, at most one line this often.
    let warningInterval: UInt64 = 60_000_000_000
    /// The metrics file's last failure: a warning says it once, until it changes.
    private var metricsFailure: MetricsFileError?
    /// The per-datagram trace (--trace, SIGUSR1) and its writer.
    let trace: TraceControl
    let traceWriter: TraceWriter

    /// `metrics`: the metrics file's path and its interval in nanoseconds.
    init(
        sockets: [ServedSocket], configuration: WorkerConfiguration, policy: AdmissionPolicy, chat: ChatSettings,
        metrics: (path: String, interval: UInt64)?, trace: TraceSettings, log: Logger
    ) throws(StartFailure) {
        self.sockets = sockets
        self.configuration = configuration
        self.policy = policy
        self.chat = chat
        self.log = log
        self.reports = sockets.map { PublishedReport(schema: $0.service.counterSchema) }
        let services = Set(sockets.map(\.service)).sorted().map { name in
            (name: name, sockets: sockets.indices.filter { sockets[$0].service == name })
        }
        self.services = services
        self.metrics = metrics.map {
            MetricsFile(
                path: $0.path, interval: $0.interval, services: services.map(\.name), sockets: sockets.map(\.service))
        }
        let chatSockets = sockets.filter { $0.service == .chat }.map(\.socket)
        self.chatGroup =
            chatSockets.count > 1 ? HandoverGroup(sockets: chatSockets, slotBytes: ChatWire.largestDatagram) : nil
        self.dropBaselines = sockets.map { try? $0.socket.kernelDrops() }
        self.trace = TraceControl(workers: sockets.count, filter: trace.sources, rate: trace.rate, on: trace.on)
        do {
            traceWriter = try TraceWriter(
                control: self.trace,
                sockets: sockets.map {
                    .init(service: $0.service, address: $0.address, schema: $0.service.counterSchema)
                },
                journal: Systemd.stderrIsJournal)
        } catch {
            throw .noTraceWriter(error)
        }
        for (served, baseline) in zip(sockets, dropBaselines) where baseline == nil {
            log.warning("kernel queue drops on \(served.address) cannot be read (SO_MEMINFO): counted as 0")
        }
    }

    func run() throws(StartFailure) {
        let signals = SignalSet(Self.handledSignals)
        signals.block()  // before any thread exists: they inherit the mask
        do {
            // A worker sleeps in its receive: stopping interrupts it.
            try PosixThread.interruptible()
        } catch {
            log.warning("workers cannot be interrupted (\(error)): each stops within its receive timeout")
        }
        let started = monotonicNanoseconds()
        let liveness = Systemd.watchdogInterval().map { interval in
            Liveness(interval: interval, workers: sockets.count) { Systemd.notify("WATCHDOG=1") }
        }
        let startup = Startup(workers: sockets.count)
        let threads = sockets.indices.map { startWorker($0, liveness: liveness, startup: startup) }
        let writer = PosixThread.spawn(name: "hellod-trace") { [traceWriter] in traceWriter.run() }
        if let failure = startup.wait() {
            stop.stop()
            threads.forEach { $0.join(interruptingEvery: Self.stopNudge) }
            traceWriter.stop()
            writer.join()
            throw failure
        }
        let first = snapshot()
        writeMetrics(first, serving: true)  // before the start line: whoever reads it finds the file
        logStart(liveness: liveness)
        var status = StatusTracker(started: started)
        Systemd.notify("READY=1\nSTATUS=\(status.line(first, now: started))")

        var warned = (at: UInt64(0), report: WorkerReport())
        var segmentationOffSaid = sockets.map { _ in false }
        var progressSeen = first.services.map(\.report.counters)
        let timers = [statusInterval] + (metrics.map { [$0.interval] } ?? [])
        var signal: Signal
        while true {
            signal = waitForSignal(signals, timers: timers) { timer, now in
                let current = snapshot()
                saySegmentationOff(current, said: &segmentationOffSaid)
                guard timer == 0 else {
                    writeMetrics(current, serving: true)
                    return
                }
                Systemd.notify("STATUS=\(status.line(current, now: now))")
                let report = current.total
                let changed =
                    report.counters.drops.total != warned.report.counters.drops.total
                    || report.receiveErrors != warned.report.receiveErrors
                if changed && (warned.at == 0 || now - warned.at >= warningInterval) {
                    warn(report, since: warned.report)
                    warned = (now, report)
                }
                logProgress(current, since: &progressSeen)
            }
            if signal == .user1 {
                switchTrace()
                continue
            }
            guard signal == .hangUp else { break }
            // What the workers counted before the signal, all of it published.
            Posix.sleep(nanoseconds: WorkerConfiguration.publicationLag + 20_000_000)
            let current = snapshot()
            writeMetrics(current, serving: true)  // before the line: whoever reads it finds the file current
            logCounters(current, "counters on SIGHUP after \((monotonicNanoseconds() - started) / 1_000_000_000) s")
        }

        Systemd.notify("STOPPING=1\nSTATUS=stopping (\(signal.name))")
        stop.stop()
        threads.forEach { $0.join(interruptingEvery: Self.stopNudge) }
        traceWriter.stop()
        writer.join()
        let final = snapshot()
        saySegmentationOff(final, said: &segmentationOffSaid)
        logCounters(
            final, "hellod stopped on \(signal.name) after \((monotonicNanoseconds() - started) / 1_000_000_000) s")
        writeMetrics(final, serving: false)
        for served in sockets {
            do {
                try served.socket.close()
            } catch {
                log.warning("closing \(served.address): \(error)")
            }
        }
    }

    private func startWorker(_ index: Int, liveness: Liveness?, startup: Startup) -> PosixThread {
        let served = sockets[index]
        // Its place among the chat workers: the how-manieth chat socket it serves.
        let position = sockets[..<index].filter { $0.service == .chat }.count
        let handover = served.service == .chat ? chatGroup.map { ($0, position) } : nil
        let launcher = WorkerLauncher(
            index: index, socket: served.socket, configuration: configuration, published: reports[index],
            handover: handover, trace: trace, stop: stop, liveness: liveness,
            started: { error in startup.report(error.map { .cannotServe(served.address, $0) }) })
        let settings = configuration.serviceSettings(policy: policy)
        let chat = { [chat] in
            var chat = chat
            if let handover {
                chat.workers = handover.0.count
                chat.worker = handover.1
            }
            return chat
        }()
        return PosixThread.spawn(name: "hellod-w\(index)") { [log] in
            // Every descriptor a worker uses is open by now. In a table of its own, its two
            // system calls a message (a receive, a send) find its socket without taking and
            // dropping a reference to it.
            do {
                try PosixThread.ownFileTable()
            } catch {
                log.notice(
                    "worker \(index) shares the process's file table (\(error)): each system call takes a reference to its socket"
                )
            }
            served.service.build(settings, chat: chat, with: launcher)
        }
    }

    /// Every worker's latest report, by service and in total, with the kernel's drops on
    /// every socket since start.
    private func snapshot() -> Snapshot {
        let perSocket = reports.enumerated().map { index, published in
            var report = published.snapshot()
            if let baseline = dropBaselines[index], let drops = try? sockets[index].socket.kernelDrops() {
                report.counters.queueOverflows = UInt64(drops &- baseline)
            }
            return report
        }
        return Snapshot(
            perSocket: perSocket,
            services: services.map { ($0.name, $0.sockets.map { perSocket[$0] }.reduce(WorkerReport(), +)) })
    }

    // MARK: Signals

    /// SIGTERM and SIGINT stop hellod; SIGHUP (a closed terminal, `systemctl kill -s HUP`)
    /// must not: it asks for the counters. SIGUSR1 switches the trace, which its default
    /// action would have been to kill hellod.
    private static let handledSignals: [Signal] = [.terminate, .interrupt, .hangUp, .user1]

    /// SIGUSR1: the trace on if it was off, off if it was on, said at notice.
    private func switchTrace() {
        trace.set(on: !trace.isOn)
        traceWriter.wake()
        log.notice("\(traceLine) (SIGUSR1)")
    }

    /// What the trace does now, in a line.
    private var traceLine: String {
        guard trace.isOn else { return "trace off" }
        let sources = trace.filter.isEmpty ? "every source" : trace.filter.map(\.description).joined(separator: " ")
        return "trace on: a line per datagram from \(sources), at most \(trace.rate) a second"
    }

    /// Calls `tick(i, now)` every `timers[i]` nanoseconds until a signal arrives; returns
    /// the signal.
    private func waitForSignal(_ signals: SignalSet, timers: [UInt64], tick: (Int, UInt64) -> Void) -> Signal {
        var next = timers.map { monotonicNanoseconds() + $0 }
        while true {
            let now = monotonicNanoseconds()
            if let due = next.indices.first(where: { now >= next[$0] }) {
                tick(due, now)
                next[due] = now + timers[due]
                continue
            }
            if let signal = signals.wait(nanoseconds: next.min()! - now) { return signal }
        }
    }

    // MARK: Log lines

    private func logStart(liveness: Liveness?) {
        let addresses = sockets.map { "\($0.service.rawValue)@\($0.address)" }.joined(separator: " ")
        let origin = Set(sockets.map(\.origin.rawValue)).sorted().joined(separator: "+")
        let watchdog = liveness.map { "\($0.interval / 1_000_000) ms" } ?? "off"
        var refused: [String] = []
        if !policy.allowPrivilegedSourcePorts { refused.append("privileged") }
        if !policy.allowOwnPorts { refused.append("own (\(policy.ownPorts.map(String.init).joined(separator: ",")))") }
        let ports =
            refused.isEmpty ? "no source ports refused" : "refusing \(refused.joined(separator: " and ")) source ports"
        // The limit per source prefix is hello's and echo's: the chat relay has its own.
        let servesChat = services.contains { $0.name == .chat }
        let limit =
            !services.contains { $0.name != .chat }
            ? "no rate limit per source prefix (chat: its own limits)"
            : (policy.rateLimit.map {
                "rate limit \($0.rate)/s, burst \($0.burst), per IPv4 /\($0.ipv4PrefixLength) and IPv6 /\($0.ipv6PrefixLength)\(policy.limitLoopback ? "" : ", loopback exempt")"
            } ?? "no rate limit") + (servesChat ? " (hello and echo)" : "")
        let perService = services.map { "\($0.name.rawValue) on \($0.sockets.count)" }.joined(separator: ", ")
        let fanOut = chat.fanOutInterval == 0 ? "at once" : "at most every \(chat.fanOutInterval / 1000) us"
        let chatLimits =
            !servesChat
            ? ""
            : "; chat: \(chat.rooms) rooms of \(chat.membersPerRoom), \(chat.membershipsPerPrefix) memberships and \(chat.joinLimit.rate) joins/s (burst \(chat.joinLimit.burst)) per prefix, \(chat.messageRate) messages/s per member (burst \(chat.messageBurst)), \(chat.roomDeliveryRate) deliveries/s per room (burst \(chat.roomDeliveryBurst)), \(chat.repairByteRate) repair bytes/s per member (burst \(chat.repairByteBurst)), \(chat.unprovenAnswerCap.rate) answers/s to unproven sources (burst \(chat.unprovenAnswerCap.burst)), fan-out \(fanOut), no spin or coalescing"
        log.info(
            "hellod \(hellodVersion) serving \(addresses) (\(origin)): services \(perService), batch \(configuration.batchSize), sockets \(sockets.count), max datagram \(configuration.maxDatagram), spin \(configuration.spinLimit / 1000) us, coalesce \(configuration.coalesceDelay / 1000) us, gso \(configuration.segmentation ? "on" : "off"), gro \(configuration.coalescing ? "on" : "off"), watchdog \(watchdog), \(traceLine); never answering broadcast or multicast; \(ports); \(limit)\(chatLimits)",
            metadata: [
                "services": "\(services.map(\.name.rawValue).joined(separator: " "))",
                "batch": "\(configuration.batchSize)", "sockets": "\(addresses)", "origin": "\(origin)",
            ])
    }

    /// The counters in one line, after `prefix`: the total, then each service.
    private func logCounters(_ snapshot: Snapshot, _ prefix: String) {
        let report = snapshot.total
        let split =
            sockets.count > 1
            ? " (per socket \(snapshot.perSocket.map { String($0.counters.read) }.joined(separator: "/")))" : ""
        let perService = snapshot.services.map { "; \($0.name.rawValue): \(CounterSummary($0.report.counters))" }
            .joined()
        var fields: Logger.Metadata = [:]
        func put(_ prefix: String, _ c: Counters) {
            fields[prefix + "read"] = "\(c.read)"
            fields[prefix + "replied"] = "\(c.replied)"
            fields[prefix + "dropped"] = "\(c.drops.total)"
            fields[prefix + "queue_overflows"] = "\(c.queueOverflows)"
            for reason in c.schema.drops where c[reason] > 0 {
                fields[prefix + "dropped_" + c.schema.name(of: reason)] = "\(c[reason])"
            }
        }
        // A service's summary and figures, each under its name after the service's.
        for service in snapshot.services {
            let c = service.report.counters
            for id in c.schema.summary + c.schema.figures {
                fields[service.name.rawValue + "_" + c.schema.name(of: id)] = "\(c[id])"
            }
        }
        put("", report.counters)
        for service in snapshot.services { put(service.name.rawValue + "_", service.report.counters) }
        let c = report.counters
        let off = report.segmentationOff > 0 ? ", gso off on \(report.segmentationOff) sockets" : ""
        let trains = report.coalescedBatches > 0 ? " (\(report.coalescedBatches) with coalesced receives)" : ""
        log.info(
            "\(prefix): read \(c.read)\(split), replied \(c.replied), dropped \(c.drops.total) (\(DropSummary(c.drops))), kernel queue drops \(c.queueOverflows), batches \(report.batches)\(trains), segmented sends \(report.segmentedSends) (\(report.segmentationFallbacks) resent as plain datagrams\(off))\(perService)",
            metadata: fields)
    }

    /// What changed since the last status tick, in each service's words, at debug (the
    /// chat: joins and leaves): a count per tick, never a line per datagram.
    private func logProgress(_ snapshot: Snapshot, since seen: inout [Counters]) {
        for (index, service) in snapshot.services.enumerated() {
            let now = service.report.counters
            guard let note = now.schema.progressNote?(now, seen[index]) else { continue }
            log.debug("\(note)")
            seen[index] = now
        }
    }

    private func writeMetrics(_ snapshot: Snapshot, serving: Bool) {
        guard let metrics else { return }
        metrics.update(snapshot, serving: serving)
        do {
            try metrics.write()
            metricsFailure = nil
        } catch {
            if error != metricsFailure {
                log.warning("\(error) (the next writes will try again; said once)")
            }
            metricsFailure = error
        }
    }

    /// One warning per socket whose worker turned segmentation off (an EIO on a segmented
    /// send): the operator learns why its replies now go one datagram per send.
    private func saySegmentationOff(_ snapshot: Snapshot, said: inout [Bool]) {
        for (index, report) in snapshot.perSocket.enumerated() where report.segmentationOff > 0 && !said[index] {
            said[index] = true
            log.warning(
                "gso off on \(sockets[index].address) (socket \(index)): the kernel refused a segmented send with EIO (a way out that cannot segment, such as IPsec); its replies go as plain datagrams from now on, to every peer"
            )
        }
    }

    /// One line for everything that went wrong since the last warning.
    private func warn(_ report: WorkerReport, since earlier: WorkerReport) {
        let recent = report.counters.drops.since(earlier.counters.drops)
        let total = recent.reduce(0) { $0 + $1.count }
        var parts: [String] = []
        if total > 0 {
            parts.append("dropped \(total) datagrams since the last warning: \(DropSummary(recent))")
            if report.counters[.sendFailed] > earlier.counters[.sendFailed], report.lastSendErrno != 0 {
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
    let counts: [(name: String, count: UInt64)]
    init(_ counts: [(name: String, count: UInt64)]) { self.counts = counts }
    init(_ drops: DropCounts) {
        counts = drops.reasons.map { (drops.counters.schema.name(of: $0), drops[$0]) }
    }

    var description: String {
        let parts = counts.filter { $0.count > 0 }.map { "\($0.name) \($0.count)" }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// What every worker reported at one moment: per socket, per service, and in total.
struct Snapshot {
    let perSocket: [WorkerReport]
    let services: [(name: ServiceName, report: WorkerReport)]

    var total: WorkerReport { perSocket.reduce(WorkerReport(), +) }
}

/// `read 5, replied 4, dropped 1 (truncated 1), kernel queue drops 0`: one service's part
/// of the stop and SIGHUP lines.
struct CounterSummary: CustomStringConvertible {
    let counters: Counters
    init(_ counters: Counters) {
        self.counters = counters
    }

    var description: String {
        let c = counters
        return
            "read \(c.read), replied \(c.replied), dropped \(c.drops.total) (\(DropSummary(c.drops))), kernel queue drops \(c.queueOverflows)\(Self.figures(c))"
    }

    /// What the service's schema adds to its part of the status, stop and SIGHUP lines
    /// (the chat: `, rooms 1, members 2, messages 5, deliveries 10`).
    static func figures(_ c: Counters) -> String {
        c.schema.summary.map { ", \(c.schema.name(of: $0)) \(c[$0])" }.joined()
    }
}

/// Waits for every worker to be serving, or for the first that cannot.
final class Startup: Sendable {
    private final class Failure: Sendable {
        let reason: StartFailure
        init(_ reason: StartFailure) { self.reason = reason }
    }

    private let pending: ManagedAtomic<Int>
    private let failure = ManagedAtomicLazyReference<Failure>()

    init(workers: Int) { pending = ManagedAtomic(workers) }

    /// Called by each worker once: nil when it serves, else why it cannot.
    func report(_ failure: StartFailure?) {
        if let failure { _ = self.failure.storeIfNilThenLoad(Failure(failure)) }
        pending.wrappingDecrement(ordering: .releasing)
    }

    /// Blocks until every worker is serving (nil) or one has failed (why).
    func wait() -> StartFailure? {
        while true {
            if let failure = failure.load() { return failure.reason }
            if pending.load(ordering: .acquiring) == 0 { return nil }
            Posix.sleep(nanoseconds: 100_000)
        }
    }
}

/// The STATUS= line `systemctl status hellod` shows: totals, the current rate, drops, and
/// each service's replies and drops.
struct StatusTracker {
    private var lastReplied: UInt64 = 0
    private var lastTime: UInt64

    init(started: UInt64) {
        lastTime = started
    }

    mutating func line(_ snapshot: Snapshot, now: UInt64) -> String {
        let c = snapshot.total.counters
        let elapsed = max(now - lastTime, 1)
        let rate = now > lastTime ? Double(c.replied - lastReplied) * 1e9 / Double(elapsed) : 0
        lastReplied = c.replied
        lastTime = now
        let perService = snapshot.services.map {
            let c = $0.report.counters
            return "; \($0.name.rawValue): replied \(c.replied), dropped \(c.drops.total)\(CounterSummary.figures(c))"
        }.joined()
        return
            "replied \(c.replied) (\(Self.format(rate))/s), dropped \(c.drops.total) (\(DropSummary(c.drops))), kernel queue drops \(c.queueOverflows), sockets \(snapshot.perSocket.count)\(perService)"
    }

    static func format(_ rate: Double) -> String {
        switch rate {
        case ..<1000: return String(Int(rate.rounded()))
        case ..<1_000_000: return "\(Int(rate / 100) / 10).\(Int(rate / 100) % 10)k"
        default: return "\(Int(rate / 100_000) / 10).\(Int(rate / 100_000) % 10)M"
        }
    }
}
