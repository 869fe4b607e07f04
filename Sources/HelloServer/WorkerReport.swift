import Atomics
import HelloService

/// A worker's own figures, beside its service's counters: 64 bytes, which a worker
/// publishes as they are (the whole report, counters included, cost a copy and a retain
/// each time).
public struct WorkerFigures: Sendable, Equatable {
    /// recvmmsg calls that returned datagrams: read / batches is how full batches run.
    public var batches: UInt64 = 0
    /// Batches that held a train received coalesced (UDP GRO), split into its datagrams.
    public var coalescedBatches: UInt64 = 0
    /// Sends that carried several replies as UDP segments (GSO).
    public var segmentedSends: UInt64 = 0
    /// Segmented sends the kernel refused and that went again as plain datagrams.
    public var segmentationFallbacks: UInt64 = 0
    /// Senders that turned segmentation off after an EIO (0 or 1 for a worker alone on its
    /// socket): their sockets send plain datagrams from then on.
    public var segmentationOff: UInt64 = 0
    /// recvmmsg failures other than "nothing queued".
    public var receiveErrors: UInt64 = 0
    /// The errno of the last refused send and of the last failed receive (0: none).
    public var lastSendErrno: Int32 = 0
    public var lastReceiveErrno: Int32 = 0

    public init() {}

    public static func + (a: WorkerFigures, b: WorkerFigures) -> WorkerFigures {
        var sum = a
        sum.batches += b.batches
        sum.coalescedBatches += b.coalescedBatches
        sum.segmentedSends += b.segmentedSends
        sum.segmentationFallbacks += b.segmentationFallbacks
        sum.segmentationOff += b.segmentationOff
        sum.receiveErrors += b.receiveErrors
        sum.lastSendErrno = b.lastSendErrno != 0 ? b.lastSendErrno : a.lastSendErrno
        sum.lastReceiveErrno = b.lastReceiveErrno != 0 ? b.lastReceiveErrno : a.lastReceiveErrno
        return sum
    }
}

/// What a worker has done, as the status line and the stop line report it: its service's
/// counters and its own figures.
@dynamicMemberLookup
public struct WorkerReport: Sendable, Equatable {
    public var counters = Counters()
    public var figures = WorkerFigures()

    public init() {}

    public subscript<Value>(dynamicMember path: WritableKeyPath<WorkerFigures, Value>) -> Value {
        get { figures[keyPath: path] }
        set { figures[keyPath: path] = newValue }
    }

    public static func + (a: WorkerReport, b: WorkerReport) -> WorkerReport {
        var sum = WorkerReport()
        sum.counters = a.counters + b.counters
        sum.figures = a.figures + b.figures
        return sum
    }
}

/// A worker's report, published for other threads to read (`WorkerConfiguration`'s
/// `publicationInterval` and `publicationLag` say how often): one writer, any number of
/// readers, no lock. A sequence number around the fields (a seqlock) makes
/// every snapshot consistent: a reader never sees a batch half counted. (Kernel queue drops
/// are not a worker's to count: whoever reports reads them from the socket, SO_MEMINFO.)
///
/// The counters are published as their schema lists them, the schema with them: a report
/// knows no service's counter.
///
/// The fields are one buffer of atomics, read and written through `UnsafeAtomic`, and so
/// is the sequence: a publish is a few dozen plain stores. An array of `ManagedAtomic`
/// objects cost a retain and a release each, and the sequence as a `ManagedAtomic` a call
/// each time it was read or written (a publish followed every batch then: in a small chat
/// room, every message).
public final class PublishedReport: @unchecked Sendable {
    private let sequence = UnsafeAtomic<UInt64>.create(0)
    private let schema = ManagedAtomicLazyReference<CounterSchema>()
    private let storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// The schema this report's worker last published, known to that thread alone.
    private let publishedSchema: UnsafeMutablePointer<ObjectIdentifier?>

    /// The worker's own fields, then room for any schema's counters.
    private static let workerFields = 8
    private static let fieldCount = workerFields + CounterBlock.capacity

