import Atomics
import HelloDatagram
import HelloService
import HelloSocket
import SystemPackage

/// How a worker drives its socket.
public struct WorkerConfiguration: Sendable {
    /// Datagrams per recvmmsg, at most (`ReceiveWindow`: one where they come alone).
    public var batchSize: Int
    /// The largest datagram read whole; a larger one is truncated (and dropped).
    public var maxDatagram: Int
    /// After a batch of fewer than `coalescingFrom` datagrams, keep polling the socket
    /// without sleeping for up to this long before blocking (nanoseconds; 0: block at
    /// once). Waking a blocked thread is the largest cost of a round trip; polling costs
    /// CPU only while traffic is flowing. Polling that finds nothing, or finds traffic only
    /// after a quarter of this, halves the next idle spell's polling (down to an eighth).
    /// After a larger batch (bulk traffic) the worker blocks at once.
    public var spinLimit: UInt64
    /// When a batch comes back partly full (several requests in flight, but fewer than a
    /// batch), pause this long (nanoseconds) before reading the next one, so it fills:
    /// one wake-up, one recvmmsg and a few segmented sends then serve dozens of requests
    /// instead of two or three. A batch of fewer than `coalescingFrom` (a lone request, a
    /// few probes in step) is never followed by a pause. 0: off.
    public var coalesceDelay: UInt64
    /// Join same-length datagrams to one destination in one UDP_SEGMENT send.
    public var segmentation: Bool
    /// Take a train of datagrams from one peer as one receive (UDP GRO), where
    /// `maxDatagram` leaves room for the longest (`coalescingAllowed`); each is still served
    /// as its own datagram.
    public var coalescing: Bool

    /// How often, at most, a running worker publishes its counters while traffic flows. A
    /// publication after every batch was, in a small chat room, one a message: some 170
    /// instructions and a dozen cache lines, fetched again after every sleep (PERFORMANCE.md,
    /// "Ninth pass"), for readers that look every few seconds.
    @inlinable public static var publicationInterval: UInt64 { 10_000_000 }
    /// The longest a running worker's report lags what it counted: counts held back by
    /// `publicationInterval` are published at the worker's next wake-up (every service's
    /// tick is 100 ms), or before it sleeps if that is further away. A reader that must see
    /// everything counted before a moment (SIGHUP's counters) waits this long first.
    @inlinable public static var publicationLag: UInt64 { 100_000_000 }

    /// Where bulk traffic starts: the smallest batch a pause (`coalesceDelay`) follows, and
    /// the smallest after which the worker does not poll (`spinLimit`): an eighth of a
    /// batch, at least 2. A smaller one says few peers are sending: a pause would be most
    /// of their round trip (four probes in step: 40 us a round instead of 7), and polling
    /// finds their next request sooner than a wake-up would. After a larger one the next
    /// batch waits on its senders: polling for it bought no latency and cost up to a tenth
    /// of the CPU (trains of 16 through a veth pair).
    @inlinable public var coalescingFrom: Int { max(2, batchSize / 8) }

    public init(
        batchSize: Int = 64, maxDatagram: Int = 65527, spinLimit: UInt64 = 50_000,
        coalesceDelay: UInt64 = 30_000, segmentation: Bool = true, coalescing: Bool = false
    ) {
        self.batchSize = batchSize
        self.maxDatagram = maxDatagram
        self.spinLimit = spinLimit
        self.coalesceDelay = coalesceDelay
        self.segmentation = segmentation
        self.coalescing = coalescing
    }

    /// Whether a receive slot of `maxDatagram` bytes holds the longest coalesced receive:
    /// with shorter ones, a train would be cut.
    public static func coalescingAllowed(maxDatagram: Int) -> Bool {
        maxDatagram >= ReceiveBatch.largestCoalesced
    }

