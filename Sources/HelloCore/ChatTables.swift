import HelloChatWire
import HelloDatagram

/// Backward-shift deletion in an open-addressing table of `mask + 1` entries (linear
/// probing): empties entry `hole` by moving back each later entry of its probe run unless
/// that would put it before its home, and returns the entry left empty at the end. No
/// tombstones, so probes stay short however long the relay runs.
@inline(__always)
func shiftBack(hole: Int, mask: Int, isEmpty: (Int) -> Bool, home: (Int) -> Int, move: (_ from: Int, _ to: Int) -> Void) -> Int {
    var i = hole
    var j = i
    while true {
        j = (j + 1) & mask
        guard !isEmpty(j) else { return i }
        let h = home(j)
        // Move j back into the hole at i unless its home lies cyclically in (i, j].
        let inBetween = i <= j ? (h > i && h <= j) : (h > i || h <= j)
        if !inBetween {
            move(j, i)
            i = j
        }
    }
}

/// Slot numbers found by a 64-bit hash of their key (the chat relay's rooms by name, its
/// members by token): open addressing with linear probing, never more than half full,
/// deleted by shifting back the entries after the hole (`shiftBack`). Each entry keeps its hash beside its slot: a probe compares it before asking the caller
/// whether the slot is the one, and a deletion finds each entry's home without hashing its
/// key again. Allocated once; nothing allocates after.
package struct SlotIndex: ~Copyable {
    struct Entry {
        var hash: UInt64 = 0
        /// -1: empty.
        var slot: Int32 = -1
    }

    let entries: UnsafeMutablePointer<Entry>
    let mask: Int
    package let capacity: Int
    package private(set) var count = 0

    /// The entries of a table for `capacity` slots: a power of two, at least twice it.
    static func entries(for capacity: Int) -> Int {
        var size = 16
        while size < 2 * capacity { size <<= 1 }
        return size
    }

    /// The bytes a table for `capacity` slots allocates.
    package static func bytes(capacity: Int) -> Int { entries(for: capacity) * MemoryLayout<Entry>.stride }

    /// Room for `capacity` slots, in a table at least twice as large.
    package init(capacity: Int) {
        let size = Self.entries(for: capacity)
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(), count: size)
        mask = size - 1
        self.capacity = capacity
    }

    deinit { entries.deallocate() }

    @inline(__always)
    func home(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash) & mask }

    /// The first slot under `hash` for which `matches` is true.
    @inline(__always)
    package func find(_ hash: UInt64, where matches: (Int) -> Bool) -> Int? {
        var i = home(hash)
        while entries[i].slot >= 0 {
            if entries[i].hash == hash && matches(Int(entries[i].slot)) { return Int(entries[i].slot) }
            i = (i + 1) & mask
        }
        return nil
    }

    package mutating func insert(_ slot: Int, hash: UInt64) {
        precondition(count < capacity && slot >= 0 && slot <= Int(Int32.max))
        var i = home(hash)
        while entries[i].slot >= 0 { i = (i + 1) & mask }
        entries[i] = Entry(hash: hash, slot: Int32(slot))
        count += 1
    }

    /// Removes `slot`, inserted under `hash` (`shiftBack`).
    package mutating func remove(_ slot: Int, hash: UInt64) {
        var i = home(hash)
        while Int(entries[i].slot) != slot {
            precondition(entries[i].slot >= 0, "SlotIndex.remove: \(slot) is not in the index")
            i = (i + 1) & mask
        }
        let entries = entries
        let last = shiftBack(hole: i, mask: mask, isEmpty: { entries[$0].slot < 0 }, home: { home(entries[$0].hash) },
                             move: { entries[$1] = entries[$0] })
        entries[last] = Entry()
        count -= 1
    }
}

