/// Why a datagram that hellod read got no reply. Every datagram read is either replied to
/// or counted under exactly one of these: the first check that fails names it.
public enum DropReason: Int, Sendable, CaseIterable {
    /// Larger than `--max-datagram`: the kernel cut it (MSG_TRUNC); a cut copy is no answer.
    case truncated
    /// Sent to a broadcast (limited or directed) or multicast address: never answered.
    case broadcastOrMulticast
    /// From a source port below 1024 (or 0), where the services a reply could be bounced
    /// into live.
    case privilegedSourcePort
    /// From a port hellod itself listens on: another hellod, maybe, and the start of a loop.
    case ownPort
    /// Over the per-source rate limit (or the limiter's table was full of busy sources).
    case rateLimited
    /// The reply would not fit in one UDP datagram to this peer.
    case replyTooLarge
    /// The kernel refused the reply (a full send buffer past the retries, an unreachable
    /// destination, a firewall rule).
    case sendFailed
    /// chat: not a chat request (another version, a relay's type, fields past the end,
    /// a text over the limit), or longer than any chat request.
    case chatMalformed
    /// chat: a request of protocol version 1 (hellod 1.x's clients): refused in that
    /// version's format, so that such a client stops with one line.
    case chatOldVersion
    /// chat: a JOIN shorter than 64 bytes, which a challenge would amplify.
    case chatShortJoin
    /// chat: a JOIN whose cookie is forged, expired or another address's; it is
    /// challenged again, and nothing is stored.
    case chatBadCookie
    /// chat: a member's token from an address that is not the member's (a NAT rebinding,
    /// or someone who saw the token): not acted on, but answered with a challenge for that
    /// address, with which the member rejoins from there.
    case chatMoved
    /// chat: a JOIN with a member's token whose secret is not the member's (someone who saw
    /// the token in clear, but not the secret): ignored.
    case chatBadToken
    /// chat: a token the relay does not know (restarted, or evicted it): NOT A MEMBER.
    case chatNotMember
    /// chat: a JOIN refused for a table limit: the room is full, there are as many rooms
    /// as allowed, or the source's prefix has as many memberships as allowed (REFUSED).
    case chatRoomFull
    /// chat: a JOIN or NICK with an invalid or taken name (REFUSED).
    case chatBadName
    /// chat: over a limit of its own: challenges and NOT A MEMBER answers per source
    /// address and port, and the relay's cap on them; messages, and RESENDs, per member.
    case chatRateLimited
    /// chat: a message over its room's deliveries per second (one per member of the room):
    /// the client resends it, so it comes later.
    case chatRoomRateLimited
    /// chat: a JOIN that would make a membership past its source prefix's joins per
    /// second (leaving and joining again, in a loop, would flood the room with
    /// announcements): the client tries again.
    case chatJoinRateLimited
    /// chat: a duplicate message or a RESEND that the backlog no longer holds.
    case chatStale
    /// chat: read by one worker for a room another owns, whose queue from this worker
    /// was full (the owner is that far behind): never waited for, never lost silently.
    case chatHandoverFull

    /// The name operators see in the status line, the stop line and the JSON counters.
    public var name: String {
        switch self {
        case .truncated: return "truncated"
        case .broadcastOrMulticast: return "broadcast-or-multicast"
        case .privilegedSourcePort: return "privileged-source-port"
        case .ownPort: return "own-port"
        case .rateLimited: return "rate-limited"
        case .replyTooLarge: return "reply-too-large"
        case .sendFailed: return "send-failed"
        case .chatMalformed: return "chat-malformed"
        case .chatOldVersion: return "chat-old-version"
        case .chatShortJoin: return "chat-short-join"
        case .chatBadCookie: return "chat-bad-cookie"
        case .chatMoved: return "chat-moved"
        case .chatBadToken: return "chat-bad-token"
        case .chatNotMember: return "chat-not-member"
        case .chatRoomFull: return "chat-room-full"
        case .chatBadName: return "chat-bad-name"
        case .chatRateLimited: return "chat-rate-limited"
        case .chatRoomRateLimited: return "chat-room-rate-limited"
        case .chatJoinRateLimited: return "chat-join-rate-limited"
        case .chatStale: return "chat-stale"
        case .chatHandoverFull: return "chat-handover-full"
        }
    }
}