    /// What the services of these workers are built from.
    public func serviceSettings(policy: AdmissionPolicy) -> ServiceSettings {
        ServiceSettings(batchSize: batchSize, maxDatagram: maxDatagram, policy: policy)
    }
}

/// One socket served by one thread, the join of the socket layer and a service: receive
/// a batch, hand it to the service, send what it wrote, publish the counters; wait
/// (briefly polling, then blocking) when idle, waking for the service's ticks. Everything
/// it touches per datagram was allocated in `init`.
public struct Worker<Service: DatagramService & ~Copyable>: ~Copyable {
    public let index: Int
    public let socket: DatagramSocket
    @usableFromInline let configuration: WorkerConfiguration
    @usableFromInline let receiver: ReceiveBatch
    @usableFromInline let sender: SendBatch
    @usableFromInline var service: Service
    @usableFromInline var outbox: Outbox
    /// Its own figures; the counters it publishes beside them are the service's.
    @usableFromInline var figures = WorkerFigures()
    /// When it last published its counters, and whether it has counted since (`run`
    /// publishes at most every `WorkerConfiguration.publicationInterval`).
    @usableFromInline var lastPublication: UInt64 = 0
    @usableFromInline var unpublished = false
    /// Its report, kept alive here and written through `publication`, which takes no
    /// reference to it.
    @usableFromInline let published: PublishedReport
    @usableFromInline let publication: PublishedReport.Writer
    @usableFromInline var lastTick: UInt64 = 0
    /// How many datagrams the next receive asks for.
    @usableFromInline var window: ReceiveWindow
    /// The trace's switch, read once a batch: the flag itself, kept beside the fields every
    /// batch reads. Read through the trace's objects it was three dependent loads, each a
    /// cache miss once the worker had slept (in a small chat room, every message).
    @usableFromInline let traceSwitch: UnsafeAtomic<Bool>?
    /// The trace holds records of replies still in the outbox (`WorkerTrace.hold`): what a
    /// send looks at, here rather than in the trace's memory.
    @usableFromInline var traceRecordsHeld = false
    /// Where several workers share the service's state: this one's place among them (nil:
    /// it is alone, and no ring is touched).
    @usableFromInline let handover: HandoverPort?
    /// Its side of the per-datagram trace (nil: this worker is never traced).
    @usableFromInline let trace: WorkerTrace?

    /// `handover`: the group of workers this one shares its service's state with, and its
    /// place there (the socket number its datagrams carry). `trace`: the trace it writes
    /// to, its ring the one of its index, while the trace is on.
    @inlinable
    public init(
        index: Int, socket: DatagramSocket, service: consuming Service, configuration: WorkerConfiguration,
        publishingTo published: PublishedReport,
        handover: (group: HandoverGroup, position: Int)?, trace: TraceControl? = nil
    ) throws(SocketError) {
        self.index = index
        self.socket = socket
        self.configuration = configuration
        self.published = published
        publication = published.writer
        let local = try socket.localAddress()
        // Where each datagram went tells a broadcast or multicast apart, and on a wildcard
        // socket, which address to answer from. A socket bound to a loopback address is
        // the one kind that needs neither: only datagrams sent to that very address, a
        // unicast one, reach it.
        let packetInfo = !local.endpoint.address.isLoopback
        if packetInfo {
            try socket.receivePacketInfo()
        }
        // Both set either way, for a socket from systemd keeps what an earlier run set.
        try socket.receiveCoalesced(configuration.coalescing)
        // A service whose every datagram fits any path (the chat's) sends them whole.
        try socket.sendWhole(service.largestDatagram <= Endpoint.largestPayloadOnAnyPath)
        let options = SendBatch.Options(local: local, segmentation: configuration.segmentation)
        var port: HandoverPort?
        if let (group, position) = handover {
            precondition(group.sockets[position].descriptor == socket.descriptor)
            port = try HandoverPort(
                group: group, position: position, outboxCapacity: service.outboxCapacity,
                segmentation: configuration.segmentation)
        }
        receiver = ReceiveBatch(
            capacity: configuration.batchSize, maxDatagram: configuration.maxDatagram,
            groupByPeer: configuration.segmentation, packetInfo: packetInfo, coalescing: configuration.coalescing)
        window = ReceiveWindow(batch: configuration.batchSize)
        outbox = Outbox(capacity: service.outboxCapacity, largestDatagram: service.largestDatagram)
        sender = SendBatch(capacity: service.outboxCapacity, options: options)
        self.handover = port
        self.trace = trace.map { WorkerTrace(control: $0, worker: index, outboxCapacity: service.outboxCapacity) }
        traceSwitch = trace?.on
        self.service = service
    }

