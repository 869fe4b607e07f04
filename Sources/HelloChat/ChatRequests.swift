import HelloChatWire
import HelloDatagram
import HelloService

/// What a member asks, once its token has named it (`ChatRequest` but JOIN, without the token).
enum MemberRequest {
    case say(clientSequence: UInt32, text: UnsafeRawBufferPointer)
    case keepalive(highest: UInt32)
    case leave
    case resend(first: UInt32, count: UInt16)
    case who
    case nick(UnsafeRawBufferPointer)
}

/// How a request ended, for the counters (`handle`).
enum Outcome {
    /// Its answer is the first datagram written for it.
    case answered
    /// Acted on; the answer, if any, is an event to the room.
    case served
    case dropped(CounterID)
}

extension ChatService {
    /// The dispatch: a SAY, the request that comes most, read at its fixed offsets; else
    /// the request parsed, a JOIN to `join`, any other to its member (`serve(_:token:...)`).
    mutating func serve(
        _ bytes: UnsafeRawBufferPointer, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        if let say = ChatSay(bytes) {
            return serve(
                .say(clientSequence: say.clientSequence, text: say.text), token: say.token, tag: say.tag,
                length: bytes.count, datagram, now: now, into: &outbox)
        }
        guard let (tag, request) = ChatRequest.parse(bytes) else {
            return unreadable(bytes, datagram, now: now, into: &outbox)
        }
        let token: UInt64
        let asked: MemberRequest
        switch request {
        case .join(let join): return self.join(join, tag: tag, length: bytes.count, datagram, now: now, into: &outbox)
        case let .say(t, sequence, text): (token, asked) = (t, .say(clientSequence: sequence, text: text))
        case let .keepalive(t, highest): (token, asked) = (t, .keepalive(highest: highest))
        case let .leave(t): (token, asked) = (t, .leave)
        case let .resend(t, first, count): (token, asked) = (t, .resend(first: first, count: count))
        case let .who(t): (token, asked) = (t, .who)
        case let .nick(t, nick): (token, asked) = (t, .nick(nick))
        }
        return serve(asked, token: token, tag: tag, length: bytes.count, datagram, now: now, into: &outbox)
    }

    /// A request with a token: its member found at its own address, then one handler per
    /// request. Always inlined: for the SAY, its own copy, the switch folded away.
    @inline(__always)
    mutating func serve(
        _ asked: MemberRequest, token: UInt64, tag: UInt64, length: Int, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        guard let slot = roster.member(token: token) else {
            // Not longer than the request (every request with a token has at least 18
            // bytes), and rate-limited: a forged source gets little, and not often.
            guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
            notice(to: datagram, into: &outbox) { $0.notAMember(tag: tag, token: token) }
            return .dropped(.chatNotMember)
        }
        guard roster[slot].peer == datagram.peer else {
            return moved(tag: tag, length: length, datagram, now: now, into: &outbox)
        }
        roster[slot].lastHeard = now
        roster[slot].source = datagram.arrival.replySource
        roster[slot].socket = datagram.arrival.socket
        switch asked {
        case let .say(sequence, text): return say(slot, sequence: sequence, text: text, now: now, into: &outbox)
        case let .keepalive(highest): return catchUp(slot, after: highest, now: now, into: &outbox)
        case .leave: return leave(slot)
        case let .resend(first, count): return resend(slot, first: first, count: count, now: now, into: &outbox)
        case .who: return who(slot, now: now, into: &outbox)
        case let .nick(nick): return rename(slot, to: nick, now: now, into: &outbox)
        }
    }

    /// What does not parse: a short JOIN, hellod 1.x's client, or garbage.
    mutating func unreadable(
        _ bytes: UnsafeRawBufferPointer, _ datagram: Datagram, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        if bytes.count >= 2 && bytes[0] == ChatWire.version && bytes[1] == ChatType.join.rawValue
            && bytes.count < ChatWire.joinLength
        {
            return .dropped(.chatShortJoin)
        }
        guard let token = ChatRequest.legacyToken(bytes) else { return .dropped(.chatMalformed) }
        // hellod 1.x's client: told in its own words, never more bytes than it sent.
        guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
        notice(to: datagram, into: &outbox) { $0.legacyRefusal(token: token) }
        return .dropped(.chatOldVersion)
    }

