import HelloChatWire
import HelloDatagram
import HelloService

/// The chat relay (docs/PROTOCOL.md, "chat"): rooms of members, every message delivered to
/// every member, sender included, in one order per room.
///
/// Nothing is stored for a source until it has shown, with a cookie, that it receives at its
/// address; until then it gets nothing longer than what it sent. Every table is allocated in
/// `init`; a datagram allocates nothing. Events of a batch are sent at its end
/// (`endBatch`), several to one member in one datagram.
///
/// Counting: a request whose answer is a datagram of its own (CHALLENGE, WELCOME, MEMBERS,
/// a RESEND's events, a duplicate's copy) is `replied` once the kernel takes that datagram
/// (or dropped as send-failed); one whose answer is an event to the room (SAY, LEAVE, NICK)
/// or nothing (KEEPALIVE, whose catch-up is deliveries) is `replied` when handled; any
/// refusal is a drop under its reason. Every other datagram sent is a delivery. The kernel
/// says how many datagrams of a send failed, not which: failures are counted against the
/// outbox's replies first.
///
/// Its parts: `ChatCredentials` (cookies, tokens), `ChatRoster` (rooms, members),
/// `ChatBacklog` (each room's last events); the requests (ChatRequests.swift, ChatJoin.swift),
/// the fan-out (ChatFanOut.swift) and the eviction sweep (ChatSweep.swift).
public struct ChatService: DatagramService, ~Copyable {
    public let outboxCapacity: Int
    public let largestDatagram = ChatWire.largestDatagram
    public var tickInterval: UInt64? { 100_000_000 }
    public var counters: Counters { tally }
    @inlinable public mutating func withCounters<R>(_ body: (inout Counters) -> R) -> R { body(&tally) }
    /// A message costs a send to every member: the worker sleeps at once when idle.
    public var pollsAfterTraffic: Bool { false }

    @usableFromInline var tally = Counters(schema: ChatCounter.schema)
    var admission: Admission
    var answers: UnprovenAnswers
    var joins: RateLimiter
    @usableFromInline let settings: ChatSettings
    /// Each member's message rate limit; also of what it is sent again on request.
    let messageRate: CellRate
    /// Each room's limit on deliveries.
    let roomDeliveryRate: CellRate
    /// Each member's limit on the bytes it is sent again on request, one cell a byte.
    let repairByteRate: CellRate
    let instance: UInt64
    /// Places rooms among several workers.
    @usableFromInline let roomKey: SipHasher.Key
    var credentials: ChatCredentials
    let historyCount: Int
    /// A room's unsent events, below which the fan-out interval may hold them back: one
    /// more batch (and a round of evictions) then still fits in the backlog.
    let holdLimit: UInt32
    /// Every event the relay has numbered: a new room starts after all of them, so that
    /// (instance, room sequence) never repeats.
    var issued: UInt32 = 0

    var roster: ChatRoster
    var backlog: ChatBacklog
    /// Each member's last messages' room sequences, for its duplicates' copies.
    var messageSequences: MessageSequences
    /// The eviction sweep: where the last tick stopped (a word of `occupied`), and how many
    /// steps a tick may take (empty rooms skipped, a word read, a member looked at).
    var sweepPosition = 0
    package var sweepBudget = 65_536
    var dirty: DirtyRooms
    /// When the first held room may be sent (nil: none is held).
    public internal(set) var sendDue: UInt64?
    /// A datagram read in two parts, made one.
    @usableFromInline let scratch: UnsafeMutableRawPointer
    /// What the outbox holds, by kind, for `recordSent`.
    var pending = (replies: 0, deliveries: 0)

