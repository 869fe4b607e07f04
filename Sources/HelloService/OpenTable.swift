/// An entry of an `OpenTable`: its hash (which places it) and whether it is empty.
package protocol OpenTableEntry {
    /// An empty entry.
    init()
    var isEmpty: Bool { get }
    /// The 64-bit hash that places the entry; kept in it, so that a probe compares it before
    /// the key, and a deletion finds each entry's home without hashing its key again.
    var hash: UInt64 { get }
}

/// An open-addressing hash table (linear probing), in the style of swift-collections'
/// `_HTable`: sizing, probing and deletion written once, for the relay's token index,
/// room-name index and per-prefix counts. Never more than half full; deleted by shifting
/// back the entries after the hole, so no tombstones and probes stay short however long the
/// relay runs. Allocated once; nothing allocates after.
package struct OpenTable<Entry: OpenTableEntry>: ~Copyable {
    /// A position in the table.
    package struct Bucket: Equatable {
        package var offset: Int
    }

    let entries: UnsafeMutablePointer<Entry>
    let mask: Int
    /// The most entries the table takes.
    package let capacity: Int
    package private(set) var count = 0

    /// The buckets of a table for `capacity` entries: a power of two, at least twice it.
    static func bucketCount(for capacity: Int) -> Int {
        var size = 16
        while size < 2 * capacity { size <<= 1 }
        return size
    }

    /// The bytes a table for `capacity` entries allocates.
    package static func bytes(capacity: Int) -> Int { bucketCount(for: capacity) * MemoryLayout<Entry>.stride }

    package init(capacity: Int) {
        let size = Self.bucketCount(for: capacity)
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(), count: size)
        mask = size - 1
        self.capacity = capacity
    }

    deinit { entries.deallocate() }

    /// Where the probe run of `hash` starts.
    @inline(__always)
    package func home(_ hash: UInt64) -> Bucket { Bucket(offset: Int(truncatingIfNeeded: hash) & mask) }

    @inline(__always)
    func next(_ bucket: Bucket) -> Bucket { Bucket(offset: (bucket.offset + 1) & mask) }

    @inline(__always)
    package subscript(bucket: Bucket) -> Entry {
        get { entries[bucket.offset] }
        nonmutating _modify { yield &entries[bucket.offset] }
    }

    /// The first entry of `hash`'s probe run with that hash for which `matches` is true, or
    /// the empty bucket that ends the run.
    @inline(__always)
    package func bucket(of hash: UInt64, where matches: (Entry) -> Bool) -> Bucket {
        var b = home(hash)
        while !entries[b.offset].isEmpty && !(entries[b.offset].hash == hash && matches(entries[b.offset])) {
            b = next(b)
        }
        return b
    }

    /// Puts `entry` in the empty bucket that ends its hash's probe run.
    package mutating func insert(_ entry: Entry) {
        precondition(count < capacity && !entry.isEmpty, "OpenTable.insert: full, or an empty entry")
        var b = home(entry.hash)
        while !entries[b.offset].isEmpty { b = next(b) }
        entries[b.offset] = entry
        count += 1
    }

    /// Empties `hole`, which holds an entry, moving back each later entry of its probe run
    /// unless that would put it before its home.
    package mutating func remove(at hole: Bucket) {
        precondition(!self[hole].isEmpty, "OpenTable.remove: an empty bucket")
        var i = hole
        var j = hole
        while true {
            j = next(j)
            guard !entries[j.offset].isEmpty else { break }
            let h = home(entries[j.offset].hash).offset
            // Move j back into the hole at i unless its home lies cyclically in (i, j].
            let inBetween = i.offset <= j.offset ? (h > i.offset && h <= j.offset) : (h > i.offset || h <= j.offset)
            if !inBetween {
                entries[i.offset] = entries[j.offset]
                i = j
            }
        }
        entries[i.offset] = Entry()
        count -= 1
    }

    /// What breaks the table's invariants (empty: nothing): each entry is reached from its
    /// home without crossing an empty bucket, the count is the entries', at least one bucket
    /// is empty. For tests: it walks the whole table, and allocates.
    package func invariantProblems() -> [String] {
        var problems: [String] = []
        var entriesFound = 0
        for offset in 0...mask where !entries[offset].isEmpty {
            entriesFound += 1
            var b = home(entries[offset].hash)
            while b.offset != offset {
                if entries[b.offset].isEmpty {
                    problems.append("bucket \(offset): an empty bucket \(b.offset) between it and its home")
                    break
                }
                b = next(b)
            }
        }
        if entriesFound != count { problems.append("\(entriesFound) entries, counted \(count)") }
        if entriesFound > mask { problems.append("no empty bucket") }
        return problems
    }
}

/// A slot number under a 64-bit hash of its key (a member by token, a room by name).
package struct SlotEntry: OpenTableEntry {
    package var hash: UInt64 = 0
    /// -1: empty.
    var slot: Int32 = -1

    package init() {}
    init(hash: UInt64, slot: Int) {
        precondition(slot >= 0 && slot <= Int(Int32.max))
        (self.hash, self.slot) = (hash, Int32(slot))
    }
    package var isEmpty: Bool { slot < 0 }
}

/// Slot numbers found by a 64-bit hash of their key: the relay's members by token (random,
/// its own hash), its rooms by a SipHash of the name.
package typealias SlotIndex = OpenTable<SlotEntry>

extension OpenTable where Entry == SlotEntry {
    /// The first slot under `hash` for which `matches` is true.
    @inline(__always)
    package func find(_ hash: UInt64, where matches: (Int) -> Bool) -> Int? {
        let found = self[bucket(of: hash) { matches(Int($0.slot)) }]
        return found.isEmpty ? nil : Int(found.slot)
    }

    package mutating func insert(_ slot: Int, hash: UInt64) {
        insert(SlotEntry(hash: hash, slot: slot))
    }

    /// Removes `slot`, inserted under `hash`.
    package mutating func remove(_ slot: Int, hash: UInt64) {
        let b = bucket(of: hash) { Int($0.slot) == slot }
        precondition(!self[b].isEmpty, "SlotIndex.remove: \(slot) is not in the index")
        remove(at: b)
    }
}