/// A source prefix (docs/PROTOCOL.md, "Limits"): the address cut to the prefix length of
/// its family (IPv4 /32 and IPv6 /64 by default).
package struct SourcePrefix: Hashable {
    package var high: UInt64
    package var low: UInt64
    package var isV4: Bool

    package init(_ peer: Endpoint, ipv4Length: Int, ipv6Length: Int) {
        let a = peer.address
        switch a.family {
        case .v4:
            let bits = ipv4Length
            let mask: UInt64 = bits >= 32 ? 0xffff_ffff : bits <= 0 ? 0 : (0xffff_ffff << UInt64(32 - bits)) & 0xffff_ffff
            (high, low, isV4) = (0, a.low & mask, true)
        case .v6:
            let bits = ipv6Length
            let highMask: UInt64 = bits >= 64 ? ~0 : bits <= 0 ? 0 : ~0 << UInt64(64 - bits)
            let lowMask: UInt64 = bits >= 128 ? ~0 : bits <= 64 ? 0 : ~0 << UInt64(128 - bits)
            (high, low, isV4) = (a.high & highMask, a.low & lowMask, false)
        }
    }
}

/// How many memberships each source prefix holds: open addressing (linear probing) keyed by
/// a SipHash of the prefix under a key of the relay's secret, so that no one can aim
/// prefixes at one probe run. A prefix has an entry while its count is above 0. Each
/// membership is counted under one prefix, so a table for `capacity` memberships, twice as
/// large, is never more than half full. Allocated once; nothing allocates after.
package struct PrefixCounts: ~Copyable {
    struct Entry {
        var prefix = SourcePrefix(Endpoint.v4(0, port: 0), ipv4Length: 32, ipv6Length: 64)
        /// 0: empty.
        var count: UInt32 = 0
    }

    let entries: UnsafeMutablePointer<Entry>
    let mask: Int
    let key: SipHasher.Key
    package let capacity: Int
    /// Prefixes with an entry.
    package private(set) var prefixes = 0

    /// The bytes a table for `capacity` memberships allocates.
    package static func bytes(capacity: Int) -> Int { SlotIndex.entries(for: capacity) * MemoryLayout<Entry>.stride }

    package init(capacity: Int, key: SipHasher.Key) {
        let size = SlotIndex.entries(for: capacity)
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(), count: size)
        mask = size - 1
        self.key = key
        self.capacity = capacity
    }

    deinit { entries.deallocate() }

    /// Where `prefix`'s probe run starts.
    @inline(__always)
    package func home(_ prefix: SourcePrefix) -> Int {
        var h = SipHasher(key: key)
        h.append(UInt64(prefix.isV4 ? 4 : 6))
        h.append(prefix.high)
        h.append(prefix.low)
        return Int(truncatingIfNeeded: h.finalize()) & mask
    }

    /// Where `prefix`'s entry is, or the empty entry that ends its probe run.
    @inline(__always)
    func position(_ prefix: SourcePrefix) -> Int {
        var i = home(prefix)
        while entries[i].count > 0 && entries[i].prefix != prefix { i = (i + 1) & mask }
        return i
    }

    package func count(of prefix: SourcePrefix) -> Int {
        Int(entries[position(prefix)].count)
    }

    package mutating func add(_ prefix: SourcePrefix) {
        let i = position(prefix)
        if entries[i].count == 0 {
            precondition(prefixes < capacity)
            entries[i].prefix = prefix
            prefixes += 1
        }
        entries[i].count += 1
    }

    /// One membership less for `prefix`; its entry goes with the last (`shiftBack`).
    package mutating func subtract(_ prefix: SourcePrefix) {
        let i = position(prefix)
        precondition(entries[i].count > 0, "PrefixCounts.subtract: a prefix with no membership")
        entries[i].count -= 1
        guard entries[i].count == 0 else { return }
        prefixes -= 1
        let entries = entries
        let last = shiftBack(hole: i, mask: mask, isEmpty: { entries[$0].count == 0 }, home: { home(entries[$0].prefix) },
                             move: { entries[$1] = entries[$0] })
        entries[last] = Entry()
    }
}