    @inlinable
    public init(
        index: Int, socket: DatagramSocket, service: consuming Service, configuration: WorkerConfiguration,
        publishingTo published: PublishedReport
    ) throws(SocketError) {
        try self.init(
            index: index, socket: socket, service: service, configuration: configuration,
            publishingTo: published, handover: nil)
    }

    /// Reads whatever is queued, up to one batch, serves it and returns how many datagrams
    /// it read (0: none was queued). Never waits, but for a full send buffer.
    /// With others sharing the service, it also serves what they handed over, and counts
    /// that in what it returns; `receiving: false` skips the socket (poll just said it has
    /// nothing). Never inlined: callgrind counts it by name (bench/chat-handover.py), one
    /// call per batch.
    /// `waited`: what a receive that waited for traffic (`waitForTraffic`) read, served
    /// instead of reading again. `publishingEvery`: the counters are published unless the
    /// last publication was less than this long ago (0: after every batch).
    @inline(never)
    @inlinable
    public mutating func serveBatch(
        now: UInt64 = monotonicNanoseconds(), receiving: Bool = true, waited: Waited? = nil,
        publishingEvery interval: UInt64 = 0
    ) -> Int {
        var count = 0
        var failed = false
        if let waited {
            (count, failed) = (waited.count, waited.failed)
        } else if receiving {
            (count, failed) = receive(waiting: false)
        }
        if count > 0 {
            receiver.orderByPeer(count: count)
            figures.batches += 1
            if receiver.hasTrains { figures.coalescedBatches += 1 }
        }
        // Once a batch: while it is off, the trace costs one load and a test a datagram.
        // From here on `count` is datagrams: a coalesced receive is several.
        let tracing = traceSwitch?.load(ordering: .relaxed) ?? false
        if let handover {
            count = routeBatch(count, via: handover, now: now, tracing: tracing)
            count += handover.serveHandedIn { serve($0, now: now, tracing: tracing) }
        } else if tracing {
            count = lentReceiver._withUnsafeGuaranteedRef {
                $0.forEachDatagram(count: count) { handleTraced($0, now: now) }
            }
        } else {
            count = lentReceiver._withUnsafeGuaranteedRef { $0.forEachDatagram(count: count) { handle($0, now: now) } }
        }
        guard count > 0 else {
            if failed { publish(now: now) }
            return 0
        }
        finishBatch(now: now)
        flush()
        publish(now: now, unlessWithin: interval)
        return count
    }

    @inlinable @inline(__always)
    mutating func serve(_ datagram: Datagram, now: UInt64, tracing: Bool) {
        if tracing {
            handleTraced(datagram, now: now)
        } else {
            handle(datagram, now: now)
        }
    }

    /// What a receive that waited read: its datagrams are in the receive batch.
    public struct Waited {
        @usableFromInline let count: Int
        @usableFromInline let failed: Bool
        @usableFromInline init(count: Int, failed: Bool) {
            self.count = count
            self.failed = failed
        }
    }

    /// The receiver, to be lent without a reference taken (the worker's keeps it alive). A
    /// loop over its datagrams whose body changes the worker otherwise holds one over the
    /// whole loop: a retain and a release a batch, in a small chat room a message.
    @inlinable var lentReceiver: Unmanaged<ReceiveBatch> { .passUnretained(receiver) }

