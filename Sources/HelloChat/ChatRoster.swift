import HelloChatWire
import HelloDatagram
import HelloService

/// A room: an index into the roster's rooms.
struct RoomID: Equatable {
    let index: Int
}

/// A member's place in the roster. A room's member slots are consecutive, `perRoom` of
/// them, so a slot knows its room.
struct MemberSlot: Equatable {
    let index: Int
    let room: RoomID

    @inline(__always)
    init(_ index: Int, perRoom: Int) {
        self.init(index: index, room: RoomID(index: index / perRoom))
    }

    @inline(__always)
    init(index: Int, room: RoomID) {
        (self.index, self.room) = (index, room)
    }
}

/// Who is where: the rooms and their names, the members and their nicks, found by token
/// (`tokenIndex`) and by room name (`roomIndex`); which slots and rooms are in use, a bit
/// each; the rooms not in use, a stack; the memberships per source prefix. Every table is
/// allocated in `init`; nothing allocates after.
struct ChatRoster: ~Copyable {
    struct Room {
        var inUse = false
        var nameLength: UInt8 = 0
        var memberCount = 0
        /// The next event's sequence, and the first the backlog still holds.
        var next: UInt32 = 1
        var oldest: UInt32 = 1
        var dirty = false
        /// When its events were last sent to its members (0: never), and the next
        /// sequence then.
        var lastFanOut: UInt64 = 0
        var fannedOut: UInt32 = 0
        /// The delivery limit's theoretical arrival time (GCRA).
        var deliveryArrival: UInt64 = 0
        /// Its name's hash in `roomIndex`.
        var nameHash: UInt64 = 0
    }

    struct Member {
        /// 0: a free slot.
        var token: UInt64 = 0
        var peer = Endpoint.v4(0, port: 0)
        var source: LocalSource?
        /// The socket it came through (`Arrival.socket`): what it is sent goes back through it.
        var socket: UInt16 = 0
        /// Its id (`ChatSecret.id`), which names it in events, and its tag, which every
        /// datagram it is sent carries.
        var id: UInt64 = 0
        var tag: UInt64 = 0
        var nickLength: UInt8 = 0
        var lastHeard: UInt64 = 0
        /// The message rate limit's theoretical arrival time (GCRA).
        var rateArrival: UInt64 = 0
        /// Client sequences delivered: the highest, and it and the 63 below it as bits (their
        /// room sequences are in `messageSequences`).
        var highest: UInt32 = 0
        var seen: UInt64 = 0
        var anySeen = false
        /// The next room sequence this member is to be sent.
        var nextToSend: UInt32 = 0
        /// The rate limit of what it is sent again on request, by its keepalives' catch-up
        /// and its RESENDs (GCRA, the message rate).
        var catchUpArrival: UInt64 = 0
        /// The same answers' bytes (GCRA, `repairByteRate`): a request's unit bounds how
        /// often it may ask, this how much it may pull.
        var repairArrival: UInt64 = 0
    }

    let roomCount: Int
    let perRoom: Int
    let rooms: UnsafeMutablePointer<Room>
    let roomNames: UnsafeMutablePointer<UInt8>
    let members: UnsafeMutablePointer<Member>
    let nicks: UnsafeMutablePointer<UInt8>
    /// Each member's nick's key (`NamePolicy.key`), hashed under `nickKeyKey`: a nick that
    /// reads as another member's is taken, and the hashes find the candidates.
    let nickKeys: UnsafeMutablePointer<UInt64>
    let nickKeyKey: SipHasher.Key
    /// Two names' keys, side by side (`NamePolicy.same`).
    let keyScratch: UnsafeMutablePointer<UInt32>
    /// Token -> member slot (the token, random, is its own hash).
    var tokenIndex: SlotIndex
    /// Room name -> room, by a SipHash of the name under `roomNameKey` (not the placement
    /// key: with several workers, the rooms of one share that hash modulo the workers).
    var roomIndex: SlotIndex
    let roomNameKey: SipHasher.Key
    /// Memberships per source prefix, for `membershipsPerPrefix`.
    var prefixCounts: PrefixCounts
    let prefixLengths: (ipv4: Int, ipv6: Int)
    /// Rooms not in use, a stack: a new room is the one freed last.
    let freeRooms: UnsafeMutablePointer<Int32>
    var freeRoomCount: Int
    /// Each room's member slots in use, a bit each, `wordsPerRoom` words a room; and the
    /// rooms in use, a bit each, so that the sweep skips 64 empty rooms in one step.
    let occupied: UnsafeMutablePointer<UInt64>
    let wordsPerRoom: Int
    let roomsInUse: UnsafeMutablePointer<UInt64>

