import CShims
import Glibc
import HelloCore
import HelloSocket

/// How a worker serves its socket.
public struct WorkerConfiguration: Sendable {
    public var rule: ReplyRule
    /// Datagrams per recvmmsg/sendmmsg.
    public var batchSize: Int
    /// The largest request read whole; a larger one is truncated and dropped.
    public var maxDatagram: Int
    /// After traffic, keep polling the socket without sleeping for up to this long before
    /// blocking (nanoseconds; 0: block at once). Waking a blocked thread is the largest
    /// cost of a round trip; polling costs CPU only while traffic is flowing.
    public var spinLimit: UInt64
    /// When a batch comes back partly full (several requests in flight, but fewer than a
    /// batch), pause this long (nanoseconds) before reading the next one, so it fills:
    /// one wake-up, one recvmmsg and a few segmented sends then serve dozens of requests
    /// instead of two or three. A lone request (ping-pong) is never delayed. 0: off.
    public var coalesceDelay: UInt64
    /// Coalesce same-length replies to one peer into one UDP_SEGMENT send.
    public var segmentation: Bool
    /// Who gets an answer: source port checks and the per-source rate limit.
    public var policy: AdmissionPolicy

    public init(rule: ReplyRule, batchSize: Int = 64, maxDatagram: Int = 65527,
                spinLimit: UInt64 = 50_000, coalesceDelay: UInt64 = 30_000, segmentation: Bool = true,
                policy: AdmissionPolicy = AdmissionPolicy()) {
        self.rule = rule
        self.policy = policy
        self.batchSize = batchSize
        self.maxDatagram = maxDatagram
        self.spinLimit = spinLimit
        self.coalesceDelay = coalesceDelay
        self.segmentation = segmentation
    }
}

/// One socket served by one thread: receive a batch, apply the reply rules, send the
/// replies, publish the counters; wait (briefly polling, then blocking) when idle.
/// Everything it touches per datagram was allocated in `init`.
public struct Worker: ~Copyable {
    public let index: Int
    public let socket: DatagramSocket
    private let configuration: WorkerConfiguration
    private let batch: DatagramBatch
    private var engine: ReplyEngine
    private var report = WorkerReport()
    private let published: PublishedReport

    public init(index: Int, socket: DatagramSocket, configuration: WorkerConfiguration,
                publishingTo published: PublishedReport) {
        self.index = index
        self.socket = socket
        self.configuration = configuration
        self.published = published
        var options = DatagramBatch.Options()
        options.replyFromLocalAddress = socket.localAddress.isWildcard
        options.segmentation = configuration.segmentation
        if options.replyFromLocalAddress {
            try? socket.receiveLocalAddresses()
        }
        batch = DatagramBatch(capacity: configuration.batchSize, maxDatagram: configuration.maxDatagram, options: options)
        engine = ReplyEngine(rule: configuration.rule, batchSize: configuration.batchSize,
                             maxDatagram: configuration.maxDatagram, policy: configuration.policy)
    }

    /// Reads whatever is queued, up to one batch, answers it and returns how many
    /// datagrams it read (0: none was queued). Never waits, but for a full send buffer.
    /// `now` is the monotonic time in nanoseconds, for the rate limit.
    public mutating func serveBatch(now: UInt64 = monotonicNanoseconds()) -> Int {
        let count: Int
        do {
            count = try batch.receive(from: socket)
        } catch {
            report.receiveErrors += 1
            report.lastReceiveErrno = error.errno.rawValue
            published.publish(report)
            return 0
        }
        guard count > 0 else { return 0 }
        batch.readLocalAddresses(count: count)
        engine.beginBatch(now: now)
        batch.orderByPeer(count: count)
        for k in 0..<count {
            let i = batch.order[k]
            engine.respond(to: batch.request(i), index: i)
        }
        let outcome = batch.send(engine.plan, via: socket)
        engine.recordSent(replies: outcome.sent, failed: outcome.failed)
        report.counters = engine.counters
        report.batches += 1
        report.segmentedSends += UInt64(outcome.segmentedSends)
        report.segmentationFallbacks += UInt64(outcome.segmentationFallbacks)
        if let error = outcome.lastError {
            report.lastSendErrno = error.rawValue
        }
        published.publish(report)
        return count
    }

    /// Serves until `stop` is requested; the batch in hand is always finished first.
    public mutating func run(until stop: StopSignal, liveness: Liveness? = nil) {
        // Block at most this long without traffic, so the watchdog hears from this loop.
        let wake = liveness?.wakeInterval
        // Short sleeps must be short: the default timer slack would stretch them by 50 us.
        if configuration.coalesceDelay > 0 {
            _ = hs_set_timer_slack(1000)
        }
        var pause = timespec(tv_sec: 0, tv_nsec: Int(configuration.coalesceDelay))
        var spinBudget = configuration.spinLimit
        var idleSince: UInt64 = 0  // 0: the last look found traffic
        while !stop.isRequested {
            let now = monotonicNanoseconds()
            let served = serveBatch(now: now)
            if served > 0 {
                if idleSince != 0 {
                    // Polling caught traffic: it pays, allow the full budget again.
                    spinBudget = configuration.spinLimit
                    idleSince = 0
                }
                liveness?.beat(index, now: now)
                if served > 1 && served < configuration.batchSize && configuration.coalesceDelay > 0 {
                    clock_nanosleep(CLOCK_MONOTONIC, 0, &pause, nil)  // let the next batch fill
                }
                continue
            }
            if idleSince == 0 {
                idleSince = now
            }
            if now - idleSince < spinBudget {
                continue  // keep polling: the next request is probably microseconds away
            }
            // Polling found nothing: the next idle spell polls half as long (never less than
            // an eighth, so it can still find out that polling pays again), then sleep.
            spinBudget = max(spinBudget / 2, configuration.spinLimit / 8)
            idleSince = 0
            liveness?.beat(index, now: now)
            do {
                try socket.wait(for: Int16(POLLIN), timeout: wake, wakeup: stop.wakeup)
            } catch {
                report.receiveErrors += 1
                report.lastReceiveErrno = error.errno.rawValue
                usleep(1000)  // a failing poll must not become a busy loop
            }
            liveness?.beat(index, now: monotonicNanoseconds())
        }
    }
}
