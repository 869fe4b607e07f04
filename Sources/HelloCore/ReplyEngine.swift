/// One datagram as the socket layer hands it to the core.
public struct Request {
    /// The bytes read (all of them, unless `truncated`).
    public var payload: UnsafeRawBufferPointer
    /// The datagram was larger than the receive buffer and the kernel cut it (MSG_TRUNC).
    public var truncated: Bool
    public var peer: PeerAddress

    public init(payload: UnsafeRawBufferPointer, truncated: Bool, peer: PeerAddress) {
        self.payload = payload
        self.truncated = truncated
        self.peer = peer
    }
}

/// The reply rules applied to a batch: checks each request in order, writes its reply into
/// the plan or counts why not. No syscalls, no allocation after `init`.
public struct ReplyEngine: ~Copyable {
    public let rule: ReplyRule
    public private(set) var plan: ReplyPlan
    public private(set) var counters = Counters()

    /// An engine for batches of up to `batchSize` requests of at most `maxDatagram` bytes.
    public init(rule: ReplyRule, batchSize: Int, maxDatagram: Int) {
        self.rule = rule
        let largestReply = min(rule.replyLength(forRequestOf: maxDatagram), 65527)
        self.plan = ReplyPlan(capacity: batchSize, largestReply: largestReply)
    }

    /// Starts a new batch: the previous one's replies have been sent.
    public mutating func beginBatch() {
        plan.removeAll()
    }

    /// Decides the fate of request number `index` of the batch: a reply in the plan, or a
    /// drop counted under its reason.
    public mutating func respond(to request: Request, index: Int) {
        counters.read += 1
        if request.truncated {
            return drop(.truncated)
        }
        let length = rule.replyLength(forRequestOf: request.payload.count)
        guard length <= request.peer.largestPayload, length <= plan.bufferSpace, !plan.isFull else {
            return drop(.replyTooLarge)
        }
        rule.writeReply(to: request.payload, at: plan.nextReply)
        plan.commit(length: length, request: index)
    }

    /// The socket layer's verdict on the plan: how many replies left, how many the kernel
    /// refused.
    public mutating func recordSent(replies: Int, failed: Int) {
        counters.replied += UInt64(replies)
        counters.drops[.sendFailed] += UInt64(failed)
    }

    public mutating func recordQueueOverflows(_ count: UInt64) {
        counters.queueOverflows += count
    }

    private mutating func drop(_ reason: DropReason) {
        counters.drops[reason] += 1
    }
}
