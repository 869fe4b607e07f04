import HelloDatagram

/// The chat relay's tables, limits and times, fixed at start; and its secret.
public struct ChatSettings: Sendable {
    public var rooms = 64
    public var membersPerRoom = 32
    /// Memberships one source prefix (IPv4 /32, IPv6 /64 by default) may hold in all.
    public var membershipsPerPrefix = 8
    public var ipv4PrefixLength = 32
    public var ipv6PrefixLength = 64
    /// Events a joining member gets from the room's past.
    public var history = 32
    /// Events each room keeps for RESEND and for duplicates (at least `history`, and at
    /// least what one batch and one round of evictions can add, so that nothing is
    /// overwritten before it is sent).
    public var backlog = 256
    /// The longest message text (at most 1000 bytes).
    public var maxMessage = ChatWire.maxText
    /// Messages per second per member, and how many may come at once.
    public var messageRate: UInt64 = 5
    public var messageBurst: UInt64 = 10
    /// Deliveries per second per room, and how many may come at once: a message costs one
    /// per member of its room, the sender included, so this bounds what one room costs the
    /// relay whatever the members' own limits (raised, or renewed by leaving and joining
    /// again). The burst is taken as at least `membersPerRoom`, or a full room could never
    /// speak. The defaults never bind a room of the default size whose members keep to
    /// the default message limits: 32 members sending their bursts of 10 at once make
    /// 32 x 10 x 32 = 10,240 deliveries, then 32 x 5 x 32 = 5,120 a second; each default
    /// is twice that. A rename counts as a message; joins, leaves and time-outs do not
    /// (what a member does not choose to send is never refused).
    public var roomDeliveryRate: UInt64 = 10_240
    public var roomDeliveryBurst: UInt64 = 20_480
    /// Bytes per second per member of what it is sent again on request (RESEND, a
    /// KEEPALIVE's catch-up), and how many at once. Tokens travel in clear, so whoever sees
    /// a member's traffic can ask in its name, from its address: a RESEND brings up to 64
    /// datagrams of up to 1232 bytes for 18, and the message rate alone (one unit per
    /// request) would let it pull 5 x 64 x 1232 = 394 KB/s toward the member. The burst is
    /// one full RESEND, and is taken as at least one largest datagram (or a long event
    /// could never come again).
    public var repairByteRate: UInt64 = 65_536
    public var repairByteBurst = UInt64(ChatWire.maxResend * ChatWire.largestDatagram)
    /// Challenges and NOT A MEMBER answers per endpoint (address and port: forged traffic
    /// from other ports of an address cannot spend its budget). The table holds the
    /// endpoints answered in the last 1/rate s (1 s for one that took its burst at once):
    /// 16,384 fill only past some 300,000 forged datagrams a second, 15 times the default
    /// `unprovenAnswerCap` (a new endpoint is then refused, as one over the cap is).
    public var answerLimit = RateLimiter.Configuration(rate: 20, burst: 20, tableSize: 16_384, scope: .endpoint)
    /// Challenges and NOT A MEMBER answers from the whole relay, shared by its chat
    /// workers: at most 64 bytes each (a CHALLENGE), 1.28 MB/s at the default.
    public var unprovenAnswerCap = RelayRate(rate: 20_000, burst: 20_000)
    /// Memberships made per source prefix: a join is announced to the whole room, so a
    /// member that leaves and joins again in a loop must not flood it. The burst lets a
    /// prefix's memberships (8 by default) all come back at once after a restart.
    public var joinLimit = RateLimiter.Configuration(rate: 4, burst: 16, tableSize: 4096)
    /// Seconds a cookie key lives; a cookie of the current or the previous epoch is taken.
    public var epochSeconds: UInt64 = 120
    /// A member silent this long gets nothing more; this long, it is evicted.
    public var silenceSeconds: UInt64 = 35
    public var evictSeconds: UInt64 = 60
    /// The least time between two sends of one room's new events to its members
    /// (nanoseconds; 0: each batch's events go at its end). Above one message per interval
    /// a room's events gather, several to a datagram: fewer datagrams per delivery (the
    /// relay's cost is the kernel's, per datagram), for up to this much more latency. The
    /// first message after a quiet interval goes at once.
    public var fanOutInterval: UInt64 = 0
    /// 128 random bits (hellod reads them with getrandom(2)): the root of every cookie key,
    /// every token and the relay's instance id.
    public var secret: (UInt64, UInt64) = (0, 0)
    /// Where several chat workers share the rooms (`--workers N`, several sockets): how
    /// many, and which one this is. Each room belongs to one of them (`owner(of:)`), and a
    /// member's token names its room's worker in its top byte.
    public var workers = 1
    public var worker = 0

    public init() {}
}

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
public struct ChatService: DatagramService, ~Copyable {
    public let outboxCapacity: Int
    public let largestDatagram = ChatWire.largestDatagram
    public var tickInterval: UInt64? { 100_000_000 }
    public var counters: Counters { tally }
    /// A message costs a send to every member: the worker sleeps at once when idle.
    public var pollsAfterTraffic: Bool { false }

    @usableFromInline var tally = Counters()
    var admission: Admission
    var answers: UnprovenAnswers
    var joins: RateLimiter
    let settings: ChatSettings
    /// Each member's message rate limit; also of what it is sent again on request.
    let messageRate: CellRate
    /// Each room's limit on deliveries.
    let roomDeliveryRate: CellRate
    /// Each member's limit on the bytes it is sent again on request, one cell a byte.
    let repairByteRate: CellRate
    let instance: UInt64
    /// Places rooms among several workers.
    let roomKey: SipHasher.Key
    var credentials: ChatCredentials
    let backlog: Int
    let historyCount: Int
    /// A room's unsent events, below which the fan-out interval may hold them back: one
    /// more batch (and a round of evictions) then still fits in the backlog.
    let holdLimit: UInt32
    /// Every event the relay has numbered: a new room starts after all of them, so that
    /// (instance, room sequence) never repeats.
    var issued: UInt32 = 0