    /// Receives a batch, or one datagram where they come alone (`window`); `waiting`: waiting
    /// for its first datagram, whose count `run` gives the window once it knows whether the
    /// wait slept. A failure is counted.
    @inlinable mutating func receive(waiting: Bool) -> (count: Int, failed: Bool) {
        do {
            let count = try receiver.receive(from: socket, waiting: waiting, upTo: window.size)
            if !waiting {
                window.received(count)
            }
            return (count, false)
        } catch {
            figures.receiveErrors += 1
            figures.lastReceiveErrno = error.errno.rawValue
            return (0, true)
        }
    }

    /// Sleeps in the receive itself until a datagram comes, the wake interval ends it (its
    /// timer's signal, or else the socket's receive timeout), or the thread is interrupted
    /// (stop): one system call where polling and then receiving took two.
    @inlinable mutating func waitForTraffic() -> Waited {
        let (count, failed) = receive(waiting: true)
        if failed {
            Posix.sleep(nanoseconds: 1_000_000)  // a failing receive must not become a busy loop
        }
        return Waited(count: count, failed: failed)
    }

    /// Hands the service `datagram`, sending the outbox as often as it takes.
    @inlinable mutating func handle(_ datagram: Datagram, now: UInt64) {
        while !service.handle(datagram, now: now, into: &outbox) {
            precondition(!outbox.isEmpty, "a service refused a datagram with an empty outbox")
            flush()
        }
    }

    /// `handle`, and a trace record of what became of `datagram`, if the trace takes it: a
    /// drop by the counter that grew, or its reply, the first datagram written to its peer,
    /// held until the outbox is sent; with neither, it was served.
    @inline(never)
    @inlinable mutating func handleTraced(_ datagram: Datagram, now: UInt64) {
        guard let trace, trace.admits(datagram.peer.address) else { return handle(datagram, now: now) }
        var record = TraceRecord(
            worker: index, peer: datagram.peer, local: datagram.arrival.replySource, bytes: datagram.length,
            fate: .served)
        service.describe(datagram, into: &record.note)
        var before = service.counters
        var first = outbox.count
        while !service.handle(datagram, now: now, into: &outbox) {
            precondition(!outbox.isEmpty, "a service refused a datagram with an empty outbox")
            flush()
            // A refused call changes nothing: what the send counted is not this datagram's.
            (before, first) = (service.counters, outbox.count)
        }
        let after = service.counters
        if let reason = after.schema.drops.first(where: { after[$0] != before[$0] }) {
            record.fate = .dropped(reason)
        }
        var reply: Int?
        let entries = outbox.entries
        for e in first..<outbox.count where reply == nil && entries[e].destination == datagram.peer {
            reply = e
        }
        record.deliveries = outbox.count - first - (reply == nil ? 0 : 1)
        guard let reply else {
            _ = trace.ring.push(record)
            return
        }
        record.reply = (entries[reply].datagramLength, entries[reply].source)
        trace.hold(record, entry: reply)
        traceRecordsHeld = true
    }

    /// Serves the datagrams of the batch that this worker owns; hands the others to their
    /// owners, and wakes them. Returns how many datagrams that was (a coalesced receive is
    /// several).
    @inlinable mutating func routeBatch(_ count: Int, via handover: HandoverPort, now: UInt64, tracing: Bool) -> Int {
        let datagrams = lentReceiver._withUnsafeGuaranteedRef {
            $0.forEachDatagram(count: count) { route($0, via: handover, now: now, tracing: tracing) }
        }
        handover.wakeOwners()
        return datagrams
    }