    init(rooms roomCount: Int, perRoom: Int, keys: ChatKeys, prefixLengths: (ipv4: Int, ipv6: Int)) {
        (self.roomCount, self.perRoom, self.prefixLengths) = (roomCount, perRoom, prefixLengths)
        let slots = roomCount * perRoom
        rooms = .allocate(capacity: roomCount)
        rooms.initialize(repeating: Room(), count: roomCount)
        roomNames = .allocate(capacity: roomCount * ChatWire.maxName)
        members = .allocate(capacity: slots)
        members.initialize(repeating: Member(), count: slots)
        nicks = .allocate(capacity: slots * ChatWire.maxName)
        nickKeys = .allocate(capacity: slots)
        nickKeys.initialize(repeating: 0, count: slots)
        nickKeyKey = keys.key(.nickKey)
        keyScratch = .allocate(capacity: 2 * NamePolicy.longestKey)
        tokenIndex = SlotIndex(capacity: slots)
        roomIndex = SlotIndex(capacity: roomCount)
        roomNameKey = keys.key(.roomName)
        prefixCounts = PrefixCounts(capacity: slots, key: keys.key(.prefixCount))
        freeRooms = .allocate(capacity: roomCount)
        for k in 0..<roomCount { freeRooms[k] = Int32(roomCount - 1 - k) }  // room 0 on top
        freeRoomCount = roomCount
        wordsPerRoom = (perRoom + 63) / 64
        occupied = .allocate(capacity: roomCount * wordsPerRoom)
        occupied.initialize(repeating: 0, count: roomCount * wordsPerRoom)
        roomsInUse = .allocate(capacity: (roomCount + 63) / 64)
        roomsInUse.initialize(repeating: 0, count: (roomCount + 63) / 64)
    }

    deinit {
        rooms.deallocate()
        roomNames.deallocate()
        members.deallocate()
        nicks.deallocate()
        nickKeys.deallocate()
        keyScratch.deallocate()
        freeRooms.deallocate()
        occupied.deallocate()
        roomsInUse.deallocate()
    }

    /// The bytes the roster's tables take.
    static func bytes(rooms: Int, perRoom: Int) -> Int {
        let slots = rooms * perRoom
        return rooms * (MemoryLayout<Room>.stride + ChatWire.maxName)
            + slots * (MemoryLayout<Member>.stride + ChatWire.maxName + MemoryLayout<UInt64>.stride)
            + PrefixCounts.bytes(capacity: slots) + SlotIndex.bytes(capacity: slots) + SlotIndex.bytes(capacity: rooms)
    }

    subscript(room: RoomID) -> Room {
        @inline(__always) unsafeAddress { UnsafePointer(rooms + room.index) }
        @inline(__always) nonmutating unsafeMutableAddress { rooms + room.index }
    }

    subscript(slot: MemberSlot) -> Member {
        @inline(__always) unsafeAddress { UnsafePointer(members + slot.index) }
        @inline(__always) nonmutating unsafeMutableAddress { members + slot.index }
    }

    /// Member slot `k` of `room`.
    @inline(__always)
    func slot(_ k: Int, of room: RoomID) -> MemberSlot { MemberSlot(index: room.index * perRoom + k, room: room) }

    /// The slots of `room` that hold a member.
    func memberSlots(of room: RoomID) -> some Sequence<MemberSlot> {
        let (members, perRoom, first) = (members, perRoom, room.index * perRoom)
        return (first..<first + perRoom).lazy.filter { members[$0].token != 0 }.map { MemberSlot($0, perRoom: perRoom) }
    }

    /// The member whose token is `token`.
    @inline(__always)
    func member(token: UInt64) -> MemberSlot? {
        guard token != 0 else { return nil }
        let members = members
        return tokenIndex.find(token) { members[$0].token == token }.map { MemberSlot($0, perRoom: perRoom) }
    }

    func roomNameHash(_ name: UnsafeRawBufferPointer) -> UInt64 { SipHasher.hash(key: roomNameKey, name) }