    // The tables.
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
    /// Each room's last `backlog` events, encoded as they go on the wire, behind a header
    /// (length u16, 6 spare bytes, the sender's token u64), `eventStride` bytes each.
    let events: UnsafeMutableRawPointer
    let eventStride: Int
    /// Each member's last messages' room sequences, for its duplicates' copies.
    var messageSequences: MessageSequences
    /// Token -> member slot (the token, random, is its own hash).
    var tokenIndex: SlotIndex
    /// Room name -> room, by a SipHash of the name under `roomNameKey` (not `roomKey`: with
    /// several workers, the rooms of one share that hash modulo the workers).
    var roomIndex: SlotIndex
    let roomNameKey: SipHasher.Key
    /// Memberships per source prefix, for `membershipsPerPrefix`.
    var prefixCounts: PrefixCounts
    /// Rooms not in use, a stack: a new room is the one freed last.
    let freeRooms: UnsafeMutablePointer<Int32>
    var freeRoomCount: Int
    /// Each room's member slots in use, a bit each, `wordsPerRoom` words a room; and the
    /// rooms in use, a bit each, so that the sweep skips 64 empty rooms in one step.
    let occupied: UnsafeMutablePointer<UInt64>
    let wordsPerRoom: Int
    let roomsInUse: UnsafeMutablePointer<UInt64>
    /// The eviction sweep: where the last tick stopped (a word of `occupied`), and how many
    /// steps a tick may take (empty rooms skipped, a word read, a member looked at).
    var sweepPosition = 0
    package var sweepBudget = 65_536
    /// Rooms with events not yet sent to their members, and where `endBatch` stopped.
    /// Those held back by the fan-out interval come first, `held` of them.
    let dirtyRooms: UnsafeMutablePointer<Int32>
    var dirtyCount = 0
    var flushCursor = (room: 0, member: 0)
    var held = 0
    /// When the first held room may be sent (nil: none is held).
    public private(set) var sendDue: UInt64?
    /// A datagram read in two parts, made one.
    let scratch: UnsafeMutableRawPointer
    /// What the outbox holds, by kind, for `recordSent`.
    var pending = (replies: 0, deliveries: 0)

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

    public init(_ service: ServiceSettings) {
        var s = service.chat
        precondition(s.rooms > 0 && s.membersPerRoom > 0 && s.membersPerRoom <= 4096 && s.rooms <= 65536)
        precondition(s.maxMessage >= 0 && s.maxMessage <= ChatWire.maxText)
        precondition(s.epochSeconds > 0 && s.silenceSeconds > 0 && s.evictSeconds > 0)
        precondition(s.workers >= 1 && s.workers <= 256 && s.worker >= 0 && s.worker < s.workers)
        s.history = max(0, min(s.history, 1024))
        settings = s
        let keys = ChatKeys(secret: s.secret)
        messageRate = CellRate(rate: max(s.messageRate, 1), burst: max(s.messageBurst, 1))
        roomDeliveryRate = CellRate(rate: max(s.roomDeliveryRate, 1), burst: max(s.roomDeliveryBurst, UInt64(s.membersPerRoom)))
        repairByteRate = CellRate(rate: max(s.repairByteRate, 1), burst: max(s.repairByteBurst, UInt64(ChatWire.largestDatagram)))
        backlog = Self.backlogLength(service)
        historyCount = s.history
        holdLimit = UInt32(max(backlog - service.batchSize - s.membersPerRoom, 0))
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
        answers = UnprovenAnswers(perEndpoint: s.answerLimit, relayCap: s.unprovenAnswerCap,
                                  seed: keys.word(.answerBudgetSeed))
        var joinLimit = s.joinLimit
        (joinLimit.ipv4PrefixLength, joinLimit.ipv6PrefixLength) = (s.ipv4PrefixLength, s.ipv6PrefixLength)
        joins = RateLimiter(joinLimit, seed: keys.word(.joinLimiterSeed))
        instance = keys.word(.instance)
        roomKey = keys.key(.roomPlacement)
        credentials = ChatCredentials(keys: keys, epochSeconds: s.epochSeconds, workers: s.workers, worker: s.worker)
        roomCount = s.rooms
        perRoom = s.membersPerRoom
        rooms = .allocate(capacity: roomCount)
        rooms.initialize(repeating: Room(), count: roomCount)
        roomNames = .allocate(capacity: roomCount * ChatWire.maxName)
        let slots = roomCount * perRoom
        members = .allocate(capacity: slots)
        members.initialize(repeating: Member(), count: slots)
        nicks = .allocate(capacity: slots * ChatWire.maxName)
        nickKeys = .allocate(capacity: slots)
        nickKeys.initialize(repeating: 0, count: slots)
        nickKeyKey = keys.key(.nickKey)
        keyScratch = .allocate(capacity: 2 * NamePolicy.longestKey)
        eventStride = Self.eventStride(maxMessage: s.maxMessage)
        events = .allocate(byteCount: roomCount * backlog * eventStride, alignment: 8)
        messageSequences = MessageSequences(slots: slots)
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
        dirtyRooms = .allocate(capacity: roomCount)
        scratch = .allocate(byteCount: ChatWire.largestDatagram, alignment: 8)
    }

    deinit {
        rooms.deallocate()
        roomNames.deallocate()
        members.deallocate()
        nicks.deallocate()
        nickKeys.deallocate()
        keyScratch.deallocate()
        events.deallocate()
        freeRooms.deallocate()
        occupied.deallocate()
        roomsInUse.deallocate()
        dirtyRooms.deallocate()
        scratch.deallocate()
    }

    // MARK: Requests

    /// How many datagrams the answer to a request of `type` may take at most: the outbox
    /// must have room for them before anything changes.
    func answerBound(_ type: UInt8) -> Int {
        switch ChatType(rawValue: type) {
        case .join: return 1 + historyCount
        case .resend: return ChatWire.maxResend
        default: return 1
        }
    }

