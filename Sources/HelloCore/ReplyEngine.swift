/// One datagram as the socket layer hands it to the core.
public struct Request {
    /// The bytes read: `payload`, then `continuation`. The socket layer reads the first
    /// bytes of every datagram into small buffers side by side (so small datagrams touch few
    /// pages) and the rest, if any, into a large one: only datagrams longer than that first
    /// part have a continuation.
    public var payload: UnsafeRawBufferPointer
    public var continuation: UnsafeRawBufferPointer
    /// The datagram was larger than the receive buffer and the kernel cut it (MSG_TRUNC).
    public var truncated: Bool
    public var peer: PeerAddress

    public init(payload: UnsafeRawBufferPointer, continuation: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                truncated: Bool, peer: PeerAddress) {
        self.payload = payload
        self.continuation = continuation
        self.truncated = truncated
        self.peer = peer
    }

    /// How many bytes were read.
    public var length: Int { payload.count + continuation.count }
}

/// The reply rules applied to a batch: checks each request in order, writes its reply into
/// the plan or counts why not. No syscalls, no allocation after `init`.
///
/// The checks, in order; the first that fails names the drop: truncated, privileged source
/// port, own port, rate limited, reply too large. (The socket layer adds send failed.)
public struct ReplyEngine: ~Copyable {
    public let rule: ReplyRule
    public let policy: AdmissionPolicy
    public private(set) var plan: ReplyPlan
    public private(set) var counters = Counters()
    private var limiter: RateLimiter?
    private var now: UInt64 = 0

    /// An engine for batches of up to `batchSize` requests of at most `maxDatagram` bytes.
    public init(rule: ReplyRule, batchSize: Int, maxDatagram: Int, policy: AdmissionPolicy = AdmissionPolicy()) {
        self.rule = rule
        self.policy = policy
        let largestReply = min(rule.replyLength(forRequestOf: maxDatagram), 65527)
        self.plan = ReplyPlan(capacity: batchSize, largestReply: largestReply)
        self.limiter = policy.rateLimit.map { RateLimiter($0) }
    }

    /// Starts a new batch, read at `now` (monotonic nanoseconds): the previous one's
    /// replies have been sent.
    public mutating func beginBatch(now: UInt64) {
        plan.removeAll()
        self.now = now
    }

    /// Decides the fate of request number `index` of the batch: a reply in the plan, or a
    /// drop counted under its reason.
    public mutating func respond(to request: Request, index: Int) {
        counters.read += 1
        if let reason = refusal(of: request) {
            counters.drops[reason] += 1
            return
        }
        let length = rule.replyLength(forRequestOf: request.length)
        guard length <= request.peer.largestPayload, length <= plan.bufferSpace, !plan.isFull else {
            counters.drops[.replyTooLarge] += 1
            return
        }
        rule.writeReply(to: request.payload, continuation: request.continuation, at: plan.nextReply)
        plan.commit(length: length, request: index)
    }

    /// Why `request` gets no answer, or nil.
    @inline(__always)
    private mutating func refusal(of request: Request) -> DropReason? {
        if request.truncated {
            return .truncated
        }
        let port = request.peer.port
        if port < 1024 && !policy.allowPrivilegedSourcePorts {
            return .privilegedSourcePort
        }
        if !policy.allowOwnPorts && policy.ownPorts.contains(port) {
            return .ownPort
        }
        if limiter != nil && (policy.limitLoopback || !request.peer.isLoopback) && !limiter!.allow(request.peer, now: now) {
            return .rateLimited
        }
        return nil
    }

    /// The socket layer's verdict on the plan: how many replies left, how many the kernel
    /// refused.
    public mutating func recordSent(replies: Int, failed: Int) {
        counters.replied += UInt64(replies)
        counters.drops[.sendFailed] += UInt64(failed)
    }

}