    func name(of room: RoomID) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: roomNames + room.index * ChatWire.maxName, count: Int(self[room].nameLength))
    }

    /// The room in use named `name`, whose hash is `hash` (`roomNameHash`).
    func room(named name: UnsafeRawBufferPointer, hash: UInt64) -> RoomID? {
        let (rooms, roomNames) = (self.rooms, self.roomNames)
        return roomIndex.find(hash) { room in
            Int(rooms[room].nameLength) == name.count && memcmpEqual(roomNames + room * ChatWire.maxName, name)
        }.map(RoomID.init)
    }

    var hasFreeRoom: Bool { freeRoomCount > 0 }

    /// A room not in use, now named `name` (whose hash is `hash`), its first event
    /// numbered `first`.
    mutating func openRoom(named name: UnsafeRawBufferPointer, hash: UInt64, first: UInt32) -> RoomID {
        freeRoomCount -= 1
        let room = RoomID(index: Int(freeRooms[freeRoomCount]))
        // Still in the dirty list if its last members left this batch, or while held.
        self[room] = Room(
            inUse: true, nameLength: UInt8(name.count), memberCount: 0, next: first, oldest: first,
            dirty: self[room].dirty, nameHash: hash)
        UnsafeMutableRawPointer(roomNames + room.index * ChatWire.maxName).copyMemory(
            from: name.baseAddress!,
            byteCount: name.count)
        roomIndex.insert(room.index, hash: hash)
        roomsInUse[room.index / 64] |= 1 << UInt64(room.index % 64)
        return room
    }

    /// Puts `member` in the lowest free slot of `room`, which has one.
    mutating func add(_ member: Member, nick: UnsafeRawBufferPointer, to room: RoomID) -> MemberSlot {
        let words = occupied + room.index * wordsPerRoom
        var w = 0
        while words[w] == ~0 { w += 1 }
        let bit = (~words[w]).trailingZeroBitCount
        words[w] |= 1 << UInt64(bit)
        let slot = self.slot(w * 64 + bit, of: room)
        self[slot] = member
        setNick(slot, nick)
        tokenIndex.insert(slot.index, hash: member.token)
        prefixCounts.add(sourcePrefix(member.peer))
        self[room].memberCount += 1
        return slot
    }

    /// Removes a member; true if its room went with it, the last.
    mutating func remove(_ slot: MemberSlot) -> Bool {
        tokenIndex.remove(slot.index, hash: self[slot].token)
        prefixCounts.subtract(sourcePrefix(self[slot].peer))
        self[slot] = Member()
        let (room, k) = (slot.room, slot.index - slot.room.index * perRoom)
        occupied[room.index * wordsPerRoom + k / 64] &= ~(1 << UInt64(k % 64))
        self[room].memberCount -= 1
        guard self[room].memberCount == 0 else { return false }
        self[room].inUse = false
        roomIndex.remove(room.index, hash: self[room].nameHash)
        roomsInUse[room.index / 64] &= ~(1 << UInt64(room.index % 64))
        freeRooms[freeRoomCount] = Int32(room.index)
        freeRoomCount += 1
        return true
    }

    /// The member in `slot` is now at `peer`: its membership counts under that prefix.
    mutating func move(_ slot: MemberSlot, to peer: Endpoint) {
        let (old, new) = (sourcePrefix(self[slot].peer), sourcePrefix(peer))
        if old != new {
            prefixCounts.subtract(old)
            prefixCounts.add(new)
        }
        self[slot].peer = peer
    }

    func sourcePrefix(_ peer: Endpoint) -> SourcePrefix {
        SourcePrefix(peer, ipv4Length: prefixLengths.ipv4, ipv6Length: prefixLengths.ipv6)
    }

    func memberships(of peer: Endpoint) -> Int { prefixCounts.count(of: sourcePrefix(peer)) }

    // MARK: Nicks

    func nick(_ slot: MemberSlot) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: nicks + slot.index * ChatWire.maxName, count: Int(self[slot].nickLength))
    }

    func setNick(_ slot: MemberSlot, _ nick: UnsafeRawBufferPointer) {
        if let base = nick.baseAddress {
            UnsafeMutableRawPointer(nicks + slot.index * ChatWire.maxName).copyMemory(from: base, byteCount: nick.count)
        }
        self[slot].nickLength = UInt8(nick.count)
        nickKeys[slot.index] = nickKeyHash(nick)
    }

    /// The hash of `nick`'s key, which has no `NamePolicy.problem`.
    func nickKeyHash(_ nick: UnsafeRawBufferPointer) -> UInt64 {
        let n = NamePolicy.key(nick, into: keyScratch)
        return SipHasher.hash(key: nickKeyKey, UnsafeRawBufferPointer(start: keyScratch, count: n * 4))
    }

    /// Why `nick` cannot be a name in `room` (nil: it can): its characters
    /// (`NamePolicy.problem`), or another member's nick that it reads as (the same key).
    func nameRefusal(_ nick: UnsafeRawBufferPointer, in room: RoomID?, except: MemberSlot? = nil) -> ChatRefusal? {
        guard ChatWire.isValidName(nick) else { return .badName }
        guard let room else { return nil }
        let hash = nickKeyHash(nick)
        for slot in memberSlots(of: room) where slot != except && nickKeys[slot.index] == hash {
            if NamePolicy.same(nick, self.nick(slot), scratch: keyScratch) { return .nickTaken }
        }
        return nil
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafeRawBufferPointer) -> Bool {
    for i in 0..<b.count where a[i] != b[i] { return false }
    return true
}
