/// Why a datagram that hellod read got no reply. Every datagram read is either replied to
/// or counted under exactly one of these: the first check that fails names it.
public enum DropReason: Int, Sendable, CaseIterable {
    /// Larger than `--max-datagram`: the kernel cut it (MSG_TRUNC); a cut copy is no answer.
    case truncated
    /// The reply would not fit in one UDP datagram to this peer.
    case replyTooLarge
    /// The kernel refused the reply (a full send buffer past the retries, an unreachable
    /// destination, a firewall rule).
    case sendFailed

    /// The name operators see in the status line, the stop line and the JSON counters.
    public var name: String {
        switch self {
        case .truncated: return "truncated"
        case .replyTooLarge: return "reply-too-large"
        case .sendFailed: return "send-failed"
        }
    }
}

/// Drop counts by reason, in fixed storage: counting never allocates.
public struct DropCounts: Sendable, Equatable {
    private var truncated: UInt64 = 0
    private var replyTooLarge: UInt64 = 0
    private var sendFailed: UInt64 = 0

    public init() {}

    public subscript(reason: DropReason) -> UInt64 {
        get {
            switch reason {
            case .truncated: return truncated
            case .replyTooLarge: return replyTooLarge
            case .sendFailed: return sendFailed
            }
        }
        set {
            switch reason {
            case .truncated: truncated = newValue
            case .replyTooLarge: replyTooLarge = newValue
            case .sendFailed: sendFailed = newValue
            }
        }
    }

    public var total: UInt64 {
        DropReason.allCases.reduce(0) { $0 + self[$1] }
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
    /// Datagrams the kernel dropped because the receive queue was full (SO_RXQ_OVFL),
    /// since this worker started. They were never read, so they are not in `read`.
    public var queueOverflows: UInt64 = 0

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
        for reason in DropReason.allCases {
            sum.drops[reason] += b.drops[reason]
        }
        return sum
    }
}
