import HelloChatWire
import HelloDatagram
import HelloService

/// How many memberships each source prefix holds: an `OpenTable` keyed by a SipHash of the
/// prefix under a key of the relay's secret, so that no one can aim prefixes at one probe
/// run. A prefix has an entry while its count is above 0. Each membership is counted under
/// one prefix, so a table for `capacity` memberships is never more than half full.
package struct PrefixCounts: ~Copyable {
    package struct Entry: OpenTableEntry {
        package var hash: UInt64 = 0
        var prefix = SourcePrefix(Endpoint.v4(0, port: 0), ipv4Length: 32, ipv6Length: 64)
        /// 0: empty.
        var count: UInt32 = 0

        package init() {}
        package var isEmpty: Bool { count == 0 }
    }

    var table: OpenTable<Entry>
    let key: SipHasher.Key

    /// The bytes a table for `capacity` memberships allocates.
    package static func bytes(capacity: Int) -> Int { OpenTable<Entry>.bytes(capacity: capacity) }

    package init(capacity: Int, key: SipHasher.Key) {
        table = OpenTable(capacity: capacity)
        self.key = key
    }

    package var capacity: Int { table.capacity }
    /// Prefixes with an entry.
    package var prefixes: Int { table.count }

    func hash(_ prefix: SourcePrefix) -> UInt64 {
        var h = SipHasher(key: key)
        h.append(UInt64(prefix.isV4 ? 4 : 6))
        h.append(prefix.high)
        h.append(prefix.low)
        return h.finalize()
    }

    /// Where `prefix`'s probe run starts.
    package func home(_ prefix: SourcePrefix) -> Int { table.home(hash(prefix)).offset }

    func bucket(_ prefix: SourcePrefix) -> (OpenTable<Entry>.Bucket, hash: UInt64) {
        let hash = hash(prefix)
        return (table.bucket(of: hash) { $0.prefix == prefix }, hash)
    }

    package func count(of prefix: SourcePrefix) -> Int { Int(table[bucket(prefix).0].count) }

    package mutating func add(_ prefix: SourcePrefix) {
        let (b, hash) = bucket(prefix)
        if table[b].isEmpty {
            var entry = Entry()
            (entry.hash, entry.prefix, entry.count) = (hash, prefix, 1)
            table.insert(entry)
        } else {
            table[b].count += 1
        }
    }

    /// One membership less for `prefix`; its entry goes with the last.
    package mutating func subtract(_ prefix: SourcePrefix) {
        let b = bucket(prefix).0
        precondition(!table[b].isEmpty, "PrefixCounts.subtract: a prefix with no membership")
        if table[b].count == 1 { table.remove(at: b) } else { table[b].count -= 1 }
    }

    package func invariantProblems() -> [String] { table.invariantProblems() }
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
        var problems = roster.problems()
        let (inUse, members) = roster.recount()
        if tally.chat.rooms != UInt64(inUse) || tally.chat.members != UInt64(members) {
            problems.append(
                "counters: \(tally.chat.rooms) rooms, \(tally.chat.members) members; are \(inUse), \(members)")
        }
        return problems
    }
}

extension ChatRoster {
    /// The rooms in use and the members, counted from the slots.
    func recount() -> (rooms: Int, members: Int) {
        let inUse = (0..<roomCount).filter { rooms[$0].inUse }.count
        return (inUse, (0..<roomCount * perRoom).filter { members[$0].token != 0 }.count)
    }

    /// What is wrong with the roster's tables (`ChatService.tableProblems`).
    func problems() -> [String] {
        var problems: [String] = []
        var free = Set<Int>()
        for k in 0..<freeRoomCount {
            let room = Int(freeRooms[k])
            if rooms[room].inUse || !free.insert(room).inserted {
                problems.append("free list: room \(room) in use or twice")
            }
        }
        var prefixes: [SourcePrefix: Int] = [:]
        for room in (0..<roomCount).map(RoomID.init) {
            problems += slotProblems(room, prefixes: &prefixes) + roomProblems(room)
        }
        let inUse = recount().rooms
        if roomIndex.count != inUse { problems.append("room index: \(roomIndex.count) entries, \(inUse) rooms in use") }
        if freeRoomCount != roomCount - inUse {
            problems.append("free list: \(freeRoomCount) rooms, \(roomCount - inUse) free")
        }
        problems += tokenIndex.invariantProblems().map { "token index: \($0)" }
        problems += roomIndex.invariantProblems().map { "room index: \($0)" }
        problems += prefixCounts.invariantProblems().map { "prefix counts: \($0)" }
        if prefixCounts.prefixes != prefixes.count {
            problems.append("prefix counts: \(prefixCounts.prefixes) prefixes, are \(prefixes.count)")
        }
        for (prefix, count) in prefixes where prefixCounts.count(of: prefix) != count {
            problems.append("prefix \(prefix): counted \(prefixCounts.count(of: prefix)), are \(count)")
        }
        return problems
    }

    /// `room`'s slots against its occupancy bits, the token index and its member count;
    /// each member's prefix counted in `prefixes`.
    func slotProblems(_ room: RoomID, prefixes: inout [SourcePrefix: Int]) -> [String] {
        var problems: [String] = []
        var count = 0
        for k in 0..<perRoom {
            let slot = self.slot(k, of: room)
            let bit = occupied[room.index * wordsPerRoom + k / 64] >> UInt64(k % 64) & 1 == 1
            guard self[slot].token != 0 else {
                if bit { problems.append("slot \(slot.index): free, marked in use") }
                continue
            }
            if !bit { problems.append("slot \(slot.index): in use, marked free") }
            let found = member(token: self[slot].token)
            if found != slot {
                problems.append("slot \(slot.index): its token finds \(String(describing: found?.index))")
            }
            prefixes[sourcePrefix(self[slot].peer), default: 0] += 1
            count += 1
        }
        let r = self[room]
        if count != r.memberCount { problems.append("room \(room.index): \(count) members, counted \(r.memberCount)") }
        if r.inUse != (count > 0) { problems.append("room \(room.index): \(count) members, in use \(r.inUse)") }
        return problems
    }

    /// `room`'s in-use bit, and its name's hash and place in the room-name index.
    func roomProblems(_ room: RoomID) -> [String] {
        var problems: [String] = []
        let r = self[room]
        if r.inUse != (roomsInUse[room.index / 64] >> UInt64(room.index % 64) & 1 == 1) {
            problems.append("room \(room.index): in use \(r.inUse), marked otherwise")
        }
        guard r.inUse else { return problems }
        let hash = roomNameHash(name(of: room))
        if hash != r.nameHash { problems.append("room \(room.index): name hash \(r.nameHash), is \(hash)") }
        let found = self.room(named: name(of: room), hash: hash)
        if found != room { problems.append("room \(room.index): its name finds \(String(describing: found?.index))") }
        return problems
    }
}
