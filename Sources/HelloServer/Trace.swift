import Atomics
import HelloDatagram
import HelloService

/// What became of a traced datagram.
public enum TraceFate: Sendable, Equatable {
    /// Its reply left through the kernel.
    case replied
    /// The kernel refused its reply (a drop, counted as its service's send-failed).
    case sendFailed
    /// Acted on, with no reply of its own: its answer, if any, is an event to others (a
    /// chat SAY, which its sender gets as a member of the room).
    case served
    /// Dropped, and counted under this reason.
    case dropped(CounterID)
}

/// One datagram's line in the trace, fixed size: workers write it into a ring allocated at
/// start, the trace writer formats it. Addresses are values, the service's words static.
public struct TraceRecord: Sendable {
    /// The worker, which names the socket and its service.
    public var worker: Int
    public var peer: Endpoint
    /// The address it was sent to (nil: the socket's own, a socket bound to one address).
    public var local: LocalSource?
    public var bytes: Int
    public var fate: TraceFate
    /// Its answer, if one was written to its peer: the bytes, and the address it left from
    /// (nil: the socket's own).
    public var reply: (bytes: Int, source: LocalSource?)?
    /// Datagrams written for it to others (a chat catch-up, a refused source's notice).
    public var deliveries: Int
    public var note: TraceNote

    public init(
        worker: Int, peer: Endpoint, local: LocalSource?, bytes: Int, fate: TraceFate,
        reply: (bytes: Int, source: LocalSource?)? = nil, deliveries: Int = 0, note: TraceNote = TraceNote()
    ) {
        self.worker = worker
        self.peer = peer
        self.local = local
        self.bytes = bytes
        self.fate = fate
        self.reply = reply
        self.deliveries = deliveries
        self.note = note
    }
}

/// Records from one worker to the trace writer: one producer, one consumer, no lock, no
/// allocation after `init`. A record that finds it full is not written but counted (`lost`).
public final class TraceRing: @unchecked Sendable {
    public let capacity: Int
    private let records: UnsafeMutablePointer<TraceRecord>
    /// The next place the worker writes, and the next the writer reads (both only grow).
    private let head = ManagedAtomic<Int>(0)
    private let tail = ManagedAtomic<Int>(0)
    /// Records the worker chose to write but could not: the ring was full, or the trace
    /// was over its rate. Only the worker adds to it.
    private let lostCount = ManagedAtomic<UInt64>(0)

    /// `capacity`: a power of two. Reserved, not touched: pages no record has reached cost
    /// no memory, so a ring costs nothing until tracing is on.
    public init(capacity: Int = 1024) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a power of two")
        self.capacity = capacity
        records = .allocate(capacity: capacity)
    }

    deinit {
        records.deallocate()
    }

    /// The worker's: false if it is full (the record is counted as lost).
    @usableFromInline func push(_ record: TraceRecord) -> Bool {
        let h = head.load(ordering: .relaxed)
        guard h - tail.load(ordering: .acquiring) < capacity else {
            countLost()
            return false
        }
        (records + (h & (capacity - 1))).initialize(to: record)
        head.store(h + 1, ordering: .releasing)
        return true
    }

    @usableFromInline func countLost() {
        lostCount.wrappingIncrement(ordering: .relaxed)
    }

    /// The writer's: hands it every record written so far, oldest first; returns how many.
    public func drain(_ body: (TraceRecord) -> Void) -> Int {
        let t = tail.load(ordering: .relaxed)
        let h = head.load(ordering: .acquiring)
        for i in t..<h { body(records[i & (capacity - 1)]) }
        tail.store(h, ordering: .releasing)
        return h - t
    }

    /// Records lost since the start (full, or over the rate).
    public var lost: UInt64 { lostCount.load(ordering: .relaxed) }
}

