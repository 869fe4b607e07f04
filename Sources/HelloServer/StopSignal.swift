import Atomics
import HelloSocket
import SystemPackage

/// Tells every worker to finish the batch in hand and return. A flag for workers busy
/// with traffic, and an eventfd that wakes the ones waiting in poll.
public final class StopSignal: Sendable {
    /// Read by every worker on every turn of its loop: an `UnsafeAtomic`, whose load is one
    /// plain load where a `ManagedAtomic`'s is a call.
    @usableFromInline let flag = UnsafeAtomic<Bool>.create(false)
    /// Readable once stop() was called; never drained, so it wakes every waiter, forever.
    private let wakeupEvent: EventFD

    package init() {
        do {
            wakeupEvent = try EventFD()
        } catch {
            preconditionFailure("\(error)")
        }
    }

    deinit {
        flag.destroy()
    }

    /// What a worker polls besides its socket.
    @usableFromInline package var wakeup: FileDescriptor { wakeupEvent.descriptor }

    @inline(__always)
    @usableFromInline package var isRequested: Bool { flag.load(ordering: .relaxed) }

    package func stop() {
        flag.store(true, ordering: .relaxed)
        wakeupEvent.signal()
    }
}