/// Where each member's last messages are in its room: per member slot, the room sequence of
/// each of the 64 client sequences of its window of duplicates (`clientSequence % 64`), so
/// that a duplicate SAY's copy is found at once, whatever the backlog's size. Allocated
/// once and never initialized: an entry is read only for a client sequence that the
/// member's window says was delivered, which wrote it; the pages of slots never used are
/// never touched.
package struct MessageSequences: ~Copyable {
    static let window = 64
    let entries: UnsafeMutablePointer<UInt32>

    package init(slots: Int) {
        entries = .allocate(capacity: slots * Self.window)
    }

    package static func bytes(slots: Int) -> Int { slots * window * MemoryLayout<UInt32>.stride }

    deinit { entries.deallocate() }

    @inline(__always)
    func index(_ slot: Int, _ clientSequence: UInt32) -> Int {
        slot * Self.window + Int(clientSequence % UInt32(Self.window))
    }

    /// The member in `slot` said `clientSequence`, numbered `roomSequence` in its room.
    @inline(__always)
    package mutating func record(_ roomSequence: UInt32, slot: Int, clientSequence: UInt32) {
        entries[index(slot, clientSequence)] = roomSequence
    }

    /// The room sequence of `clientSequence`, which the member in `slot` said (its window
    /// says so) no more than 63 client sequences below its highest.
    @inline(__always)
    package func roomSequence(slot: Int, clientSequence: UInt32) -> UInt32 {
        entries[index(slot, clientSequence)]
    }
}

extension ChatService {
    /// What is wrong with the relay's tables, each recounted the slow way from the member
    /// slots (empty: nothing). For tests and the fuzzer only: it walks every slot, and
    /// allocates.
    package func tableProblems() -> [String] {
        var problems: [String] = []
        var prefixes: [SourcePrefix: Int] = [:]
        var inUseCount = 0
        var membersInUse = 0
        var free = Set<Int>()
        for k in 0..<freeRoomCount {
            let room = Int(freeRooms[k])
            if rooms[room].inUse || !free.insert(room).inserted { problems.append("free list: room \(room) in use or twice") }
        }
        for room in 0..<roomCount {
            var count = 0
            for k in 0..<perRoom {
                let slot = room * perRoom + k
                let bit = occupied[room * wordsPerRoom + k / 64] >> UInt64(k % 64) & 1 == 1
                guard members[slot].token != 0 else {
                    if bit { problems.append("slot \(slot): free, marked in use") }
                    continue
                }
                if !bit { problems.append("slot \(slot): in use, marked free") }
                if lookup(members[slot].token) != slot { problems.append("slot \(slot): its token finds \(String(describing: lookup(members[slot].token)))") }
                prefixes[sourcePrefix(members[slot].peer), default: 0] += 1
                count += 1
            }
            membersInUse += count
            if count != rooms[room].memberCount { problems.append("room \(room): \(count) members, counted \(rooms[room].memberCount)") }
            if rooms[room].inUse != (count > 0) { problems.append("room \(room): \(count) members, in use \(rooms[room].inUse)") }
            if rooms[room].inUse != (roomsInUse[room / 64] >> UInt64(room % 64) & 1 == 1) {
                problems.append("room \(room): in use \(rooms[room].inUse), marked otherwise")
            }
            guard rooms[room].inUse else { continue }
            inUseCount += 1
            let name = UnsafeRawBufferPointer(start: roomNames + room * ChatWire.maxName, count: Int(rooms[room].nameLength))
            let hash = SipHasher.hash(key: roomNameKey, name)
            if hash != rooms[room].nameHash { problems.append("room \(room): name hash \(rooms[room].nameHash), is \(hash)") }
            if findRoom(name, hash: hash) != room { problems.append("room \(room): its name finds \(String(describing: findRoom(name, hash: hash)))") }
        }
        if roomIndex.count != inUseCount { problems.append("room index: \(roomIndex.count) entries, \(inUseCount) rooms in use") }
        if freeRoomCount != roomCount - inUseCount { problems.append("free list: \(freeRoomCount) rooms, \(roomCount - inUseCount) free") }
        if tally.chat.rooms != UInt64(inUseCount) || tally.chat.members != UInt64(membersInUse) {
            problems.append("counters: \(tally.chat.rooms) rooms, \(tally.chat.members) members; are \(inUseCount), \(membersInUse)")
        }
        if prefixCounts.prefixes != prefixes.count { problems.append("prefix counts: \(prefixCounts.prefixes) prefixes, are \(prefixes.count)") }
        for (prefix, count) in prefixes where prefixCounts.count(of: prefix) != count {
            problems.append("prefix \(prefix): counted \(prefixCounts.count(of: prefix)), are \(count)")
        }
        return problems
    }
}