    /// A member's token from another address. Its NAT rebound it, most likely: a challenge
    /// for the new address, with which it rejoins from there (its secret proves it). Not
    /// longer than the request, and limited as any answer to a source not yet proven.
    mutating func moved(tag: UInt64, length: Int, _ datagram: Datagram, now: UInt64, into outbox: inout Outbox)
        -> Outcome
    {
        guard length >= ChatWire.challengeLength else { return .dropped(.chatMoved) }
        guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
        let cookie = credentials.cookie(for: datagram.peer)
        notice(to: datagram, into: &outbox) { $0.challenge(tag: tag, cookie) }
        return .dropped(.chatMoved)
    }

    /// The member is read and changed in place: a copy of it (152 bytes) read and written
    /// back cost more than the checks themselves.
    mutating func say(
        _ slot: MemberSlot, sequence: UInt32, text: UnsafeRawBufferPointer, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        guard text.count <= settings.maxMessage else { return .dropped(.chatMalformed) }
        let room = slot.room
        let m = roster.members + slot.index
        if m.pointee.anySeen && sequence <= m.pointee.highest {
            let distance = m.pointee.highest - sequence
            if distance >= 64 || m.pointee.seen & (1 << UInt64(distance)) != 0 {
                return duplicate(slot, sequence: sequence, into: &outbox)
            }
        }
        var rateArrival = m.pointee.rateArrival
        guard messageRate.admit(&rateArrival, now: now) else { return .dropped(.chatRateLimited) }
        // One delivery per member (silent ones too: a bound, without a walk over the room).
        // After the member's own limit, so that a member over it spends nothing of the
        // room's; refused here, it keeps its own (`rateArrival` is not stored) for the resend.
        guard roomDeliveryRate.admit(&roster[room].deliveryArrival, now: now, cost: UInt64(roster[room].memberCount))
        else {
            return .dropped(.chatRoomRateLimited)
        }
        m.pointee.rateArrival = rateArrival
        if !m.pointee.anySeen {
            (m.pointee.highest, m.pointee.seen, m.pointee.anySeen) = (sequence, 1, true)
        } else if sequence > m.pointee.highest {
            let shift = UInt64(sequence - m.pointee.highest)
            m.pointee.seen = (shift >= 64 ? 0 : m.pointee.seen << shift) | 1
            m.pointee.highest = sequence
        } else {
            m.pointee.seen |= 1 << UInt64(m.pointee.highest - sequence)
        }
        messageSequences.record(roster[room].next, slot: slot.index, clientSequence: sequence)
        appendEvent(
            room, kind: .message, sender: m.pointee.id, clientSequence: sequence, nick: roster.nick(slot), text: text,
            token: m.pointee.token)
        tally[ChatCounter.messages.id] += 1
        return .served
    }

    /// A SAY already delivered: its copy was lost, most likely, so the copy again, from the
    /// backlog. Not rate-limited: one datagram, no longer than the SAY but for the nick and
    /// 14 bytes, to the member's own address, per SAY; and the resends of a client that lost
    /// its copies are what bring them back. Out of the window, where it was is not known:
    /// taken as delivered, as one whose copy the backlog lost.
    mutating func duplicate(_ slot: MemberSlot, sequence: UInt32, into outbox: inout Outbox) -> Outcome {
        let m = roster[slot]
        guard m.highest - sequence < UInt32(MessageSequences.window),
            let copy = ownMessage(
                slot.room, token: m.token, clientSequence: sequence,
                at: messageSequences.roomSequence(slot: slot.index, clientSequence: sequence))
        else { return .dropped(.chatStale) }
        var from = copy
        _ = writeEvents(slot.room, from: &from, to: copy + 1, to: slot, into: &outbox)
        return .answered
    }

    /// `sequence`, if the backlog of `room` still holds it there as the message
    /// `clientSequence` of the member whose token is `token` (else its slot was written over).
    func ownMessage(_ room: RoomID, token: UInt64, clientSequence: UInt32, at sequence: UInt32) -> UInt32? {
        guard sequence &- roster[room].oldest < roster[room].next &- roster[room].oldest else { return nil }
        let event = backlog[room, sequence]
        guard event.header.token == token && event.kind == .message && event.clientSequence == clientSequence
        else { return nil }
        return sequence
    }