    /// `schema`: the service's, so that a report read before the worker's first publish
    /// already lists its counters (the worker's publish sets it otherwise).
    public init(schema: CounterSchema = .generic) {
        storage = .allocate(capacity: Self.fieldCount)
        storage.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: Self.fieldCount)
        publishedSchema = .allocate(capacity: 1)
        publishedSchema.initialize(to: nil)
        if schema !== CounterSchema.generic { _ = self.schema.storeIfNilThenLoad(schema) }
    }

    deinit {
        storage.deinitialize(count: Self.fieldCount)
        storage.deallocate()
        publishedSchema.deallocate()
        sequence.destroy()
    }

    @inline(__always)
    private func field(_ i: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: storage + i)
    }

    /// Called by the worker that owns this report, and by no one else.
    public func publish(_ report: WorkerReport) {
        var counters = report.counters
        writer.publish(report.figures, counters: &counters)
    }

    /// The worker's side of the report: its memory, written in place. For whoever keeps
    /// the report alive (the worker holds it too): a publish through it takes no reference
    /// to the report, where a call of the report's method took a retain and a release,
    /// once a batch (in a small chat room, a message).
    public var writer: Writer { Writer(self) }

    public struct Writer {
        private unowned(unsafe) let report: PublishedReport
        private let sequence: UnsafeAtomic<UInt64>
        private let fields: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
        private let publishedSchema: UnsafeMutablePointer<ObjectIdentifier?>

        init(_ report: PublishedReport) {
            self.report = report
            (sequence, fields, publishedSchema) = (report.sequence, report.storage, report.publishedSchema)
        }

        /// A worker's `figures` and its service's `counters` (lent in place: inout only to
        /// be read without a copy, never changed).
        public func publish(_ figures: WorkerFigures, counters: inout Counters) {
            if publishedSchema.pointee != ObjectIdentifier(counters.schema) {
                report.adopt(counters.schema)
                publishedSchema.pointee = ObjectIdentifier(counters.schema)
            }
            let s = sequence.load(ordering: .relaxed)
            sequence.store(s &+ 1, ordering: .relaxed)
            atomicMemoryFence(ordering: .releasing)
            field(0).store(figures.batches, ordering: .relaxed)
            field(1).store(figures.segmentedSends, ordering: .relaxed)
            field(2).store(figures.segmentationFallbacks, ordering: .relaxed)
            field(3).store(figures.segmentationOff, ordering: .relaxed)
            field(4).store(figures.receiveErrors, ordering: .relaxed)
            field(5).store(UInt64(UInt32(bitPattern: figures.lastSendErrno)), ordering: .relaxed)
            field(6).store(UInt64(UInt32(bitPattern: figures.lastReceiveErrno)), ordering: .relaxed)
            field(7).store(figures.coalescedBatches, ordering: .relaxed)
            let counterFields = fields + PublishedReport.workerFields
            counters.withValues { values in
                for i in values.indices {
                    UnsafeAtomic(at: counterFields + i).store(values[i], ordering: .relaxed)
                }
            }
            sequence.store(s &+ 2, ordering: .releasing)
        }

        @inline(__always)
        private func field(_ i: Int) -> UnsafeAtomic<UInt64> {
            UnsafeAtomic(at: fields + i)
        }
    }

    /// The schema a worker publishes under, for readers (once, or at a change).
    private func adopt(_ published: CounterSchema) {
        if schema.load() !== published { _ = schema.storeIfNilThenLoad(published) }
    }

    /// The latest complete report.
    public func snapshot() -> WorkerReport {
        let schema = schema.load() ?? .generic
        while true {
            let before = sequence.load(ordering: .acquiring)
            if before & 1 == 1 { continue }  // a publish is under way
            var report = WorkerReport()
            report.figures.batches = field(0).load(ordering: .relaxed)
            report.figures.segmentedSends = field(1).load(ordering: .relaxed)
            report.figures.segmentationFallbacks = field(2).load(ordering: .relaxed)
            report.figures.segmentationOff = field(3).load(ordering: .relaxed)
            report.figures.receiveErrors = field(4).load(ordering: .relaxed)
            report.figures.lastSendErrno = Int32(
                bitPattern: UInt32(truncatingIfNeeded: field(5).load(ordering: .relaxed)))
            report.figures.lastReceiveErrno = Int32(
                bitPattern: UInt32(truncatingIfNeeded: field(6).load(ordering: .relaxed)))
            report.figures.coalescedBatches = field(7).load(ordering: .relaxed)
            var counters = Counters(schema: schema)
            for i in 0..<schema.count {
                counters[CounterID(i)] = field(Self.workerFields + i).load(ordering: .relaxed)
            }
            report.counters = counters
            atomicMemoryFence(ordering: .acquiring)
            if sequence.load(ordering: .relaxed) == before { return report }
        }
    }
}
