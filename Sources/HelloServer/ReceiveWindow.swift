/// How many datagrams a worker's next receive asks for: a batch, or one where they come
/// alone.
///
/// recvmmsg reads until it has what it was asked for or finds the queue empty. So a receive
/// of a lone datagram that asked for a batch goes through the socket's receive path twice,
/// the second time to find nothing: in a ping-pong, an eighth to a sixth of hellod's CPU a
/// reply (PERFORMANCE.md, "A lone datagram read once"). A plain C relay pays it at every
/// message. Where datagrams come one at a time (a small chat room, a ping-pong, a probe),
/// the worker asks for one; as soon as one is found queued behind another, for a batch
/// again.
@usableFromInline package struct ReceiveWindow {
    @usableFromInline package let batch: Int
    /// The last datagram came alone: nothing was queued behind it.
    @usableFromInline package private(set) var lone = false
    /// The last receive found the queue empty (or the worker slept since): the next
    /// datagram found is one that was waited for.
    @usableFromInline package private(set) var sawEmpty = true

    /// A wait that returned sooner than this found its datagram queued, most likely: it
    /// took one system call, not a sleep and a wake-up (several microseconds even where
    /// both are fast).
    @usableFromInline package static let queuedWithin: UInt64 = 10_000

    @inlinable package init(batch: Int) { self.batch = batch }

    /// What the next receive asks for.
    @inlinable package var size: Int { lone ? 1 : batch }

    /// The next receive asks for one datagram of a batch: whether its wait slept must be
    /// known (`received`), as a batch of one never needs to.
    @inlinable package var narrowed: Bool { lone && batch > 1 }

    /// After a receive that asked for `size` datagrams and got `count`. `slept`: whether a
    /// receive that waited for its first datagram slept for it (nil: it did not wait; then
    /// whether the last look found the queue empty says whether this one was waited for).
    @inlinable package mutating func received(_ count: Int, slept: Bool? = nil) {
        defer { sawEmpty = count == 0 }
        switch count {
        case 0: return
        case 1 where size > 1: lone = true  // the kernel's second look found nothing behind it
        case 1: lone = slept ?? sawEmpty  // found at once, there may be more queued: a batch
        default: lone = false
        }
    }

    /// After a wait for readiness (poll): if it slept, the queue was empty.
    @inlinable package mutating func woke(slept: Bool) {
        if slept { sawEmpty = true }
    }
}