    @inlinable @inline(__always)
    mutating func route(_ received: Datagram, via handover: HandoverPort, now: UInt64, tracing: Bool) {
        var datagram = received
        datagram.arrival.socket = UInt16(handover.position)
        if let owner = service.owner(of: datagram), owner != handover.position {
            handover.handOver(datagram, to: owner)
        } else {
            serve(datagram, now: now, tracing: tracing)
        }
    }

    /// Gives the service its tick if one is due at `now`, and its batch's end if what it
    /// held back is due, then sends what it wrote and publishes what that, or the tick,
    /// counted (a tick may count without sending: a member evicted from a room of its own).
    @inlinable
    public mutating func tickIfDue(now: UInt64) {
        let tick = service.tickInterval.map { now &- lastTick >= $0 } ?? false
        guard tick || service.sendDue.map({ now >= $0 }) ?? false else { return }
        if tick {
            lastTick = now
            service.tick(now: now, into: &outbox)
        }
        finishBatch(now: now)
        guard tick || !outbox.isEmpty else { return }
        flush()
        publish(now: now)
    }

    /// Lets the service write what it gathered over the batch, sending the outbox as often
    /// as that takes.
    @inlinable mutating func finishBatch(now: UInt64) {
        while !service.endBatch(now: now, into: &outbox) {
            precondition(!outbox.isEmpty, "a service could not finish its batch with an empty outbox")
            flush()
        }
    }

    /// Sends the outbox and tells the service how that went.
    @inlinable mutating func flush() {
        guard !outbox.isEmpty else { return }
        guard let handover else {
            let sender = self.sender  // for the closure below: a call that changes self cannot lend it self
            let outcome = sender.send(outbox, via: socket)
            completeTraceRecords { sender.failed(entry: $0) }
            outbox.removeAll()
            service.recordSent(outcome.sent, failed: outcome.failed)
            record(outcome)
            return
        }
        // Each datagram through the socket its recipient came through.
        var sent = 0
        var failed = 0
        for (number, socket) in handover.group.sockets.enumerated() {
            let outcome = handover.senders[number].send(outbox, via: socket, only: UInt16(number))
            sent += outcome.sent
            failed += outcome.failed
            record(outcome)
        }
        completeTraceRecords { entry in handover.senders.contains { $0.failed(entry: entry) } }
        outbox.removeAll()
        service.recordSent(sent, failed: failed)
    }

    /// The outbox was sent: completes the trace's records of its replies, if it holds any,
    /// `failed` saying which entries the kernel refused.
    @inlinable mutating func completeTraceRecords(failed: (Int) -> Bool) {
        guard traceRecordsHeld else { return }
        trace!.complete(failed: failed)
        traceRecordsHeld = false
    }

    @inlinable mutating func record(_ outcome: SendBatch.Outcome) {
        figures.segmentedSends += UInt64(outcome.segmentedSends)
        figures.segmentationFallbacks += UInt64(outcome.segmentationFallbacks)
        if outcome.segmentationTurnedOff { figures.segmentationOff += 1 }
        if let error = outcome.lastError {
            figures.lastSendErrno = error.rawValue
        }
    }

    /// Publishes the counters, unless the last publication was less than `interval` ago (0:
    /// at once): then they wait, `unpublished`, for a later call.
    @inlinable @inline(__always)
    mutating func publish(now: UInt64, unlessWithin interval: UInt64) {
        if interval == 0 || now &- lastPublication >= interval {
            publish(now: now)
        } else {
            unpublished = true
        }
    }

    /// Publishes the counters. Never inlined: called from several places, and skipped by
    /// most messages of a small room.
    @inline(never)
    @inlinable mutating func publish(now: UInt64) {
        (lastPublication, unpublished) = (now, false)
        guard let handover else {
            let figures = self.figures
            return service.withCounters { publication.publish(figures, counters: &$0) }
        }
        var counters = service.counters
        handover.adjust(&counters)
        publication.publish(figures, counters: &counters)
    }

