import Atomics
import HelloCore

/// What a worker has done, as the status line and the stop line report it.
public struct WorkerReport: Sendable, Equatable {
    public var counters = Counters()
    /// recvmmsg calls that returned datagrams: read / batches is how full batches run.
    public var batches: UInt64 = 0
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
public final class PublishedReport: Sendable {
    private let sequence = ManagedAtomic<UInt64>(0)
    private let fields: [ManagedAtomic<UInt64>]

    private static let fieldCount = 16 + DropReason.allCases.count

    public init() {
        fields = (0..<Self.fieldCount).map { _ in ManagedAtomic<UInt64>(0) }
    }

    /// Called by the worker that owns this report, and by no one else.
    public func publish(_ report: WorkerReport) {
        let s = sequence.load(ordering: .relaxed)
        sequence.store(s &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        var i = 0
        func put(_ value: UInt64) {
            fields[i].store(value, ordering: .relaxed)
            i += 1
        }
        put(report.counters.read)
        put(report.counters.replied)
        put(report.batches)
        put(report.segmentedSends)
        put(report.segmentationFallbacks)
        put(report.segmentationOff)
        put(report.receiveErrors)
        put(UInt64(UInt32(bitPattern: report.lastSendErrno)))
        put(UInt64(UInt32(bitPattern: report.lastReceiveErrno)))
        put(report.counters.deliveries)
        put(report.counters.deliveryFailures)
        put(report.counters.chat.rooms)
        put(report.counters.chat.members)
        put(report.counters.chat.messages)
        put(report.counters.chat.joins)
        put(report.counters.chat.leaves)
        for reason in DropReason.allCases {
            put(report.counters.drops[reason])
        }
        sequence.store(s &+ 2, ordering: .releasing)
    }

    /// The latest complete report.
    public func snapshot() -> WorkerReport {
        while true {
            let before = sequence.load(ordering: .acquiring)
            if before & 1 == 1 { continue }  // a publish is under way
            var i = 0
            func get() -> UInt64 {
                defer { i += 1 }
                return fields[i].load(ordering: .relaxed)
            }
            var report = WorkerReport()
            report.counters.read = get()
            report.counters.replied = get()
            report.batches = get()
            report.segmentedSends = get()
            report.segmentationFallbacks = get()
            report.segmentationOff = get()
            report.receiveErrors = get()
            report.lastSendErrno = Int32(bitPattern: UInt32(truncatingIfNeeded: get()))
            report.lastReceiveErrno = Int32(bitPattern: UInt32(truncatingIfNeeded: get()))
            report.counters.deliveries = get()
            report.counters.deliveryFailures = get()
            report.counters.chat.rooms = get()
            report.counters.chat.members = get()
            report.counters.chat.messages = get()
            report.counters.chat.joins = get()
            report.counters.chat.leaves = get()
            for reason in DropReason.allCases {
                report.counters.drops[reason] = get()
            }
            atomicMemoryFence(ordering: .acquiring)
            if sequence.load(ordering: .relaxed) == before { return report }
        }
    }
}
