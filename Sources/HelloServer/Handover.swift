import Atomics
import HelloDatagram
import HelloService
import HelloSocket
import SystemPackage

/// Datagrams from one worker to another: a single-producer, single-consumer ring of fixed
/// slots, allocated at start. A slot holds the datagram's bytes and everything the
/// socket layer said about it (source, PKTINFO, the socket it came through), so the
/// consumer serves it as if it had read it. No lock, no allocation: two indices that only
/// grow, each written by one side (swift-atomics), and a cached copy of the other side's.
package final class HandoverRing: @unchecked Sendable {
    package let capacity: Int
    package let slotBytes: Int
    private let mask: Int
    private let bytes: UnsafeMutableRawPointer
    private let headers: UnsafeMutablePointer<Header>
    /// The next slot the consumer reads, and the next the producer writes. (UnsafeAtomic:
    /// inlined to a plain load or store, where ManagedAtomic's is a call.)
    private let head = UnsafeAtomic<Int>.create(0)
    private let tail = UnsafeAtomic<Int>.create(0)
    /// Each side's last look at the other's index: the shared one is read only when this
    /// one says the ring is full (producer) or empty (consumer).
    private var producersHead = 0
    private var consumersTail = 0

    private struct Header {
        var length: Int
        var truncated: Bool
        var peer: Endpoint
        var arrival: Arrival
    }

    /// A ring of `capacity` (rounded up to a power of two) datagrams of up to `slotBytes`.
    package init(capacity: Int, slotBytes: Int) {
        var size = 1
        while size < capacity { size <<= 1 }
        self.capacity = size
        self.slotBytes = slotBytes
        mask = size - 1
        bytes = .allocate(byteCount: size * slotBytes, alignment: 64)
        headers = .allocate(capacity: size)
    }

    deinit {
        bytes.deallocate()
        headers.deallocate()
        head.destroy()
        tail.destroy()
    }

    // MARK: The producer's side

    /// Copies `datagram` into the next slot; false, having changed nothing, if the ring is
    /// full. The datagram must fit in a slot.
    package func push(_ datagram: Datagram) -> Bool {
        precondition(datagram.length <= slotBytes, "a datagram larger than a handover slot")
        let t = tail.load(ordering: .relaxed)
        if t &- producersHead == capacity {
            producersHead = head.load(ordering: .acquiring)
            if t &- producersHead == capacity { return false }
        }
        let i = t & mask
        let slot = bytes + i * slotBytes
        if let base = datagram.payload.baseAddress, datagram.payload.count > 0 {
            slot.copyMemory(from: base, byteCount: datagram.payload.count)
        }
        if let base = datagram.continuation.baseAddress, datagram.continuation.count > 0 {
            (slot + datagram.payload.count).copyMemory(from: base, byteCount: datagram.continuation.count)
        }
        headers[i] = Header(
            length: datagram.length, truncated: datagram.truncated, peer: datagram.peer,
            arrival: datagram.arrival)
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    // MARK: The consumer's side

    /// The oldest datagram, valid until `removeFirst`; nil if the ring is empty.
    package func first() -> Datagram? {
        let h = head.load(ordering: .relaxed)
        if h == consumersTail {
            consumersTail = tail.load(ordering: .acquiring)
            if h == consumersTail { return nil }
        }
        let i = h & mask
        let header = headers[i]
        return Datagram(
            payload: UnsafeRawBufferPointer(start: bytes + i * slotBytes, count: header.length),
            truncated: header.truncated, peer: header.peer, arrival: header.arrival)
    }

    /// Frees the oldest slot, once its datagram is served.
    package func removeFirst() {
        head.store(head.load(ordering: .relaxed) &+ 1, ordering: .releasing)
    }

    /// Whether anything is queued, as the consumer sees it after its own last removal.
    package var isEmpty: Bool {
        head.load(ordering: .relaxed) == tail.load(ordering: .acquiring)
    }
}

/// The workers that share one service's state (chat's rooms), each owning a part: every
/// one's socket, a ring from each to each other, and for each an eventfd that wakes it
/// from poll for what was handed to it, written only while it sleeps.
public final class HandoverGroup: Sendable {
    @usableFromInline package let sockets: [DatagramSocket]
    package var count: Int { sockets.count }
    /// `rings[from * count + to]`; nil where from == to.
    private let rings: [HandoverRing?]
    private let wakeups: [Wakeup]
    /// Set by a worker just before it sleeps in poll, cleared when it wakes.
    private let sleeping: [ManagedAtomic<Bool>]

    /// Slots per ring: four batches of the default 64 (full: the datagram is dropped and
    /// counted, under its service's handover-full reason).
    package static let defaultSlots = 256

    package init(sockets: [DatagramSocket], slots: Int = HandoverGroup.defaultSlots, slotBytes: Int) {
        self.sockets = sockets
        let n = sockets.count
        rings = (0..<n * n).map { $0 / n == $0 % n ? nil : HandoverRing(capacity: slots, slotBytes: slotBytes) }
        wakeups = (0..<n).map { _ in Wakeup() }
        sleeping = (0..<n).map { _ in ManagedAtomic(false) }
    }

    /// One worker's eventfd, in a class: an array cannot hold the ~Copyable owner itself.
    private final class Wakeup: Sendable {
        let event: EventFD
        init() {
            do {
                event = try EventFD()
            } catch {
                preconditionFailure("\(error)")
            }
        }
    }

    package func ring(from: Int, to: Int) -> HandoverRing {
        rings[from * count + to]!
    }

    /// The memory the rings take (reserved; a page is touched only once a slot on it is).
    package var ringBytes: Int {
        rings.reduce(0) { $0 + ($1.map { $0.capacity * $0.slotBytes } ?? 0) }
    }

    @usableFromInline package func wakeup(of worker: Int) -> FileDescriptor { wakeups[worker].event.descriptor }

    /// Called by a producer after its pushes to `worker`'s rings: wakes it if it sleeps.
    /// The fence orders the pushes before the look at its flag, as `prepareToSleep` orders
    /// the flag before its look at the rings: either it sees the datagrams, or this sees it
    /// asleep.
    package func wakeIfSleeping(_ worker: Int) {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if sleeping[worker].load(ordering: .relaxed) {
            wakeups[worker].event.signal()
        }
    }

    /// Called by `worker` before it sleeps: false (and it must not sleep) if something was
    /// handed to it meanwhile.
    @usableFromInline package func prepareToSleep(_ worker: Int) -> Bool {
        sleeping[worker].store(true, ordering: .relaxed)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        for from in 0..<count where from != worker && !ring(from: from, to: worker).isEmpty {
            sleeping[worker].store(false, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Called by `worker` once awake: clears its flag and its eventfd.
    @usableFromInline package func woke(_ worker: Int) {
        sleeping[worker].store(false, ordering: .relaxed)
        wakeups[worker].event.drain()
    }
}

/// One worker's place in a handover group: the rings it hands datagrams to, which of them
/// it pushed to since it last woke their owners, a sender for every socket of the group
/// (a member is answered through the socket it came through), and the counts that keep the
/// totals balanced.
@usableFromInline final class HandoverPort {
    @usableFromInline let group: HandoverGroup
    @usableFromInline let position: Int
    @usableFromInline let senders: [SendBatch]
    private let pushed: UnsafeMutablePointer<Bool>
    /// Datagrams this worker read and handed to another (counted read here), those of them
    /// a full ring refused (dropped here), and those it served for others (read there).
    private(set) var handedOff: UInt64 = 0
    private(set) var refused: UInt64 = 0
    private(set) var handedIn: UInt64 = 0

    @usableFromInline init(group: HandoverGroup, position: Int, outboxCapacity: Int, segmentation: Bool)
        throws(SocketError)
    {
        self.group = group
        self.position = position
        var senders: [SendBatch] = []
        for socket in group.sockets {
            senders.append(
                SendBatch(
                    capacity: outboxCapacity,
                    options: .init(local: try socket.localAddress(), segmentation: segmentation)))
        }
        self.senders = senders
        pushed = .allocate(capacity: group.count)
        pushed.initialize(repeating: false, count: group.count)
    }

    deinit {
        pushed.deallocate()
    }

    /// Hands `datagram`, read here, to `owner`; a full ring drops it (counted).
    @usableFromInline func handOver(_ datagram: Datagram, to owner: Int) {
        handedOff += 1
        if group.ring(from: position, to: owner).push(datagram) {
            pushed[owner] = true
        } else {
            refused += 1
        }
    }

    /// Wakes the owners this worker handed datagrams to, if they sleep.
    @usableFromInline func wakeOwners() {
        for owner in 0..<group.count where pushed[owner] {
            pushed[owner] = false
            group.wakeIfSleeping(owner)
        }
    }

    /// Serves what the others handed to this worker, at most a ring's worth from each.
    @usableFromInline func serveHandedIn(_ serve: (Datagram) -> Void) -> Int {
        var served = 0
        for from in 0..<group.count where from != position {
            let ring = group.ring(from: from, to: position)
            var budget = ring.capacity
            while budget > 0, let datagram = ring.first() {
                serve(datagram)
                ring.removeFirst()
                budget -= 1
            }
            served += ring.capacity - budget
        }
        handedIn += UInt64(served)
        return served
    }

    /// The service's counters as this worker's: `read` counts what its socket read, and a
    /// refused handover is its drop.
    @usableFromInline func adjust(_ counters: inout Counters) {
        counters.read = counters.read - handedIn + handedOff
        if let handoverFull = counters.schema.handoverFull { counters[handoverFull] += refused }
    }
}

extension SendBatch.Options {
    /// How to send through a socket bound to `local`.
    @usableFromInline init(local: SocketAddress, segmentation: Bool) {
        self.init()
        socketFamily = local.family
        writeSourceAddress = local.isWildcard
        self.segmentation = segmentation
    }
}