/// Drop counts by reason, in fixed storage: counting never allocates.
public struct DropCounts: Sendable, Equatable {
    /// Room for 24 reasons; a new reason must not outgrow it.
    private var counts:
        (
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
        ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    static let room = 24

    public init() {
        assert(DropReason.allCases.count <= Self.room)
    }

    public subscript(reason: DropReason) -> UInt64 {
        get {
            withUnsafeBytes(of: counts) { $0.load(fromByteOffset: reason.rawValue * 8, as: UInt64.self) }
        }
        set {
            withUnsafeMutableBytes(of: &counts) {
                $0.storeBytes(of: newValue, toByteOffset: reason.rawValue * 8, as: UInt64.self)
            }
        }
    }

    public var total: UInt64 {
        DropReason.allCases.reduce(0) { $0 + self[$1] }
    }

    public static func == (a: DropCounts, b: DropCounts) -> Bool {
        DropReason.allCases.allSatisfy { a[$0] == b[$0] }
    }
}

/// What one worker has done since it started. Plain integers, owned by one thread; the
/// server publishes a copy after every batch for whoever reports status.
public struct Counters: Sendable, Equatable {
    /// Datagrams read from the socket.
    public var read: UInt64 = 0
    /// Requests answered: their reply left through the kernel.
    public var replied: UInt64 = 0
    public var drops = DropCounts()
    /// Datagrams the kernel dropped on this worker's socket since hellod started (a full
    /// receive queue, mostly; read with SO_MEMINFO). They were never read, so they are not
    /// in `read`: what was sent = read + these, once the queue is empty.
    public var queueOverflows: UInt64 = 0
    /// Datagrams sent beyond one reply per request, which `replied` does not count: chat's
    /// events to the members of a room, history on join, the further datagrams of a
    /// long answer, and the notices that tell a refused source why (REFUSED, NOT A
    /// MEMBER, a fresh CHALLENGE).
    public var deliveries: UInt64 = 0
    /// Those the kernel refused.
    public var deliveryFailures: UInt64 = 0
    /// The chat relay's rooms and members; zero for the other services.
    public var chat = ChatFigures()

    public init() {}

    /// Every datagram read is replied or dropped for a named reason; a request whose reply
    /// is still in a batch being sent is the only other state, and it lasts one batch.
    public var isBalanced: Bool {
        read == replied + drops.total
    }

    public static func + (a: Counters, b: Counters) -> Counters {
        var sum = a
        sum.read += b.read
        sum.replied += b.replied
        sum.queueOverflows += b.queueOverflows
        sum.deliveries += b.deliveries
        sum.deliveryFailures += b.deliveryFailures
        sum.chat = a.chat + b.chat
        for reason in DropReason.allCases {
            sum.drops[reason] += b.drops[reason]
        }
        return sum
    }
}

/// The chat relay's figures, kept up by the relay as members come and go: two gauges
/// (what is in use now) and three counters. Each room is one relay's, so the sums over
/// workers are hellod's.
public struct ChatFigures: Sendable, Equatable {
    /// Rooms with at least one member, and members in them, now.
    public var rooms: UInt64 = 0
    public var members: UInt64 = 0
    /// Messages accepted into a room (each then delivered to every member).
    public var messages: UInt64 = 0
    /// Members that joined, and that left: by LEAVE or evicted after their silence.
    public var joins: UInt64 = 0
    public var leaves: UInt64 = 0

    public init() {}

    public static func + (a: ChatFigures, b: ChatFigures) -> ChatFigures {
        var sum = a
        sum.rooms += b.rooms
        sum.members += b.members
        sum.messages += b.messages
        sum.joins += b.joins
        sum.leaves += b.leaves
        return sum
    }
}
