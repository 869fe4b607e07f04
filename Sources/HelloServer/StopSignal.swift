import Atomics
import CShims
import Glibc
import SystemPackage

/// Tells every worker to finish the batch in hand and return. A flag for workers busy
/// with traffic, and an eventfd that wakes the ones waiting in poll.
package final class StopSignal: Sendable {
    private let flag = ManagedAtomic<Bool>(false)
    /// Readable once stop() was called; never read, so it wakes every waiter, forever.
    package let wakeup: FileDescriptor

    package init() {
        let fd = hs_eventfd()
        precondition(fd >= 0, "eventfd failed: \(Errno(rawValue: errno))")
        wakeup = FileDescriptor(rawValue: fd)
    }

    deinit {
        try? wakeup.close()
    }

    @inline(__always)
    package var isRequested: Bool { flag.load(ordering: .relaxed) }

    package func stop() {
        flag.store(true, ordering: .relaxed)
        var one: UInt64 = 1
        _ = write(wakeup.rawValue, &one, 8)
    }
}