    /// Serves until `stop` is requested; the batch in hand is always finished first.
    @inlinable
    public mutating func run(until stop: StopSignal, liveness: Liveness? = nil) {
        // Block at most this long without traffic, so the watchdog hears from this loop and
        // the service gets its ticks.
        let wake = [liveness?.wakeInterval, service.tickInterval].compactMap { $0 }.min()
        let spinLimit = service.pollsAfterTraffic ? configuration.spinLimit : 0
        let coalesceDelay = service.pollsAfterTraffic ? configuration.coalesceDelay : 0
        // Short sleeps must be short: the default timer slack would stretch them by 50 us.
        if coalesceDelay > 0 {
            try? Posix.setTimerSlack(nanoseconds: 1000)
        }
        var spinBudget = spinLimit
        var idleSince: UInt64 = 0  // 0: the last look found traffic
        // Whether the last batch that held traffic was under `coalescingFrom`: only then does
        // the worker poll before it sleeps, and only otherwise does it pause for the next.
        var fewInFlight = true
        // Woken for a handover alone, the socket need not be read.
        var socketReady = true
        // A worker alone on its state sleeps in its receive, bounded by the wake interval;
        // one sharing it (a handover) polls its socket and its wake-up together. The bound
        // is a signal from a timer of the worker's own, every wake interval, so that the
        // receive waits without a timeout: a receive timeout arms a kernel timer at every
        // sleep and disarms it at every wake-up, in a small chat room every message. Without
        // that timer, the socket's receive timeout is the bound.
        var ticks: IntervalInterrupt?
        if handover == nil, let wake, wake > 0 {
            ticks = try? IntervalInterrupt(every: wake)
        }
        let sleepsInReceive = handover == nil && (try? socket.setReceiveTimeout(ticks == nil ? wake : nil)) != nil
        var waited: Waited?
        // When the worker last went to sleep (in its receive, or polling) asking for one
        // datagram: the next look at the clock says whether it slept for it (`window`).
        var sleptAt: UInt64?
        while !stop.isRequested {
            let now = monotonicNanoseconds()
            let slept = sleptAt.map { now - $0 >= ReceiveWindow.queuedWithin }
            if let waited {
                window.received(waited.count, slept: slept)
            } else if let slept {
                window.woke(slept: slept)
            }
            sleptAt = nil
            let served = serveBatch(
                now: now, receiving: socketReady, waited: waited,
                publishingEvery: WorkerConfiguration.publicationInterval)
            socketReady = true
            waited = nil
            tickIfDue(now: now)
            if unpublished {  // what the batches since counted, once the interval is over
                publish(now: now, unlessWithin: WorkerConfiguration.publicationInterval)
            }
            if served > 0 {
                fewInFlight = served < configuration.coalescingFrom
                if idleSince != 0 {
                    // Polling caught traffic. Caught soon (within a quarter of the limit, as
                    // a ping-pong's next request), it pays: the full budget again. Caught
                    // late (a bulk sender's next train), it cost more than a sleep and a
                    // wake would have: the next idle spell polls half as long, as when it
                    // finds nothing.
                    spinBudget = now - idleSince <= spinLimit / 4 ? spinLimit : max(spinBudget / 2, spinLimit / 8)
                    idleSince = 0
                }
                liveness?.beat(index, now: now)
                if !fewInFlight && served < configuration.batchSize && coalesceDelay > 0 {
                    Posix.sleep(nanoseconds: coalesceDelay)  // let the next batch fill
                    continue
                }
                // Not polling (none configured, or after bulk traffic), after a batch that was
                // not full: the socket is most likely empty, and the wait says so without a
                // recvmmsg that finds nothing.
                if (spinLimit > 0 && fewInFlight) || served >= configuration.batchSize {
                    continue
                }
            } else if idleSince == 0 {
                idleSince = now
            }
            if fewInFlight {
                if now - idleSince < spinBudget {
                    continue  // keep polling: the next request is probably microseconds away
                }
                // Polling found nothing: the next idle spell polls half as long (never less
                // than an eighth, so it can still find out that polling pays again).
                spinBudget = max(spinBudget / 2, spinLimit / 8)
            }
            idleSince = 0
            liveness?.beat(index, now: now)
            if let handover, !handover.group.prepareToSleep(handover.position) {
                continue  // handed something while it was about to sleep
            }
            if unpublished && wake ?? .max > WorkerConfiguration.publicationLag {
                publish(now: now)  // no wake-up would publish it soon enough
            }
            // The loop's next turn beats for what the wait read, or for the empty wake; asking
            // for one datagram, it needs to know whether the wait slept.
            sleptAt = window.narrowed ? monotonicNanoseconds() : nil
            if sleepsInReceive && service.sendDue == nil {
                waited = waitForTraffic()
                continue
            }
            do {
                // ... or until what the service holds back falls due.
                var timeout = wake
                if let due = service.sendDue {
                    let left = due > now ? due - now : 0
                    timeout = min(timeout ?? left, left)
                }
                let ready = try socket.wait(
                    for: DatagramSocket.readable, timeout: timeout, wakeup: stop.wakeup,
                    handover: handover.map { $0.group.wakeup(of: $0.position) })
                socketReady = handover == nil || ready != 0
            } catch {
                figures.receiveErrors += 1
                figures.lastReceiveErrno = error.errno.rawValue
                Posix.sleep(nanoseconds: 1_000_000)  // a failing poll must not become a busy loop
            }
            if let handover {
                handover.group.woke(handover.position)
            }
        }
        _ = consume ticks  // the signals stop here
        // What the last wait read as the stop came is served like any other batch: read from
        // the socket, it is no longer queued there for whoever serves it next.
        if let waited, waited.count > 0 {
            _ = serveBatch(now: monotonicNanoseconds(), receiving: false, waited: waited)
        }
        if unpublished {
            publish(now: monotonicNanoseconds())  // what a reader sees of the stopped worker
        }
    }
}