    public mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool {
        let type: UInt8 = datagram.payload.count >= 2 ? datagram.payload[1] : 0
        let bound = answerBound(type)
        if !outbox.isEmpty && !(outbox.count + bound <= outbox.capacity
                                && outbox.bufferUsed + bound * largestDatagram <= outbox.bufferCapacity) {
            return false
        }
        tally.read += 1
        if let reason = admission.refusal(of: datagram, now: now) {
            tally.drops[reason] += 1
            return true
        }
        guard datagram.length <= ChatWire.largestDatagram else {
            tally.drops[.chatMalformed] += 1
            return true
        }
        var bytes = datagram.payload
        if !datagram.continuation.isEmpty {
            UnsafeMutableRawBufferPointer(start: scratch, count: datagram.length).copyMemory(from: datagram.payload)
            (scratch + datagram.payload.count).copyMemory(from: datagram.continuation.baseAddress!,
                                                          byteCount: datagram.continuation.count)
            bytes = UnsafeRawBufferPointer(start: scratch, count: datagram.length)
        }
        credentials.refresh(now)
        let outcome = serve(bytes, datagram, now: now, into: &outbox)
        switch outcome {
        case .answered: pending.replies += 1
        case .served: tally.replied += 1
        case .dropped(let reason): tally.drops[reason] += 1
        }
        return true
    }

    enum Outcome {
        /// Its answer is the first datagram written for it.
        case answered
        /// Acted on; the answer, if any, is an event to the room.
        case served
        case dropped(DropReason)
    }

    mutating func serve(_ bytes: UnsafeRawBufferPointer, _ datagram: Datagram, now: UInt64,
                        into outbox: inout Outbox) -> Outcome {
        guard let (tag, request) = ChatRequest.parse(bytes) else {
            if bytes.count >= 2 && bytes[0] == ChatWire.version && bytes[1] == ChatType.join.rawValue
                && bytes.count < ChatWire.joinLength {
                return .dropped(.chatShortJoin)
            }
            if let token = ChatRequest.legacyToken(bytes) {
                // hellod 1.x's client: told in its own words, never more bytes than it sent.
                guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
                notice(to: datagram, into: &outbox) { $0.legacyRefusal(token: token) }
                return .dropped(.chatOldVersion)
            }
            return .dropped(.chatMalformed)
        }
        if case .join(let join) = request {
            return self.join(join, tag: tag, length: bytes.count, datagram, now: now, into: &outbox)
        }
        let token: UInt64
        switch request {
        case .join: fatalError("handled above")
        case .say(let t, _, _), .keepalive(let t, _), .leave(let t), .resend(let t, _, _), .who(let t), .nick(let t, _):
            token = t
        }
        guard let slot = lookup(token) else {
            // Not longer than the request (every request with a token has at least 18
            // bytes), and rate-limited: a forged source gets little, and not often.
            guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
            notice(to: datagram, into: &outbox) { $0.notAMember(tag: tag, token: token) }
            return .dropped(.chatNotMember)
        }
        guard members[slot].peer == datagram.peer else {
            // The member's NAT rebound it, most likely: a challenge for the new address,
            // with which it rejoins from there (its secret proves it). Not longer than the
            // request, and limited as any answer to a source not yet proven.
            guard bytes.count >= ChatWire.challengeLength else { return .dropped(.chatMoved) }
            guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
            let cookie = credentials.cookie(for: datagram.peer)
            notice(to: datagram, into: &outbox) { $0.challenge(tag: tag, cookie) }
            return .dropped(.chatMoved)
        }
        members[slot].lastHeard = now
        members[slot].source = datagram.arrival.replySource
        members[slot].socket = datagram.arrival.socket
        let room = slot / perRoom
        switch request {
        case .join: fatalError("handled above")
        case let .say(_, sequence, text):
            return say(slot, sequence: sequence, text: text, now: now, into: &outbox)
        case let .keepalive(_, highest):
            catchUp(slot, after: highest, now: now, into: &outbox)
            return .served
        case .leave:
            let m = members[slot]
            appendEvent(room, kind: .left, sender: m.id, clientSequence: 0, nick: nick(slot),
                        text: UnsafeRawBufferPointer(start: nil, count: 0), token: m.token)
            remove(slot)
            return .served
        case let .resend(_, first, count):
            var from = max(first, rooms[room].oldest)
            let end = UInt32(min(UInt64(first) + UInt64(count), UInt64(rooms[room].next)))
            guard from < end else { return .dropped(.chatStale) }
            // Up to `maxResend` datagrams for a request of 18 bytes, to the member's own
            // address: within the budget of its keepalives' catch-up (the message rate),
            // which a client asking once per gap and backing off stays well under; and
            // as many whole datagrams as its repair bytes allow.
            guard messageRate.admit(&members[slot].catchUpArrival, now: now) else { return .dropped(.chatRateLimited) }
            var written = 0
            while from < end && writeRepair(room, from: &from, to: end, to: slot, now: now, into: &outbox) {
                written += 1
            }
            guard written > 0 else { return .dropped(.chatRateLimited) }
            pending.deliveries += written - 1
            return .answered
        case .who:
            // Up to 1232 bytes for a request of 10: within the catch-up budget, as RESEND.
            guard messageRate.admit(&members[slot].catchUpArrival, now: now) else { return .dropped(.chatRateLimited) }
            let r = rooms[room]
            let m = members[slot]
            _ = outbox.write(to: m.peer, from: m.source, through: m.socket) { w in
                var count = 0
                var length = ChatWire.headerLength + 8 + 2
                for k in 0..<perRoom where members[room * perRoom + k].token != 0 {
                    let next = length + 1 + Int(members[room * perRoom + k].nickLength)
                    if next > ChatWire.largestDatagram { break }
                    length = next
                    count += 1
                }
                w.members(tag: m.tag, instance: instance, count: UInt16(min(count, r.memberCount)))
                var listed = 0
                for k in 0..<perRoom where members[room * perRoom + k].token != 0 && listed < count {
                    w.string(nick(room * perRoom + k))
                    listed += 1
                }
            }
            return .answered
        case let .nick(_, newNick):
            if let refusal = nameRefusal(newNick, in: room, except: slot) {
                let tag = members[slot].tag
                notice(to: members[slot], into: &outbox) { $0.refused(tag: tag, refusal) }
                return .dropped(.chatBadName)
            }
            // A rename reaches every member, as a message does: it spends as one.
            var m = members[slot]
            guard messageRate.admit(&m.rateArrival, now: now) else { return .dropped(.chatRateLimited) }
            guard roomDeliveryRate.admit(&rooms[room].deliveryArrival, now: now, cost: UInt64(rooms[room].memberCount)) else {
                return .dropped(.chatRoomRateLimited)
            }
            members[slot] = m
            appendEvent(room, kind: .renamed, sender: m.id, clientSequence: 0, nick: nick(slot), text: newNick,
                        token: m.token)
            setNick(slot, newNick)
            return .served
        }
    }

