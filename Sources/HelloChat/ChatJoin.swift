import HelloChatWire
import HelloDatagram
import HelloService

extension ChatService {
    /// A JOIN: a challenge until the source has shown, with a cookie, that it receives at its
    /// address; then the member it is already (`rejoin`), or a new one (`admit`).
    mutating func join(
        _ join: ChatJoin, tag: UInt64, length: Int, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        guard length >= ChatWire.joinLength else { return .dropped(.chatShortJoin) }
        guard credentials.isValid(join.cookie, for: datagram.peer) else {
            guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
            let cookie = credentials.cookie(for: datagram.peer)
            if join.cookie.isNone {
                _ = outbox.write(
                    limit: length, to: datagram.peer, from: datagram.arrival.replySource,
                    through: datagram.arrival.socket
                ) { $0.challenge(tag: tag, cookie) }
                return .answered
            }
            notice(to: datagram, into: &outbox) { $0.challenge(tag: tag, cookie) }
            return .dropped(.chatBadCookie)
        }
        // The source receives at its address: from here on it may be answered in full.
        let id = join.secret.id  // a SHA-256: once
        if join.token != 0, let slot = roster.member(token: join.token) {
            return rejoin(slot, id: id, tag: tag, datagram, now: now, into: &outbox)
        }
        guard ChatWire.isValidName(join.room) else {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, .badName) }
            return .dropped(.chatBadName)
        }
        let nameHash = roster.roomNameHash(join.room)
        let found = roster.room(named: join.room, hash: nameHash)
        if let found {
            // A JOIN repeated because its WELCOME was lost: the member it made.
            for slot in roster.memberSlots(of: found)
            where roster[slot].id == id && roster[slot].peer == datagram.peer {
                welcome(slot, into: &outbox)
                return .answered
            }
        }
        if let (refusal, reason) = joinRefusal(join, in: found, datagram.peer) {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, refusal) }
            return .dropped(reason)
        }
        // Everything else allows it: it is a join, announced to the room, within the
        // prefix's joins per second (not answered past them: the client tries again).
        guard joins.allow(datagram.peer, now: now) else { return .dropped(.chatJoinRateLimited) }
        admit(
            join, id: id, tag: tag, to: found ?? openRoom(join.room, hash: nameHash), datagram, now: now, into: &outbox)
        return .answered
    }

    /// The member's address changed (NAT rebinding), or its WELCOME was lost: the same
    /// member, silently at its new address, if the secret is its own (the token travels in
    /// every datagram, the secret only in JOIN). Its membership is counted under the new
    /// address's prefix from now on, even past `membershipsPerPrefix`: the limit is on
    /// making memberships, and this one exists already.
    mutating func rejoin(
        _ slot: MemberSlot, id: UInt64, tag: UInt64, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        guard roster[slot].id == id else { return .dropped(.chatBadToken) }
        roster.move(slot, to: datagram.peer)
        roster[slot].source = datagram.arrival.replySource
        roster[slot].socket = datagram.arrival.socket
        roster[slot].tag = tag
        roster[slot].lastHeard = now
        welcome(slot, into: &outbox)
        return .answered
    }

    /// Why a new member may not join `room` (nil: the room to be opened), from `peer`: its
    /// nick, its prefix's memberships, a full room, no room left. Always inlined, as
    /// `welcome`: called from a mutating method, a call was handed a copy of the service.
    @inline(__always)
    func joinRefusal(_ join: ChatJoin, in room: RoomID?, _ peer: Endpoint) -> (ChatRefusal, CounterID)? {
        if let refusal = roster.nameRefusal(join.nick, in: room) { return (refusal, .chatBadName) }
        if roster.memberships(of: peer) >= settings.membershipsPerPrefix { return (.tooManyMemberships, .chatRoomFull) }
        if let room, roster[room].memberCount >= roster.perRoom { return (.roomFull, .chatRoomFull) }
        if room == nil && !roster.hasFreeRoom { return (.tooManyRooms, .chatRoomFull) }
        return nil
    }

    /// A room for the name `name`, its first event after every event the relay has numbered.
    mutating func openRoom(_ name: UnsafeRawBufferPointer, hash: UInt64) -> RoomID {
        tally[ChatCounter.rooms.id] += 1
        return roster.openRoom(named: name, hash: hash, first: issued &+ 1)
    }

    /// A new member of `room`: its WELCOME, the room's history, then "joined" to everyone,
    /// the joiner included.
    mutating func admit(
        _ join: ChatJoin, id: UInt64, tag: UInt64, to room: RoomID, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) {
        let member = ChatRoster.Member(
            token: newToken(), peer: datagram.peer, source: datagram.arrival.replySource,
            socket: datagram.arrival.socket, id: id, tag: tag, lastHeard: now,
            rateArrival: 0, nextToSend: roster[room].next)
        let slot = roster.add(member, nick: join.nick, to: room)
        tally[ChatCounter.members.id] += 1
        tally[ChatCounter.joins.id] += 1
        welcome(slot, into: &outbox)
        let next = roster[room].next
        var from = max(roster[room].oldest, next >= UInt32(historyCount) ? next - UInt32(historyCount) : 0)
        while from < next && writeEvents(room, from: &from, to: next, to: slot, into: &outbox) {
            pending.deliveries += 1
        }
        appendEvent(
            room, kind: .joined, sender: member.id, clientSequence: 0, nick: roster.nick(slot),
            text: UnsafeRawBufferPointer(start: nil, count: 0), token: member.token)
    }

    @inline(__always)
    func welcome(_ slot: MemberSlot, into outbox: inout Outbox) {
        let m = roster[slot]
        let room = roster[slot.room]
        _ = outbox.write(to: m.peer, from: m.source, through: m.socket) {
            $0.welcome(
                tag: m.tag, token: m.token, instance: instance, nextSequence: room.next,
                members: UInt16(room.memberCount))
        }
    }
}