/// Builds a worker around a service, and runs it. Inlinable, like `Worker`, so that the
/// module that builds a service by name (the daemon, with `ServiceName.build`) specializes
/// the worker for each service's concrete type: no dynamic dispatch per datagram.
public struct WorkerLauncher: ServiceBuilder, Sendable {
    @usableFromInline package let index: Int
    @usableFromInline package let socket: DatagramSocket
    @usableFromInline package let configuration: WorkerConfiguration
    @usableFromInline package let published: PublishedReport
    /// Runs once the worker is built, before it serves (nil: it could not be built).
    @usableFromInline package let started: @Sendable (SocketError?) -> Void
    @usableFromInline package let stop: StopSignal
    @usableFromInline package let liveness: Liveness?
    /// The workers it shares its service's state with, and its place there (nil: none).
    @usableFromInline package let handover: (group: HandoverGroup, position: Int)?
    @usableFromInline package let trace: TraceControl?

    package init(
        index: Int, socket: DatagramSocket, configuration: WorkerConfiguration, published: PublishedReport,
        handover: (group: HandoverGroup, position: Int)? = nil, trace: TraceControl? = nil,
        stop: StopSignal, liveness: Liveness?, started: @escaping @Sendable (SocketError?) -> Void
    ) {
        self.index = index
        self.handover = handover
        self.trace = trace
        self.socket = socket
        self.configuration = configuration
        self.published = published
        self.stop = stop
        self.liveness = liveness
        self.started = started
    }

    @inlinable
    public func build<Service: DatagramService & ~Copyable>(_ service: consuming Service) {
        var worker: Worker<Service>
        do {
            worker = try Worker(
                index: index, socket: socket, service: service, configuration: configuration,
                publishingTo: published, handover: handover, trace: trace)
        } catch {
            started(error)
            return
        }
        started(nil)
        worker.run(until: stop, liveness: liveness)
    }
}
