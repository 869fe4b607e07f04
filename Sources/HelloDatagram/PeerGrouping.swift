/// The order to answer a batch in: grouped by key (the peer), the first-seen key first,
/// each key's requests in the order they came. Grouped replies sit side by side in the
/// plan, so each group can become one segmented send.
///
/// A small open-addressing table (key -> group) builds it in O(count), in storage allocated
/// once and left empty after every batch. The caller brings the hash and the equality, so
/// no address type reaches this file.
public struct PeerGrouping: ~Copyable {
    public let capacity: Int
    /// `order[k]` is the index of the k-th request to answer, after the last call.
    @usableFromInline let order: UnsafeMutablePointer<Int>
    @usableFromInline let slots: UnsafeMutablePointer<Int32>  // a group, or -1
    @usableFromInline let slotBits: Int
    @usableFromInline let groupSlot: UnsafeMutablePointer<Int32>
    @usableFromInline let groupHead: UnsafeMutablePointer<Int32>
    @usableFromInline let groupTail: UnsafeMutablePointer<Int32>
    @usableFromInline let nextInGroup: UnsafeMutablePointer<Int32>

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Int(Int32.max) / 2)
        self.capacity = capacity
        order = .allocate(capacity: capacity)
        order.initialize(repeating: 0, count: capacity)
        // At least twice as many slots as keys: probe runs stay short.
        slotBits = Int.bitWidth - (2 * capacity - 1).leadingZeroBitCount
        slots = .allocate(capacity: 1 << slotBits)
        slots.initialize(repeating: -1, count: 1 << slotBits)
        groupSlot = .allocate(capacity: capacity)
        groupHead = .allocate(capacity: capacity)
        groupTail = .allocate(capacity: capacity)
        nextInGroup = .allocate(capacity: capacity)
    }

    deinit {
        order.deallocate()
        slots.deallocate()
        groupSlot.deallocate()
        groupHead.deallocate()
        groupTail.deallocate()
        nextInGroup.deallocate()
    }

    /// The index of the `k`th request to answer, after the last call.
    @inlinable @inline(__always)
    public func index(_ k: Int) -> Int { order[k] }

    /// Requests `0..<count` in the order they came.
    @inlinable @inline(__always)
    public mutating func arrivalOrder(count: Int) {
        precondition(count <= capacity)
        // A lone datagram (where they come alone, every one) is not the vectorized loop:
        // its constants are a line of their own, a cache miss once the worker has slept.
        guard count != 1 else {
            order[0] = 0
            return
        }
        for i in 0..<count { order[i] = i }
    }

    /// Fills `order` for requests `0..<count`, grouped by key. `hash(i)` is request i's key
    /// hashed (equal keys, equal hashes; called once per request); `sameKey(i, j)` whether
    /// two requests have the same key.
    @inlinable @inline(__always)
    public mutating func group(count: Int, hash: (_ request: Int) -> UInt64, sameKey: (_ a: Int, _ b: Int) -> Bool) {
        precondition(count <= capacity)
        guard count > 2 else {
            arrivalOrder(count: count)  // two requests are in order either way
            return
        }
        let mask = (1 << slotBits) - 1
        var groups = 0
        for i in 0..<count {
            nextInGroup[i] = -1
            var slot = self.slot(hash(i))
            while true {
                let group = Int(slots[slot])
                if group < 0 {
                    slots[slot] = Int32(groups)
                    groupSlot[groups] = Int32(slot)
                    groupHead[groups] = Int32(i)
                    groupTail[groups] = Int32(i)
                    groups += 1
                    break
                }
                if sameKey(Int(groupHead[group]), i) {
                    nextInGroup[Int(groupTail[group])] = Int32(i)
                    groupTail[group] = Int32(i)
                    break
                }
                slot = (slot + 1) & mask
            }
        }
        var k = 0
        for group in 0..<groups {
            slots[Int(groupSlot[group])] = -1  // empty again for the next batch
            var i = Int(groupHead[group])
            while i >= 0 {
                order[k] = i
                k += 1
                i = Int(nextInGroup[i])
            }
        }
    }

    /// The slot a hash starts probing at: mixed first, so hashes that differ only in a
    /// few bits (or only in high ones) still spread over the table.
    @inlinable @inline(__always)
    func slot(_ hash: UInt64) -> Int {
        Int(truncatingIfNeeded: Self.mix(hash)) & ((1 << slotBits) - 1)
    }

    /// A bijective 64-bit mix (SplitMix64's finalizer): every input bit reaches every output bit.
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var h = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 31)
    }
}