    public init(_ service: ServiceSettings, chat: ChatSettings) {
        var s = chat
        precondition(s.rooms > 0 && s.membersPerRoom > 0 && s.membersPerRoom <= 4096 && s.rooms <= 65536)
        precondition(s.maxMessage >= 0 && s.maxMessage <= ChatWire.maxText)
        precondition(s.epochSeconds > 0 && s.silenceSeconds > 0 && s.evictSeconds > 0)
        precondition(s.workers >= 1 && s.workers <= 256 && s.worker >= 0 && s.worker < s.workers)
        s.history = max(0, min(s.history, 1024))
        settings = s
        let keys = ChatKeys(secret: s.secret)
        messageRate = CellRate(rate: max(s.messageRate, 1), burst: max(s.messageBurst, 1))
        roomDeliveryRate = CellRate(
            rate: max(s.roomDeliveryRate, 1), burst: max(s.roomDeliveryBurst, UInt64(s.membersPerRoom)))
        repairByteRate = CellRate(
            rate: max(s.repairByteRate, 1), burst: max(s.repairByteBurst, UInt64(ChatWire.largestDatagram)))
        let backlogLength = Self.backlogLength(service, chat: chat)
        historyCount = s.history
        holdLimit = UInt32(max(backlogLength - service.batchSize - s.membersPerRoom, 0))
        // Room for one request's largest answer (WELCOME and history, or a RESEND), and
        // for a batch's worth of single answers.
        outboxCapacity = max(service.batchSize, 1 + s.history, ChatWire.maxResend)
        // hello's and echo's per-source limit is not the relay's: counted per address, a
        // forger on other ports of a member's address would spend it and drop the member's
        // own datagrams. Every answer the relay sends has a budget of its own instead: per
        // endpoint before proof (`answers`), per member and per room after.
        var policy = service.policy
        policy.rateLimit = nil
        admission = Admission(policy)
        answers = UnprovenAnswers(
            perEndpoint: s.answerLimit, relayCap: s.unprovenAnswerCap,
            seed: keys.word(.answerBudgetSeed))
        var joinLimit = s.joinLimit
        (joinLimit.ipv4PrefixLength, joinLimit.ipv6PrefixLength) = (s.ipv4PrefixLength, s.ipv6PrefixLength)
        joins = RateLimiter(joinLimit, seed: keys.word(.joinLimiterSeed))
        instance = keys.word(.instance)
        roomKey = keys.key(.roomPlacement)
        credentials = ChatCredentials(keys: keys, epochSeconds: s.epochSeconds, workers: s.workers, worker: s.worker)
        roster = ChatRoster(
            rooms: s.rooms, perRoom: s.membersPerRoom, keys: keys,
            prefixLengths: (s.ipv4PrefixLength, s.ipv6PrefixLength))
        backlog = ChatBacklog(rooms: s.rooms, length: backlogLength, maxMessage: s.maxMessage)
        messageSequences = MessageSequences(slots: s.rooms * s.membersPerRoom)
        dirty = DirtyRooms(capacity: s.rooms)
        scratch = .allocate(byteCount: ChatWire.largestDatagram, alignment: 8)
    }

    deinit {
        scratch.deallocate()
    }

    /// Events each room keeps: the backlog asked for, and at least the history, a batch
    /// past a full room's fan-out (`holdLimit`) and one RESEND's.
    static func backlogLength(_ service: ServiceSettings, chat s: ChatSettings) -> Int {
        return max(s.backlog, min(max(s.history, 0), 1024), service.batchSize + s.membersPerRoom, ChatWire.maxResend, 1)
    }

    /// The bytes of address space the relay's tables take, all allocated at start (a page
    /// that no member or event has touched costs no memory): what hellod checks against
    /// the machine before it starts, so that settings too large for it are refused in one
    /// line rather than failing an allocation.
    public static func tableBytes(_ service: ServiceSettings, chat s: ChatSettings) -> Int {
        return ChatRoster.bytes(rooms: s.rooms, perRoom: s.membersPerRoom)
            + ChatBacklog.bytes(rooms: s.rooms, length: backlogLength(service, chat: s), maxMessage: s.maxMessage)
            + MessageSequences.bytes(slots: s.rooms * s.membersPerRoom)
    }

    // MARK: Datagrams

    /// How many datagrams the answer to a request of `type` may take at most: the outbox
    /// must have room for them before anything changes.
    func answerBound(_ type: UInt8) -> Int {
        switch type {  // the raw byte: a `ChatType` made of it first was a call of its own
        case ChatType.join.rawValue: return 1 + historyCount
        case ChatType.resend.rawValue: return ChatWire.maxResend
        default: return 1
        }
    }

    public mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool {
        let type: UInt8 = datagram.payload.count >= 2 ? datagram.payload[1] : 0
        let bound = answerBound(type)
        if !outbox.isEmpty
            && !(outbox.count + bound <= outbox.capacity
                && outbox.bufferUsed + bound * largestDatagram <= outbox.bufferCapacity)
        {
            return false
        }
        tally.read += 1
        if let reason = admission.refusal(of: datagram, now: now) {
            tally[reason] += 1
            return true
        }
        guard datagram.length <= ChatWire.largestDatagram else {
            tally[.chatMalformed] += 1
            return true
        }
        credentials.refresh(now)
        switch serve(Self.whole(datagram, scratch: scratch), datagram, now: now, into: &outbox) {
        case .answered: pending.replies += 1
        case .served: tally.replied += 1
        case .dropped(let reason): tally[reason] += 1
        }
        return true
    }

