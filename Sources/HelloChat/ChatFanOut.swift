import HelloChatWire
import HelloDatagram
import HelloService

/// The rooms with events not yet sent to their members, in the order they got them, and
/// how far `endBatch` got through them (the outbox may fill in the middle of a room). Those
/// held back by the fan-out interval move to the front, `held` of them, for the next pass.
struct DirtyRooms: ~Copyable {
    let rooms: UnsafeMutablePointer<Int32>
    private(set) var count = 0
    private(set) var held = 0
    /// Where `endBatch` stopped: a room of the list, and a member of that room.
    var cursor = (room: 0, member: 0)

    init(capacity: Int) { rooms = .allocate(capacity: capacity) }

    deinit { rooms.deallocate() }

    mutating func append(_ room: RoomID) {
        rooms[count] = Int32(room.index)
        count += 1
    }

    /// The room at the cursor (nil: the pass is over).
    var current: RoomID? { cursor.room < count ? RoomID(index: Int(rooms[cursor.room])) : nil }

    /// Keeps the room at the cursor for the next pass, and moves on.
    mutating func holdCurrent() {
        rooms[held] = rooms[cursor.room]
        held += 1
        cursor.room += 1
    }

    /// The room at the cursor is sent: on to the next, from its first member.
    mutating func advance() { cursor = (cursor.room + 1, 0) }

    /// The pass is over: the rooms held are the list.
    mutating func endPass() {
        (count, held, cursor) = (held, 0, (0, 0))
    }
}

extension ChatService {
    /// Numbers an event in `room`, keeps it in the backlog and marks the room for sending.
    mutating func appendEvent(
        _ room: RoomID, kind: ChatEventKind, sender: UInt64, clientSequence: UInt32,
        nick: UnsafeRawBufferPointer, text: UnsafeRawBufferPointer, token: UInt64
    ) {
        let sequence = roster[room].next
        backlog.store(
            room, sequence: sequence, kind: kind, sender: sender, clientSequence: clientSequence,
            nick: nick, text: text, token: token)
        roster[room].next = sequence &+ 1
        issued = max(issued, sequence)
        if roster[room].next - roster[room].oldest > UInt32(backlog.length) {
            roster[room].oldest = roster[room].next - UInt32(backlog.length)
        }
        if !roster[room].dirty {
            roster[room].dirty = true
            dirty.append(room)
        }
    }

    /// Sends each dirty room's new events to its members who are not silent, as many to
    /// one member in one datagram as fit. Members at the same point of the room (nearly
    /// always all of them) get the same bytes: those are written once, for the first, and
    /// every other member's send points at them, as a plain C relay sends from one buffer.
    public mutating func endBatch(now: UInt64, into outbox: inout Outbox) -> Bool {
        if dirty.cursor.room == 0 {
            sendDue = nil  // a new pass (or one resumed in its first room, which held none)
        }
        while let room = dirty.current {
            if dirty.cursor.member == 0 && holdsBack(room, now: now) {
                dirty.holdCurrent()  // not yet: it stays dirty
                continue
            }
            let next = roster[room].next
            guard fanOut(room, upTo: next, now: now, into: &outbox) else { return false }
            roster[room].dirty = false
            roster[room].lastFanOut = now
            roster[room].fannedOut = next
            dirty.advance()
        }
        dirty.endPass()
        return true
    }

    /// Whether the fan-out interval holds `room`'s events back (and `sendDue` is then no
    /// later than when it may go): no longer than one more batch may leave nothing unsent
    /// in the backlog.
    mutating func holdsBack(_ room: RoomID, now: UInt64) -> Bool {
        let interval = settings.fanOutInterval
        let last = roster[room].lastFanOut
        guard
            interval > 0 && last != 0 && now &- last < interval
                && roster[room].next &- roster[room].fannedOut < holdLimit
        else { return false }
        sendDue = min(sendDue ?? last + interval, last + interval)
        return true
    }

