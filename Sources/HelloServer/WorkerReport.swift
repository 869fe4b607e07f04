import Atomics
import HelloService

/// What a worker has done, as the status line and the stop line report it.
public struct WorkerReport: Sendable, Equatable {
    public var counters = Counters()
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

    public static func + (a: WorkerReport, b: WorkerReport) -> WorkerReport {
        var sum = a
        sum.counters = a.counters + b.counters
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

/// A worker's report, published after every batch for other threads to read: one writer,
/// any number of readers, no lock. A sequence number around the fields (a seqlock) makes
/// every snapshot consistent: a reader never sees a batch half counted. (Kernel queue drops
/// are not a worker's to count: whoever reports reads them from the socket, SO_MEMINFO.)
///
/// The counters are published as their schema lists them, the schema with them: a report
/// knows no service's counter.
public final class PublishedReport: Sendable {
    private let sequence = ManagedAtomic<UInt64>(0)
    private let schema = ManagedAtomicLazyReference<CounterSchema>()
    private let fields: [ManagedAtomic<UInt64>]

    /// The worker's own fields, then room for any schema's counters.
    private static let workerFields = 8
    private static let fieldCount = workerFields + CounterBlock.capacity

    /// `schema`: the service's, so that a report read before the worker's first publish
    /// already lists its counters (the worker's publish sets it otherwise).
    public init(schema: CounterSchema = .generic) {
        fields = (0..<Self.fieldCount).map { _ in ManagedAtomic<UInt64>(0) }
        if schema !== CounterSchema.generic { _ = self.schema.storeIfNilThenLoad(schema) }
    }

    /// Called by the worker that owns this report, and by no one else.
    public func publish(_ report: WorkerReport) {
        if schema.load() !== report.counters.schema { _ = schema.storeIfNilThenLoad(report.counters.schema) }
        let s = sequence.load(ordering: .relaxed)
        sequence.store(s &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        fields[0].store(report.batches, ordering: .relaxed)
        fields[1].store(report.segmentedSends, ordering: .relaxed)
        fields[2].store(report.segmentationFallbacks, ordering: .relaxed)
        fields[3].store(report.segmentationOff, ordering: .relaxed)
        fields[4].store(report.receiveErrors, ordering: .relaxed)
        fields[5].store(UInt64(UInt32(bitPattern: report.lastSendErrno)), ordering: .relaxed)
        fields[6].store(UInt64(UInt32(bitPattern: report.lastReceiveErrno)), ordering: .relaxed)
        fields[7].store(report.coalescedBatches, ordering: .relaxed)
        report.counters.forEachValue { i, value in
            fields[Self.workerFields + i].store(value, ordering: .relaxed)
        }
        sequence.store(s &+ 2, ordering: .releasing)
    }

    /// The latest complete report.
    public func snapshot() -> WorkerReport {
        let schema = schema.load() ?? .generic
        while true {
            let before = sequence.load(ordering: .acquiring)
            if before & 1 == 1 { continue }  // a publish is under way
            var report = WorkerReport()
            report.batches = fields[0].load(ordering: .relaxed)
            report.segmentedSends = fields[1].load(ordering: .relaxed)
            report.segmentationFallbacks = fields[2].load(ordering: .relaxed)
            report.segmentationOff = fields[3].load(ordering: .relaxed)
            report.receiveErrors = fields[4].load(ordering: .relaxed)
            report.lastSendErrno = Int32(bitPattern: UInt32(truncatingIfNeeded: fields[5].load(ordering: .relaxed)))
            report.lastReceiveErrno = Int32(bitPattern: UInt32(truncatingIfNeeded: fields[6].load(ordering: .relaxed)))
            report.coalescedBatches = fields[7].load(ordering: .relaxed)
            var counters = Counters(schema: schema)
            for i in 0..<schema.count {
                counters[CounterID(i)] = fields[Self.workerFields + i].load(ordering: .relaxed)
            }
            report.counters = counters
            atomicMemoryFence(ordering: .acquiring)
            if sequence.load(ordering: .relaxed) == before { return report }
        }
    }
}