    /// `datagram`'s bytes in one piece: its payload, or, read in two parts (a tiny head
    /// buffer), both copied into `scratch`. At most `largestDatagram` bytes. Static: a method
    /// called from a mutating one was handed a copy of the whole service (1,568 bytes).
    static func whole(_ datagram: Datagram, scratch: UnsafeMutableRawPointer) -> UnsafeRawBufferPointer {
        guard !datagram.continuation.isEmpty else { return datagram.payload }
        UnsafeMutableRawBufferPointer(start: scratch, count: datagram.length).copyMemory(from: datagram.payload)
        (scratch + datagram.payload.count).copyMemory(
            from: datagram.continuation.baseAddress!,
            byteCount: datagram.continuation.count)
        return UnsafeRawBufferPointer(start: scratch, count: datagram.length)
    }

    public mutating func recordSent(_ sent: Int, failed: Int) {
        let failedReplies = min(failed, pending.replies)
        tally.replied += UInt64(pending.replies - failedReplies)
        tally[.sendFailed] += UInt64(failedReplies)
        let failedDeliveries = failed - failedReplies
        tally.deliveryFailures += UInt64(failedDeliveries)
        tally.deliveries += UInt64(max(sent - (pending.replies - failedReplies), 0))
        pending = (0, 0)
    }

    public mutating func tick(now: UInt64, into outbox: inout Outbox) {
        credentials.refresh(now)
        sweep(now: now)
    }

    // MARK: Several workers

    /// Which chat worker serves `datagram` when several share the rooms: the room's owner
    /// for a JOIN with a cookie (its room name, hashed under a key of the secret), the
    /// worker a token names for the rest; nil for what any worker can serve alone, which is
    /// what this one then does: a cookie-less JOIN (a stateless challenge), a token that
    /// names no worker (NOT A MEMBER), whatever will be dropped as malformed.
    ///
    /// Inlinable, the work in a static function: the worker calls this for every datagram,
    /// and a call of a non-mutating method from its mutating loop was handed a copy of the
    /// whole service (1,568 bytes).
    @inlinable
    public func owner(of datagram: Datagram) -> Int? {
        Self.owner(of: datagram, workers: settings.workers, roomKey: roomKey, scratch: scratch)
    }

    @usableFromInline
    static func owner(
        of datagram: Datagram, workers: Int, roomKey: SipHasher.Key, scratch: UnsafeMutableRawPointer
    ) -> Int? {
        guard workers > 1, !datagram.truncated, datagram.length <= ChatWire.largestDatagram else { return nil }
        let head = datagram.payload
        guard head.count >= ChatWire.headerLength + 8, head[0] == ChatWire.version else { return nil }
        guard head[1] == ChatType.join.rawValue else {
            let owner = Int(head[ChatWire.headerLength])  // the token's top byte, first on the wire
            return owner < workers ? owner : nil
        }
        guard case .join(let join)? = ChatRequest.parse(whole(datagram, scratch: scratch))?.request,
            !join.cookie.isNone
        else {
            return nil
        }
        return Int(SipHasher.hash(key: roomKey, join.room) % UInt64(workers))
    }

    // MARK: Members

    mutating func newToken() -> UInt64 {
        var credentials = self.credentials  // not borrowed while the roster is read
        defer { self.credentials = credentials }
        return credentials.newToken { roster.member(token: $0) == nil }
    }

    /// Removes a member, counted as a leave; its room goes when it was the last.
    mutating func remove(_ slot: MemberSlot) {
        tally[ChatCounter.members.id] -= 1
        tally[ChatCounter.leaves.id] += 1
        if roster.remove(slot) { tally[ChatCounter.rooms.id] -= 1 }
    }

    // MARK: Notices

    /// A datagram that tells a refused source why: a delivery, not a reply.
    mutating func notice(to datagram: Datagram, into outbox: inout Outbox, _ body: (inout ChatWriter) -> Void) {
        if outbox.write(
            limit: datagram.length, to: datagram.peer, from: datagram.arrival.replySource,
            through: datagram.arrival.socket, body)
        {
            pending.deliveries += 1
        }
    }

    mutating func notice(to slot: MemberSlot, into outbox: inout Outbox, _ body: (inout ChatWriter) -> Void) {
        let m = roster[slot]
        if outbox.write(to: m.peer, from: m.source, through: m.socket, body) {
            pending.deliveries += 1
        }
    }
}