    /// A keepalive names the highest room sequence its member received in order: what it
    /// was sent after that (its last datagrams lost, or skipped while it was silent) goes
    /// again, from the backlog, in one datagram at most and within the member's message
    /// rate. The token proved the address, so this amplifies nothing toward anyone else.
    /// 0 is "nothing received yet": nothing to go on.
    mutating func catchUp(_ slot: MemberSlot, after highest: UInt32, now: UInt64, into outbox: inout Outbox) -> Outcome
    {
        let end = roster[slot].nextToSend  // what comes later goes out at the batch's end
        var from = max(highest &+ 1, roster[slot.room].oldest)
        if highest != 0, highest < end, from < end,
            messageRate.admit(&roster[slot].catchUpArrival, now: now),
            writeRepair(slot.room, from: &from, to: end, to: slot, now: now, into: &outbox)
        {
            pending.deliveries += 1
        }
        return .served
    }

    mutating func leave(_ slot: MemberSlot) -> Outcome {
        let m = roster[slot]
        appendEvent(
            slot.room, kind: .left, sender: m.id, clientSequence: 0, nick: roster.nick(slot),
            text: UnsafeRawBufferPointer(start: nil, count: 0), token: m.token)
        remove(slot)
        return .served
    }

    /// Up to `maxResend` datagrams for a request of 18 bytes, to the member's own address:
    /// within the budget of its keepalives' catch-up (the message rate), which a client
    /// asking once per gap and backing off stays well under; and as many whole datagrams as
    /// its repair bytes allow.
    mutating func resend(_ slot: MemberSlot, first: UInt32, count: UInt16, now: UInt64, into outbox: inout Outbox)
        -> Outcome
    {
        let room = slot.room
        var from = max(first, roster[room].oldest)
        let end = UInt32(min(UInt64(first) + UInt64(count), UInt64(roster[room].next)))
        guard from < end else { return .dropped(.chatStale) }
        guard messageRate.admit(&roster[slot].catchUpArrival, now: now) else { return .dropped(.chatRateLimited) }
        var written = 0
        while from < end && writeRepair(room, from: &from, to: end, to: slot, now: now, into: &outbox) {
            written += 1
        }
        guard written > 0 else { return .dropped(.chatRateLimited) }
        pending.deliveries += written - 1
        return .answered
    }

    /// The room's nicks, as many as fit in one datagram. Up to 1232 bytes for a request of
    /// 10: within the catch-up budget, as RESEND.
    mutating func who(_ slot: MemberSlot, now: UInt64, into outbox: inout Outbox) -> Outcome {
        guard messageRate.admit(&roster[slot].catchUpArrival, now: now) else { return .dropped(.chatRateLimited) }
        let room = slot.room
        let m = roster[slot]
        var count = 0
        var length = ChatWire.headerLength + 8 + 2
        for other in roster.memberSlots(of: room) {
            let next = length + 1 + Int(roster[other].nickLength)
            if next > ChatWire.largestDatagram { break }
            length = next
            count += 1
        }
        _ = outbox.write(to: m.peer, from: m.source, through: m.socket) { w in
            w.members(tag: m.tag, instance: instance, count: UInt16(min(count, roster[room].memberCount)))
            for other in roster.memberSlots(of: room).prefix(count) { w.string(roster.nick(other)) }
        }
        return .answered
    }

    mutating func rename(
        _ slot: MemberSlot, to newNick: UnsafeRawBufferPointer, now: UInt64,
        into outbox: inout Outbox
    ) -> Outcome {
        let room = slot.room
        if let refusal = roster.nameRefusal(newNick, in: room, except: slot) {
            let tag = roster[slot].tag
            notice(to: slot, into: &outbox) { $0.refused(tag: tag, refusal) }
            return .dropped(.chatBadName)
        }
        // A rename reaches every member, as a message does: it spends as one.
        var m = roster[slot]
        guard messageRate.admit(&m.rateArrival, now: now) else { return .dropped(.chatRateLimited) }
        guard roomDeliveryRate.admit(&roster[room].deliveryArrival, now: now, cost: UInt64(roster[room].memberCount))
        else {
            return .dropped(.chatRoomRateLimited)
        }
        roster[slot] = m
        appendEvent(
            room, kind: .renamed, sender: m.id, clientSequence: 0, nick: roster.nick(slot), text: newNick,
            token: m.token)
        roster.setNick(slot, newNick)
        return .served
    }
}
