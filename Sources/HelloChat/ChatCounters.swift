import HelloService

/// The chat relay's counters, declared once: its drop reasons, then its figures. The
/// status, stop and SIGHUP lines, the journal fields and the metrics file list them from
/// here (`ChatCounter.schema`).
package enum ChatCounter: Int, ServiceCounter {
    case malformed, oldVersion, shortJoin, badCookie, moved, badToken, notMember, roomFull, badName
    case rateLimited, roomRateLimited, joinRateLimited, stale, handoverFull
    case rooms, members, messages, joins, leaves

    package var spec: CounterSpec {
        switch self {
        case .malformed:
            .drop(
                "chat-malformed",
                "Not a chat request (another version, a relay's type, fields past the end, a text over the limit), or longer than any chat request."
            )
        case .oldVersion:
            .drop(
                "chat-old-version",
                "A request of protocol version 1 (hellod 1.x's clients): refused in that version's format, so that such a client stops with one line."
            )
        case .shortJoin: .drop("chat-short-join", "A JOIN shorter than 64 bytes, which a challenge would amplify.")
        case .badCookie:
            .drop(
                "chat-bad-cookie",
                "A JOIN whose cookie is forged, expired or another address's; it is challenged again, and nothing is stored."
            )
        case .moved:
            .drop(
                "chat-moved",
                "A member's token from an address that is not the member's (a NAT rebinding, or someone who saw the token): not acted on, but answered with a challenge for that address."
            )
        case .badToken:
            .drop(
                "chat-bad-token",
                "A JOIN with a member's token whose secret is not the member's (someone who saw the token in clear, but not the secret): ignored."
            )
        case .notMember:
            .drop("chat-not-member", "A token the relay does not know (restarted, or evicted it): NOT A MEMBER.")
        case .roomFull:
            .drop(
                "chat-room-full",
                "A JOIN refused for a table limit: the room is full, there are as many rooms as allowed, or the source's prefix has as many memberships as allowed (REFUSED)."
            )
        case .badName: .drop("chat-bad-name", "A JOIN or NICK with an invalid or taken name (REFUSED).")
        case .rateLimited:
            .drop(
                "chat-rate-limited",
                "Over a limit of its own: challenges and NOT A MEMBER answers per source address and port, and the relay's cap on them; messages, and RESENDs, per member."
            )
        case .roomRateLimited:
            .drop(
                "chat-room-rate-limited",
                "A message over its room's deliveries per second (one per member of the room): the client resends it, so it comes later."
            )
        case .joinRateLimited:
            .drop(
                "chat-join-rate-limited",
                "A JOIN that would make a membership past its source prefix's joins per second: the client tries again."
            )
        case .stale: .drop("chat-stale", "A duplicate message or a RESEND that the backlog no longer holds.")
        case .handoverFull:
            CounterSpec(
                name: "chat-handover-full",
                help:
                    "Read by one worker for a room another owns, whose queue from this worker was full (the owner is that far behind): never waited for, never lost silently.",
                role: .handoverFull)
        case .rooms: .figure("rooms", .gauge, "Chat rooms with members now.")
        case .members: .figure("members", .gauge, "Members in chat rooms now.")
        case .messages:
            .figure("messages", .counter, "Chat messages accepted into a room, each delivered to its members.")
        case .joins: .figure("joins", .counter, "Members that joined a chat room.")
        case .leaves: .figure("leaves", .counter, "Members that left a chat room, or were evicted after their silence.")
        }
    }

    /// What the lines show after the chat's drops: `, rooms 1, members 2, messages 5,
    /// deliveries 10`; joins and leaves, at debug, as they change.
    package static let schema = CounterSchema(
        ChatCounter.self, summary: [rooms.id, members.id, messages.id, .deliveries],
        progressNote: { now, seen in
            let (joins, leaves) = (now[ChatCounter.joins.id], now[ChatCounter.leaves.id])
            let (seenJoins, seenLeaves) = (seen.value(named: "joins"), seen.value(named: "leaves"))
            guard joins != seenJoins || leaves != seenLeaves else { return nil }
            return
                "chat: \(joins - seenJoins) joined, \(leaves - seenLeaves) left since the last status; rooms \(now[ChatCounter.rooms.id]), members \(now[ChatCounter.members.id])"
        })
}

extension CounterID {
    package static var chatMalformed: CounterID { ChatCounter.malformed.id }
    package static var chatOldVersion: CounterID { ChatCounter.oldVersion.id }
    package static var chatShortJoin: CounterID { ChatCounter.shortJoin.id }
    package static var chatBadCookie: CounterID { ChatCounter.badCookie.id }
    package static var chatMoved: CounterID { ChatCounter.moved.id }
    package static var chatBadToken: CounterID { ChatCounter.badToken.id }
    package static var chatNotMember: CounterID { ChatCounter.notMember.id }
    package static var chatRoomFull: CounterID { ChatCounter.roomFull.id }
    package static var chatBadName: CounterID { ChatCounter.badName.id }
    package static var chatRateLimited: CounterID { ChatCounter.rateLimited.id }
    package static var chatRoomRateLimited: CounterID { ChatCounter.roomRateLimited.id }
    package static var chatJoinRateLimited: CounterID { ChatCounter.joinRateLimited.id }
    package static var chatStale: CounterID { ChatCounter.stale.id }
    package static var chatHandoverFull: CounterID { ChatCounter.handoverFull.id }
}

/// The chat relay's figures, read from its counters: two gauges (what is in use now) and
/// three counters. Each room is one relay's, so the sums over workers are hellod's.
package struct ChatFigures: Sendable, Equatable {
    package var rooms: UInt64 = 0
    package var members: UInt64 = 0
    package var messages: UInt64 = 0
    package var joins: UInt64 = 0
    package var leaves: UInt64 = 0
}

extension Counters {
    /// The chat relay's figures; zero for the other services.
    package var chat: ChatFigures {
        ChatFigures(
            rooms: value(named: "rooms"), members: value(named: "members"), messages: value(named: "messages"),
            joins: value(named: "joins"), leaves: value(named: "leaves"))
    }
}