    mutating func join(_ join: ChatJoin, tag: UInt64, length: Int, _ datagram: Datagram, now: UInt64,
                       into outbox: inout Outbox) -> Outcome {
        guard length >= ChatWire.joinLength else { return .dropped(.chatShortJoin) }
        guard credentials.isValid(join.cookie, for: datagram.peer) else {
            guard answers.allow(datagram.peer, now: now) else { return .dropped(.chatRateLimited) }
            let cookie = credentials.cookie(for: datagram.peer)
            if join.cookie.isNone {
                _ = outbox.write(limit: length, to: datagram.peer, from: datagram.arrival.replySource,
                                 through: datagram.arrival.socket) { $0.challenge(tag: tag, cookie) }
                return .answered
            }
            notice(to: datagram, into: &outbox) { $0.challenge(tag: tag, cookie) }
            return .dropped(.chatBadCookie)
        }
        // The source receives at its address: from here on it may be answered in full.
        let id = join.secret.id
        if join.token != 0, let slot = lookup(join.token) {
            // The member's address changed (NAT rebinding), or its WELCOME was lost: the
            // same member, silently at its new address, if the secret is its own (the token
            // travels in every datagram, the secret only in JOIN). Its membership is counted
            // under the new address's prefix from now on, even past `membershipsPerPrefix`:
            // the limit is on making memberships, and this one exists already.
            guard members[slot].id == id else { return .dropped(.chatBadToken) }
            let (old, new) = (sourcePrefix(members[slot].peer), sourcePrefix(datagram.peer))
            if old != new {
                prefixCounts.subtract(old)
                prefixCounts.add(new)
            }
            members[slot].peer = datagram.peer
            members[slot].source = datagram.arrival.replySource
            members[slot].socket = datagram.arrival.socket
            members[slot].tag = tag
            members[slot].lastHeard = now
            welcome(slot, into: &outbox)
            return .answered
        }
        guard ChatWire.isValidName(join.room) else {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, .badName) }
            return .dropped(.chatBadName)
        }
        let nameHash = SipHasher.hash(key: roomNameKey, join.room)
        let found = findRoom(join.room, hash: nameHash)
        if let room = found {
            // A JOIN repeated because its WELCOME was lost: the member it made.
            for k in 0..<perRoom {
                let m = members[room * perRoom + k]
                if m.token != 0 && m.id == id && m.peer == datagram.peer {
                    welcome(room * perRoom + k, into: &outbox)
                    return .answered
                }
            }
        }
        if let refusal = nameRefusal(join.nick, in: found, except: -1) {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, refusal) }
            return .dropped(.chatBadName)
        }
        let prefix = sourcePrefix(datagram.peer)
        if prefixCounts.count(of: prefix) >= settings.membershipsPerPrefix {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, .tooManyMemberships) }
            return .dropped(.chatRoomFull)
        }
        if let found, rooms[found].memberCount >= perRoom {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, .roomFull) }
            return .dropped(.chatRoomFull)
        }
        if found == nil && freeRoomCount == 0 {
            notice(to: datagram, into: &outbox) { $0.refused(tag: tag, .tooManyRooms) }
            return .dropped(.chatRoomFull)
        }
        // Everything else allows it: it is a join, announced to the room, within the
        // prefix's joins per second (not answered past them: the client tries again).
        guard joins.allow(datagram.peer, now: now) else { return .dropped(.chatJoinRateLimited) }
        let room: Int
        if let found {
            room = found
        } else {
            freeRoomCount -= 1
            room = Int(freeRooms[freeRoomCount])
            tally.chat.rooms += 1
            // Still in the dirty list if its last members left this batch, or while held.
            rooms[room] = Room(inUse: true, nameLength: UInt8(join.room.count), memberCount: 0,
                               next: issued &+ 1, oldest: issued &+ 1, dirty: rooms[room].dirty, nameHash: nameHash)
            UnsafeMutableRawPointer(roomNames + room * ChatWire.maxName).copyMemory(from: join.room.baseAddress!,
                                                                                  byteCount: join.room.count)
            roomIndex.insert(room, hash: nameHash)
            roomsInUse[room / 64] |= 1 << UInt64(room % 64)
        }
        let slot = freeSlot(in: room)
        members[slot] = Member(token: newToken(), peer: datagram.peer, source: datagram.arrival.replySource,
                               socket: datagram.arrival.socket, id: id, tag: tag, lastHeard: now, rateArrival: 0,
                               nextToSend: rooms[room].next)
        setNick(slot, join.nick)
        insert(slot)
        occupied[slot / perRoom * wordsPerRoom + slot % perRoom / 64] |= 1 << UInt64(slot % perRoom % 64)
        prefixCounts.add(prefix)
        rooms[room].memberCount += 1
        tally.chat.members += 1
        tally.chat.joins += 1
        welcome(slot, into: &outbox)
        // History: the room's last events, then "joined" to everyone, the joiner included.
        let next = rooms[room].next
        var from = max(rooms[room].oldest, next >= UInt32(historyCount) ? next - UInt32(historyCount) : 0)
        while from < next && writeEvents(room, from: &from, to: next, to: slot, into: &outbox) {
            pending.deliveries += 1
        }
        appendEvent(room, kind: .joined, sender: id, clientSequence: 0, nick: nick(slot),
                    text: UnsafeRawBufferPointer(start: nil, count: 0), token: members[slot].token)
        return .answered
    }

    mutating func say(_ slot: Int, sequence: UInt32, text: UnsafeRawBufferPointer, now: UInt64,
                      into outbox: inout Outbox) -> Outcome {
        guard text.count <= settings.maxMessage else { return .dropped(.chatMalformed) }
        let room = slot / perRoom
        var m = members[slot]
        let duplicate: Bool
        if !m.anySeen || sequence > m.highest {
            duplicate = false
        } else {
            let distance = m.highest - sequence
            duplicate = distance >= 64 || m.seen & (1 << UInt64(distance)) != 0
        }
        if duplicate {
            // Its copy was lost, most likely: the copy again, from the backlog. Not
            // rate-limited: one datagram, no longer than the SAY but for the nick and 14
            // bytes, to the member's own address, per SAY; and the resends of a client
            // that lost its copies are what bring them back. Out of the window, where it
            // was is not known: taken as delivered, as one whose copy the backlog lost.
            guard m.highest - sequence < UInt32(MessageSequences.window),
                  let copy = ownMessage(room, token: m.token, clientSequence: sequence,
                                        at: messageSequences.roomSequence(slot: slot, clientSequence: sequence))
            else { return .dropped(.chatStale) }
            var from = copy
            _ = writeEvents(room, from: &from, to: copy + 1, to: slot, into: &outbox)
            return .answered
        }
        guard messageRate.admit(&m.rateArrival, now: now) else { return .dropped(.chatRateLimited) }
        // One delivery per member (silent ones too: a bound, without a walk over the room).
        // After the member's own limit, so that a member over it spends nothing of the
        // room's; refused here, it keeps its own (`m` is not stored) for the resend.
        guard roomDeliveryRate.admit(&rooms[room].deliveryArrival, now: now, cost: UInt64(rooms[room].memberCount)) else {
            return .dropped(.chatRoomRateLimited)
        }
        if !m.anySeen {
            (m.highest, m.seen, m.anySeen) = (sequence, 1, true)
        } else if sequence > m.highest {
            let shift = UInt64(sequence - m.highest)
            m.seen = (shift >= 64 ? 0 : m.seen << shift) | 1
            m.highest = sequence
        } else {
            m.seen |= 1 << UInt64(m.highest - sequence)
        }
        members[slot] = m
        messageSequences.record(rooms[room].next, slot: slot, clientSequence: sequence)
        appendEvent(room, kind: .message, sender: m.id, clientSequence: sequence, nick: nick(slot), text: text,
                    token: m.token)
        tally.chat.messages += 1
        return .served
    }

    /// A keepalive names the highest room sequence its member received in order: what it
    /// was sent after that (its last datagrams lost, or skipped while it was silent) goes
    /// again, from the backlog, in one datagram at most and within the member's message
    /// rate. The token proved the address, so this amplifies nothing toward anyone else.
    /// 0 is "nothing received yet": nothing to go on.
    mutating func catchUp(_ slot: Int, after highest: UInt32, now: UInt64, into outbox: inout Outbox) {
        let room = slot / perRoom
        let end = members[slot].nextToSend  // what comes later goes out at the batch's end
        var from = max(highest &+ 1, rooms[room].oldest)
        guard highest != 0, highest < end, from < end,
              messageRate.admit(&members[slot].catchUpArrival, now: now),
              writeRepair(room, from: &from, to: end, to: slot, now: now, into: &outbox) else { return }
        pending.deliveries += 1
    }

    // MARK: Time

    public mutating func tick(now: UInt64, into outbox: inout Outbox) {
        credentials.refresh(now)
        sweep(now: now)
    }

    /// Evicts the members silent for `evictSeconds`, announced to their rooms. A tick takes
    /// at most `sweepBudget` steps (up to 64 rooms not in use skipped, a word of `occupied`
    /// read, a member looked at) and one pass over the rooms, from where the last one
    /// stopped: its cost is bounded whatever the tables. A member is evicted at most one
    /// pass after its time: ceil(steps of a pass / budget) ticks of 100 ms, a pass taking
    /// at most a step per 64 rooms, per word of a room in use and per member. The default
    /// tables (64 rooms of 32) take at most 2,112 steps: every tick is a whole pass, as when
    /// the sweep was a plain loop; 65,536 rooms of 64, all full, take 65 ticks (6.5 s);
    /// 65,536 rooms of 4,096, all full, 4,160 ticks (7 minutes).
    mutating func sweep(now: UInt64) {
        let evictAfter = settings.evictSeconds * 1_000_000_000
        let words = roomCount * wordsPerRoom
        var budget = sweepBudget
        var left = words  // one pass at most: each member looked at once a tick
        while left > 0 && budget > 0 {
            let room = sweepPosition / wordsPerRoom
            let word = sweepPosition % wordsPerRoom
            var step = 1
            if rooms[room].inUse {
                var bits = occupied[sweepPosition]
                budget -= bits.nonzeroBitCount
                while bits != 0 {
                    let slot = room * perRoom + word * 64 + bits.trailingZeroBitCount
                    bits &= bits - 1
                    guard now &- members[slot].lastHeard >= evictAfter && now > members[slot].lastHeard else { continue }
                    let m = members[slot]
                    appendEvent(room, kind: .timedOut, sender: m.id, clientSequence: 0, nick: nick(slot),
                                text: UnsafeRawBufferPointer(start: nil, count: 0), token: m.token)
                    remove(slot)
                }
            } else {
                // On to the next room in use, or past the 64 rooms of this word of `roomsInUse`.
                let bits = roomsInUse[room / 64] >> UInt64(room % 64)
                let next = min(bits == 0 ? (room / 64 + 1) * 64 : room + bits.trailingZeroBitCount, roomCount)
                step = (next - room) * wordsPerRoom - word
            }
            budget -= 1
            left -= step
            sweepPosition += step
            if sweepPosition == words { sweepPosition = 0 }
        }
    }

    /// Sends each dirty room's new events to its members who are not silent, as many to
    /// one member in one datagram as fit. Members at the same point of the room (nearly
    /// always all of them) get the same bytes: those are written once, for the first, and
    /// every other member's send points at them, as a plain C relay sends from one buffer.
    public mutating func endBatch(now: UInt64, into outbox: inout Outbox) -> Bool {
        let interval = settings.fanOutInterval
        if flushCursor.room == 0 {
            sendDue = nil  // a new pass (or one resumed in its first room, which held none)
        }
        while flushCursor.room < dirtyCount {
            let room = Int(dirtyRooms[flushCursor.room])
            let last = rooms[room].lastFanOut
            // Held no longer than one more batch may leave nothing unsent in the backlog.
            if flushCursor.member == 0 && interval > 0 && last != 0 && now &- last < interval
                && rooms[room].next &- rooms[room].fannedOut < holdLimit {
                dirtyRooms[held] = Int32(room)  // not yet: it stays dirty, first in the list
                held += 1
                sendDue = min(sendDue ?? last + interval, last + interval)
                flushCursor.room += 1
                continue
            }
            let next = rooms[room].next
            guard fanOut(room, upTo: next, now: now, into: &outbox) else { return false }
            rooms[room].dirty = false
            rooms[room].lastFanOut = now
            rooms[room].fannedOut = next
            flushCursor = (flushCursor.room + 1, 0)
        }
        dirtyCount = held
        held = 0
        flushCursor = (0, 0)
        return true
    }

    /// Sends `room`'s events before `next` to its members who are not silent, from member
    /// `flushCursor.member` on; false if the outbox filled first (`flushCursor.member` is then
    /// the member to go on with). The relay's innermost loop: members are read in place,
    /// counts kept in locals until the end.
    mutating func fanOut(_ room: Int, upTo next: UInt32, now: UInt64, into outbox: inout Outbox) -> Bool {
        let silentAfter = settings.silenceSeconds * 1_000_000_000
        // A member last heard before this is silent (none is, before `silentAfter` has passed).
        let silentBefore = now >= silentAfter ? now - silentAfter + 1 : 0
        let oldest = rooms[room].oldest
        let base = room * perRoom
        // The datagrams last written here for a member: from which sequence, and which
        // outbox entries. Valid for this call only: a full outbox is sent and emptied.
        var written = (from: UInt32(0), first: 0, count: 0)
        var k = flushCursor.member
        var deliveries = 0
        defer {
            flushCursor.member = k
            pending.deliveries += deliveries
        }
        while k < perRoom {
            let member = members + base + k
            if member.pointee.token != 0 {
                if member.pointee.lastHeard < silentBefore {
                    member.pointee.nextToSend = next  // it may ask RESEND when it is back
                }
                var from = max(member.pointee.nextToSend, oldest)
                if from < next && written.count > 0 && written.from == from {
                    // Room for the entries is room for their heads too: no datagram in the
                    // outbox is longer than `largestDatagram`, a head much shorter.
                    guard outbox.count + written.count <= outbox.capacity else { return false }
                    for d in written.first..<written.first + written.count {
                        // The same events, under this member's own version, type and tag.
                        let at = outbox.next
                        at.storeBytes(of: Self.eventsHead, as: UInt16.self)
                        at.storeBytes(of: member.pointee.tag.bigEndian, toByteOffset: 2, as: UInt64.self)
                        _ = outbox.repeatDatagram(d, ownHead: ChatWire.headerLength, to: member.pointee.peer,
                                                  from: member.pointee.source, through: member.pointee.socket)
                    }
                    deliveries += written.count
                } else if from < next {
                    written = (from, outbox.count, 0)
                    while from < next {
                        guard writeEvents(room, from: &from, to: next, to: base + k, into: &outbox) else {
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

    /// An EVENTS datagram's version and type, as they lie in memory (computed, not stored:
    /// a constant, not a lazily made global checked at every use).
    @inline(__always)
    static var eventsHead: UInt16 { (UInt16(ChatWire.version) << 8 | UInt16(ChatType.events.rawValue)).bigEndian }

    public mutating func recordSent(_ sent: Int, failed: Int) {
        let failedReplies = min(failed, pending.replies)
        tally.replied += UInt64(pending.replies - failedReplies)
        tally.drops[.sendFailed] += UInt64(failedReplies)
        let failedDeliveries = failed - failedReplies
        tally.deliveryFailures += UInt64(failedDeliveries)
        tally.deliveries += UInt64(max(sent - (pending.replies - failedReplies), 0))
        pending = (0, 0)
    }

    // MARK: Several workers

    /// Which chat worker serves `datagram` when several share the rooms: the room's owner
    /// for a JOIN with a cookie (its room name, hashed under a key of the secret), the
    /// worker a token names for the rest; nil for what any worker can serve alone, which is
    /// what this one then does: a cookie-less JOIN (a stateless challenge), a token that
    /// names no worker (NOT A MEMBER), whatever will be dropped as malformed.
    public func owner(of datagram: Datagram) -> Int? {
        let workers = settings.workers
        guard workers > 1, !datagram.truncated, datagram.length <= ChatWire.largestDatagram else { return nil }
        var bytes = datagram.payload
        guard bytes.count >= ChatWire.headerLength + 8, bytes[0] == ChatWire.version else { return nil }
        guard bytes[1] == ChatType.join.rawValue else {
            let owner = Int(bytes[ChatWire.headerLength])  // the token's top byte, first on the wire
            return owner < workers ? owner : nil
        }
        if !datagram.continuation.isEmpty {  // a JOIN read in two parts (a tiny head buffer)
            UnsafeMutableRawBufferPointer(start: scratch, count: datagram.length).copyMemory(from: datagram.payload)
            (scratch + datagram.payload.count).copyMemory(from: datagram.continuation.baseAddress!,
                                                          byteCount: datagram.continuation.count)
            bytes = UnsafeRawBufferPointer(start: scratch, count: datagram.length)
        }
        guard case .join(let join)? = ChatRequest.parse(bytes)?.request, !join.cookie.isNone else { return nil }
        return Int(SipHasher.hash(key: roomKey, join.room) % UInt64(workers))
    }

    // MARK: Cookies and tokens

    mutating func newToken() -> UInt64 {
        var credentials = self.credentials  // not borrowed while `lookup` reads the tables
        defer { self.credentials = credentials }
        return credentials.newToken { lookup($0) == nil }
    }

    // MARK: Tables

    func lookup(_ token: UInt64) -> Int? {
        guard token != 0 else { return nil }
        return tokenIndex.find(token) { members[$0].token == token }
    }

    mutating func insert(_ slot: Int) {
        tokenIndex.insert(slot, hash: members[slot].token)
    }

    /// Removes a member; its room goes when it was the last.
    mutating func remove(_ slot: Int) {
        tokenIndex.remove(slot, hash: members[slot].token)
        prefixCounts.subtract(sourcePrefix(members[slot].peer))
        members[slot] = Member()
        let room = slot / perRoom
        occupied[room * wordsPerRoom + slot % perRoom / 64] &= ~(1 << UInt64(slot % perRoom % 64))
        rooms[room].memberCount -= 1
        tally.chat.members -= 1
        tally.chat.leaves += 1
        if rooms[room].memberCount == 0 {
            rooms[room].inUse = false
            roomIndex.remove(room, hash: rooms[room].nameHash)
            roomsInUse[room / 64] &= ~(1 << UInt64(room % 64))
            freeRooms[freeRoomCount] = Int32(room)
            freeRoomCount += 1
            tally.chat.rooms -= 1
        }
    }

    /// The lowest free member slot of `room`, which has one.
    func freeSlot(in room: Int) -> Int {
        let words = occupied + room * wordsPerRoom
        var w = 0
        while words[w] == ~0 { w += 1 }
        return room * perRoom + w * 64 + (~words[w]).trailingZeroBitCount
    }

    func nick(_ slot: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: nicks + slot * ChatWire.maxName, count: Int(members[slot].nickLength))
    }

    func setNick(_ slot: Int, _ nick: UnsafeRawBufferPointer) {
        if let base = nick.baseAddress {
            UnsafeMutableRawPointer(nicks + slot * ChatWire.maxName).copyMemory(from: base, byteCount: nick.count)
        }
        members[slot].nickLength = UInt8(nick.count)
        nickKeys[slot] = nickKeyHash(nick)
    }

    /// The hash of `nick`'s key, which has no `NamePolicy.problem`.
    func nickKeyHash(_ nick: UnsafeRawBufferPointer) -> UInt64 {
        let n = NamePolicy.key(nick, into: keyScratch)
        return SipHasher.hash(key: nickKeyKey, UnsafeRawBufferPointer(start: keyScratch, count: n * 4))
    }

    /// The room in use named `name`, whose hash under `roomNameKey` is `hash`.
    func findRoom(_ name: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        let (rooms, roomNames) = (self.rooms, self.roomNames)
        return roomIndex.find(hash) { room in
            Int(rooms[room].nameLength) == name.count && memcmpEqual(roomNames + room * ChatWire.maxName, name)
        }
    }

    /// Why `nick` cannot be a name in `room` (nil: it can): its characters
    /// (`NamePolicy.problem`), or another member's nick that it reads as (the same key).
    func nameRefusal(_ nick: UnsafeRawBufferPointer, in room: Int?, except: Int) -> ChatRefusal? {
        guard ChatWire.isValidName(nick) else { return .badName }
        guard let room else { return nil }
        let hash = nickKeyHash(nick)
        for slot in room * perRoom..<(room + 1) * perRoom where slot != except && members[slot].token != 0
            && nickKeys[slot] == hash {
            if NamePolicy.same(nick, self.nick(slot), scratch: keyScratch) { return .nickTaken }
        }
        return nil
    }

    func sourcePrefix(_ peer: Endpoint) -> SourcePrefix {
        SourcePrefix(peer, ipv4Length: settings.ipv4PrefixLength, ipv6Length: settings.ipv6PrefixLength)
    }

    // MARK: Events

    /// Events each room keeps: the backlog asked for, and at least the history, a batch
    /// past a full room's fan-out (`holdLimit`) and one RESEND's.
    static func backlogLength(_ service: ServiceSettings) -> Int {
        let s = service.chat
        return max(s.backlog, min(max(s.history, 0), 1024), service.batchSize + s.membersPerRoom, ChatWire.maxResend, 1)
    }

    /// The bytes of address space the relay's tables take, all allocated at start (a page
    /// that no member or event has touched costs no memory): what hellod checks against
    /// the machine before it starts, so that settings too large for it are refused in one
    /// line rather than failing an allocation.
    public static func tableBytes(_ service: ServiceSettings) -> Int {
        let s = service.chat
        let slots = s.rooms * s.membersPerRoom
        return s.rooms * (MemoryLayout<Room>.stride + ChatWire.maxName)
            + slots * (MemoryLayout<Member>.stride + ChatWire.maxName + MemoryLayout<UInt64>.stride)
            + s.rooms * backlogLength(service) * eventStride(maxMessage: s.maxMessage)
            + MessageSequences.bytes(slots: slots) + PrefixCounts.bytes(capacity: slots)
            + SlotIndex.bytes(capacity: slots) + SlotIndex.bytes(capacity: s.rooms)
    }

    /// A backlog slot's bytes: its header, then the longest event the relay writes, 8-byte
    /// aligned. Every event carries its member's nick (up to `maxName`); a message's text is
    /// at most `maxMessage`, a rename's is the new nick (up to `maxName`, whatever
    /// `maxMessage`), the others' is empty.
    static func eventStride(maxMessage: Int) -> Int {
        let longestText = max(maxMessage, ChatWire.maxName)
        return (16 + ChatWire.eventLength(nick: ChatWire.maxName, text: longestText) + 7) & ~7
    }

    func eventSlot(_ room: Int, _ sequence: UInt32) -> UnsafeMutableRawPointer {
        events + (room * backlog + Int(sequence % UInt32(backlog))) * eventStride
    }

    func eventBytes(_ room: Int, _ sequence: UInt32) -> UnsafeRawBufferPointer {
        let slot = eventSlot(room, sequence)
        return UnsafeRawBufferPointer(start: slot + 16, count: Int(slot.load(as: UInt16.self)))
    }

    /// Numbers an event in `room`, keeps it in the backlog and marks the room for sending.
    mutating func appendEvent(_ room: Int, kind: ChatEventKind, sender: UInt64, clientSequence: UInt32,
                              nick: UnsafeRawBufferPointer, text: UnsafeRawBufferPointer, token: UInt64) {
        let sequence = rooms[room].next
        let slot = eventSlot(room, sequence)
        var w = ChatWriter(slot + 16, capacity: eventStride - 16)
        w.event(sequence: sequence, kind: kind, sender: sender, clientSequence: clientSequence, nick: nick, text: text)
        precondition(!w.overflowed)
        slot.storeBytes(of: UInt16(w.count), as: UInt16.self)
        slot.storeBytes(of: token, toByteOffset: 8, as: UInt64.self)
        rooms[room].next = sequence &+ 1
        issued = max(issued, sequence)
        if rooms[room].next - rooms[room].oldest > UInt32(backlog) {
            rooms[room].oldest = rooms[room].next - UInt32(backlog)
        }
        if !rooms[room].dirty {
            rooms[room].dirty = true
            dirtyRooms[dirtyCount] = Int32(room)
            dirtyCount += 1
        }
    }

    /// `sequence`, if the backlog of `room` still holds it there as the message
    /// `clientSequence` of the member whose token is `token` (else its slot was written over).
    func ownMessage(_ room: Int, token: UInt64, clientSequence: UInt32, at sequence: UInt32) -> UInt32? {
        guard sequence &- rooms[room].oldest < rooms[room].next &- rooms[room].oldest else { return nil }
        let slot = eventSlot(room, sequence)
        guard slot.load(fromByteOffset: 8, as: UInt64.self) == token
            && slot.load(fromByteOffset: 16 + 4, as: UInt8.self) == ChatEventKind.message.rawValue
            && UInt32(bigEndian: slot.loadUnaligned(fromByteOffset: 16 + 13, as: UInt32.self)) == clientSequence
        else { return nil }
        return sequence
    }

    /// Writes one EVENTS datagram to the member in `slot` with the events from `from` on, as
    /// many as fit, and moves `from` past them; false (nothing written) if the outbox is full.
    /// It runs once per member and datagram, the relay's innermost loop: the member is read
    /// in place (not copied), and each event's length looked up once.
    func writeEvents(_ room: Int, from: inout UInt32, to end: UInt32, to slot: Int, into outbox: inout Outbox) -> Bool {
        let (last, length) = eventsDatagram(room, from: from, to: end)
        guard outbox.hasRoom(for: length) else { return false }
        putEvents(room, from: &from, to: last, to: slot, into: &outbox)
        return true
    }

    /// As `writeEvents`, for what a member asked to be sent again: false (nothing written)
    /// also when the datagram's bytes are past the member's repair budget.
    func writeRepair(_ room: Int, from: inout UInt32, to end: UInt32, to slot: Int, now: UInt64,
                     into outbox: inout Outbox) -> Bool {
        let (last, length) = eventsDatagram(room, from: from, to: end)
        guard outbox.hasRoom(for: length),
              repairByteRate.admit(&members[slot].repairArrival, now: now, cost: UInt64(length)) else { return false }
        putEvents(room, from: &from, to: last, to: slot, into: &outbox)
        return true
    }

    /// The events from `from` that fit in one EVENTS datagram (up to `last`, exclusive), and
    /// its length.
    @inline(__always)
    func eventsDatagram(_ room: Int, from: UInt32, to end: UInt32) -> (last: UInt32, length: Int) {
        var length = ChatWire.eventsHeaderLength
        var last = from
        while last < end {
            let next = length + Int(eventSlot(room, last).load(as: UInt16.self))
            guard next <= ChatWire.largestDatagram else { break }
            length = next
            last += 1
        }
        return (last, length)
    }

    @inline(__always)
    func putEvents(_ room: Int, from: inout UInt32, to last: UInt32, to slot: Int, into outbox: inout Outbox) {
        let start = from
        _ = outbox.write(to: members[slot].peer, from: members[slot].source, through: members[slot].socket) { w in
            w.events(tag: members[slot].tag, instance: instance)
            for seq in start..<last { w.bytes(eventBytes(room, seq)) }
        }
        from = last
    }

    func welcome(_ slot: Int, into outbox: inout Outbox) {
        let m = members[slot]
        let room = rooms[slot / perRoom]
        _ = outbox.write(to: m.peer, from: m.source, through: m.socket) {
            $0.welcome(tag: m.tag, token: m.token, instance: instance, nextSequence: room.next, members: UInt16(room.memberCount))
        }
    }

    /// A datagram that tells a refused source why: a delivery, not a reply.
    mutating func notice(to datagram: Datagram, into outbox: inout Outbox, _ body: (inout ChatWriter) -> Void) {
        if outbox.write(limit: datagram.length, to: datagram.peer, from: datagram.arrival.replySource,
                        through: datagram.arrival.socket, body) {
            pending.deliveries += 1
        }
    }

    mutating func notice(to member: Member, into outbox: inout Outbox, _ body: (inout ChatWriter) -> Void) {
        if outbox.write(to: member.peer, from: member.source, through: member.socket, body) {
            pending.deliveries += 1
        }
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafeRawBufferPointer) -> Bool {
    for i in 0..<b.count where a[i] != b[i] { return false }
    return true
}