    /// Sends `room`'s events before `next` to its members who are not silent, from member
    /// `dirty.cursor.member` on; false if the outbox filled first (`dirty.cursor.member` is then
    /// the member to go on with). The relay's innermost loop: members are read in place,
    /// counts kept in locals until the end.
    mutating func fanOut(_ room: RoomID, upTo next: UInt32, now: UInt64, into outbox: inout Outbox) -> Bool {
        let silentAfter = settings.silenceSeconds * 1_000_000_000
        // A member last heard before this is silent (none is, before `silentAfter` has passed).
        let silentBefore = now >= silentAfter ? now - silentAfter + 1 : 0
        let oldest = roster[room].oldest
        let (members, perRoom) = (roster.members, roster.perRoom)
        let first = roster.slot(0, of: room).index
        // The room's slots in use, a bit each: a room of 2 is 2 steps, not `perRoom`.
        let inUse = roster.occupied + room.index * roster.wordsPerRoom
        // The datagrams last written here for a member: from which sequence, and which
        // outbox entries. Valid for this call only: a full outbox is sent and emptied.
        var written = (from: UInt32(0), first: 0, count: 0)
        var k = dirty.cursor.member
        var deliveries = 0
        defer {
            dirty.cursor.member = k
            pending.deliveries += deliveries
        }
        while k < perRoom {
            let bits = inUse[k >> 6] & (~0 << UInt64(k & 63))
            guard bits != 0 else {
                k = (k >> 6 + 1) << 6  // no member from here to the word's end
                continue
            }
            k = k & ~63 + bits.trailingZeroBitCount
            let member = members + first + k
            if member.pointee.token != 0 {
                if member.pointee.lastHeard < silentBefore {
                    member.pointee.nextToSend = next  // it may ask RESEND when it is back
                }
                var from = max(member.pointee.nextToSend, oldest)
                if from < next && written.count > 0 && written.from == from {
                    guard repeatWritten(written.first, count: written.count, to: member, into: &outbox) else {
                        return false
                    }
                    deliveries += written.count
                } else if from < next {
                    written = (from, outbox.count, 0)
                    while from < next {
                        guard
                            writeEvents(
                                room, from: &from, to: next, to: MemberSlot(index: first + k, room: room), into: &outbox
                            )
                        else {
                            member.pointee.nextToSend = from
                            return false
                        }
                        deliveries += 1
                        written.count += 1
                    }
                }
                member.pointee.nextToSend = next
            }
            k += 1
        }
        return true
    }

    /// Sends `member` the `count` outbox entries from `first` again, under its own version,
    /// type and tag; false (nothing sent) if the outbox has no room for them.
    @inline(__always)
    func repeatWritten(
        _ first: Int, count: Int, to member: UnsafeMutablePointer<ChatRoster.Member>,
        into outbox: inout Outbox
    ) -> Bool {
        // Room for the entries is room for their heads too: no datagram in the outbox is
        // longer than `largestDatagram`, a head much shorter.
        guard outbox.count + count <= outbox.capacity else { return false }
        for d in first..<first + count {
            let at = outbox.next
            at.storeBytes(of: Self.eventsHead, as: UInt16.self)
            at.storeBytes(of: member.pointee.tag.bigEndian, toByteOffset: 2, as: UInt64.self)
            _ = outbox.repeatDatagram(
                d, ownHead: ChatWire.headerLength, to: member.pointee.peer,
                from: member.pointee.source, through: member.pointee.socket)
        }
        return true
    }

    /// An EVENTS datagram's version and type, as they lie in memory (computed, not stored:
    /// a constant, not a lazily made global checked at every use).
    @inline(__always)
    static var eventsHead: UInt16 { (UInt16(ChatWire.version) << 8 | UInt16(ChatType.events.rawValue)).bigEndian }

    /// Writes one EVENTS datagram to the member in `slot` with the events from `from` on, as
    /// many as fit, and moves `from` past them; false (nothing written) if the outbox is full.
    /// It runs once per member and datagram, the relay's innermost loop: the member is read
    /// in place (not copied), and each event's length looked up once. Always inlined: a
    /// non-mutating method called from a mutating one is handed a copy of the whole
    /// service (1,568 bytes), which cost more than the rest of the call.
    @inline(__always)
    func writeEvents(_ room: RoomID, from: inout UInt32, to end: UInt32, to slot: MemberSlot, into outbox: inout Outbox)
        -> Bool
    {
        let (last, length) = eventsDatagram(room, from: from, to: end)
        guard outbox.hasRoom(for: length) else { return false }
        putEvents(room, from: &from, to: last, to: slot, into: &outbox)
        return true
    }

    /// As `writeEvents`, for what a member asked to be sent again: false (nothing written)
    /// also when the datagram's bytes are past the member's repair budget. Always inlined,
    /// as `writeEvents`.
    @inline(__always)
    func writeRepair(
        _ room: RoomID, from: inout UInt32, to end: UInt32, to slot: MemberSlot, now: UInt64,
        into outbox: inout Outbox
    ) -> Bool {
        let (last, length) = eventsDatagram(room, from: from, to: end)
        guard outbox.hasRoom(for: length),
            repairByteRate.admit(&roster[slot].repairArrival, now: now, cost: UInt64(length))
        else { return false }
        putEvents(room, from: &from, to: last, to: slot, into: &outbox)
        return true
    }

    /// The events from `from` that fit in one EVENTS datagram (up to `last`, exclusive), and
    /// its length.
    @inline(__always)
    func eventsDatagram(_ room: RoomID, from: UInt32, to end: UInt32) -> (last: UInt32, length: Int) {
        var length = ChatWire.eventsHeaderLength
        var last = from
        while last < end {
            let next = length + Int(backlog[room, last].header.length)
            guard next <= ChatWire.largestDatagram else { break }
            length = next
            last += 1
        }
        return (last, length)
    }

    @inline(__always)
    func putEvents(_ room: RoomID, from: inout UInt32, to last: UInt32, to slot: MemberSlot, into outbox: inout Outbox)
    {
        let start = from
        let member = roster.members + slot.index
        _ = outbox.write(to: member.pointee.peer, from: member.pointee.source, through: member.pointee.socket) { w in
            w.events(tag: member.pointee.tag, instance: instance)
            for seq in start..<last { w.bytes(backlog[room, seq].bytes) }
        }
        from = last
    }
}