/// The trace's switch and its limits, shared by the workers and the writer. Off at start
/// unless asked; `isOn` flips at run time (SIGUSR1). While on, the workers write a record
/// for each datagram from a source the filter admits, as long as the writer's allowance
/// lasts: it refills that at its rate, so no more lines a second are written than that,
/// and the rest are counted.
public final class TraceControl: Sendable {
    /// Sources traced (empty: every source).
    public let filter: [IPPrefix]
    /// Lines a second, at most.
    public let rate: Int
    /// One ring per worker, by worker index.
    public let rings: [TraceRing]
    /// Read by every worker once a batch: an `UnsafeAtomic`, whose load is one plain load
    /// where a `ManagedAtomic`'s is a call (and a retain of this object around it).
    @usableFromInline let on: UnsafeAtomic<Bool>
    private let allowance = ManagedAtomic<Int>(0)

    public init(workers: Int, filter: [IPPrefix], rate: Int, on: Bool, ringCapacity: Int = 1024) {
        precondition(rate > 0)
        self.filter = filter
        self.rate = rate
        self.on = .create(on)
        allowance.store(on ? rate : 0, ordering: .relaxed)
        rings = (0..<workers).map { _ in TraceRing(capacity: ringCapacity) }
    }

    deinit {
        on.destroy()
    }

    /// Read once a batch by each worker.
    @inlinable public var isOn: Bool { on.load(ordering: .relaxed) }

    /// Turns it on, its first second's allowance full (the writer refills it each second
    /// from then on), or off.
    public func set(on value: Bool) {
        if value { refill(rate) }
        on.store(value, ordering: .relaxed)
    }

    /// Whether a datagram from `source` is traced.
    @usableFromInline func admits(_ source: IPAddress) -> Bool {
        filter.isEmpty || filter.contains { $0.contains(source) }
    }

    /// The writer's: records the workers may write until the next refill.
    public func refill(_ records: Int) {
        allowance.store(records, ordering: .relaxed)
    }

    /// A worker's: takes one record from the allowance, if any is left.
    @usableFromInline func takeAllowance() -> Bool {
        // A plain load first: once it is spent, a flood does not fight over the cache line.
        guard allowance.load(ordering: .relaxed) > 0 else { return false }
        return allowance.loadThenWrappingDecrement(ordering: .relaxed) > 0
    }
}

/// A worker's side of the trace: its ring, and the records of the datagrams whose reply is
/// still in the outbox, completed once the outbox is sent (replied or send-failed).
@usableFromInline final class WorkerTrace {
    @usableFromInline let control: TraceControl
    @usableFromInline let ring: TraceRing
    /// Each with its reply's place in the outbox.
    @usableFromInline let pending: UnsafeMutablePointer<(record: TraceRecord, entry: Int)>
    @exclusivity(unchecked) @usableFromInline var pendingCount = 0
    @usableFromInline let pendingCapacity: Int

    @usableFromInline init(control: TraceControl, worker: Int, outboxCapacity: Int) {
        self.control = control
        ring = control.rings[worker]
        pendingCapacity = outboxCapacity
        pending = .allocate(capacity: outboxCapacity)
    }

    deinit {
        pending.deallocate()
    }

    /// A datagram from `source` is traced: the filter admits it and the rate allows it
    /// (if not, it is counted as not traced).
    @inlinable func admits(_ source: IPAddress) -> Bool {
        guard control.admits(source) else { return false }
        guard control.takeAllowance() else {
            ring.countLost()
            return false
        }
        return true
    }

    /// Keeps `record` until the outbox holding its reply at `entry` is sent.
    @inlinable func hold(_ record: TraceRecord, entry: Int) {
        // One reply per datagram, each a distinct outbox entry: never more than the outbox holds.
        precondition(pendingCount < pendingCapacity)
        (pending + pendingCount).initialize(to: (record, entry))
        pendingCount += 1
    }

    /// The outbox was sent: completes every held record, `failed` saying which entries the
    /// kernel refused.
    @inlinable func complete(failed: (Int) -> Bool) {
        for i in 0..<pendingCount {
            var (record, entry) = pending[i]
            if case .dropped = record.fate {
                // Dropped, and told so (a chat notice): its fate is the reason.
            } else {
                record.fate = failed(entry) ? .sendFailed : .replied
            }
            _ = ring.push(record)
        }
        pendingCount = 0
    }
}
