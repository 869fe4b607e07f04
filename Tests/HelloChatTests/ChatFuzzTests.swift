import HelloChat
import HelloChatWire
import HelloDatagram
import HelloFuzzHarness
import HelloService
import Testing

// The chat relay under random traffic (FuzzTests.swift's harness: `fuzz`, `replay`).
//
// A case makes a relay with settings drawn from the whole ranges hellod takes, ends
// included (`chatFuzzSettings`; tables halved until they fit a short case), and drives it
// as the worker does (each batch handled, its end written, the outbox sent) with a few
// legitimate clients (nicks and room names of up to 32 bytes) that follow docs/PROTOCOL.md
// (join with challenge and cookie, say, resend their unacknowledged messages, keepalive,
// resend, who, nick, leave; each with a tag of its own, a new secret per membership; when
// one moves, it goes on sending from the new address, is challenged there, and rejoins with
// its token and secret) and a few hostile sources:
// tokens of other members from their own addresses, other addresses' cookies, their own
// cookies after two epochs, short joins, cut or flipped datagrams, random bytes, the
// clients' own addresses forged, members' tokens in JOINs with another secret (a forged
// move), and hellod 1.x's datagrams (version 1: JOINs long and short, tokens and token 0).
// The clock moves by small steps and by jumps past the silence, eviction and cookie
// epochs; ticks run between batches.
//
// Checked after every datagram, batch and tick, from what the protocol promises:
// - the counters balance (read = replied + dropped, read = datagrams handed over; sent
//   datagrams are deliveries or the answers to requests), and a refusal (handle returning
//   false) changes nothing;
// - whatever a datagram's handling writes goes to its source or to a source that joined with
//   its own unexpired cookie, and to a source that has not, never more bytes than the
//   datagram it answers; a short JOIN gets nothing; nothing is written by a tick or a
//   batch's end but to such sources;
// - every datagram written is at most 1232 bytes and decodes as a relay's message, or is
//   one of version 1's two refusals, exactly, for a version-1 request; a CHALLENGE, NOT A
//   MEMBER or a JOIN's REFUSED carries the request's tag, and every WELCOME, EVENTS and
//   MEMBERS to a client its own tag;
// - a member's datagram from another address is not acted on (chat-moved), and gets at
//   most a CHALLENGE, none under 22 bytes; a JOIN with a member's token and another secret
//   moves nothing; a version-1 request gets its refusal within the budget, or nothing
//   (malformed) if it is a JOIN under 64 bytes or has token 0;
// - a cookie replayed from another address, or older than two epochs, makes no member;
// - a forged token (another member's, from another address) is dropped, and makes no event:
//   every message, leave, rename and join event of a client's session is one that client
//   asked for; a time-out comes only after the eviction time; NOT A MEMBER for a live
//   client's token only after it could have been evicted;
// - one (room, room sequence) is the same event for every receiver; a member's own SAY gets
//   exactly one room sequence; a member that never lost anything receives the room's
//   sequences in order without a gap, and at the end, every message it said has come back;
// - after every datagram and tick (every so many at large tables), the relay's tables agree
//   with a recount from its member slots (`tableProblems`: the room-name index finds every
//   room in use and holds nothing else, each prefix's count of memberships, the free rooms,
//   the slots marked in use); in half the cases the eviction sweep's budget is a few
//   steps, so that it stops and goes on across ticks and rooms;
// - nothing crashes: a crash prints the case's seed and settings (`CrashNote`).

struct ChatFuzzClient {
    /// Its address: it moves now and then (NAT rebinding), and rejoins from there.
    var peer: Endpoint
    var room: [UInt8]
    var nick: [UInt8]
    /// The tag it puts in all it sends, from its start; the relay's answers carry it.
    var tag: UInt64
    /// Its secret (sent only in JOIN) and the id events name it by, this membership's.
    var secret = ChatSecret(high: 0, low: 0)
    var id: UInt64 = 0
    var cookie = ChatCookie.none
    var cookieIssued: UInt64 = 0
    var token: UInt64 = 0
    /// Moved, and rejoining with its token from the new address; how many times it moved.
    var rebinding = false
    var moves = 0
    /// A JOIN with a cookie sent, its answer not yet read; and when.
    var joining = false
    var joinSent: UInt64 = 0
    /// The next room sequence it expects in order.
    var expected: UInt32 = 0
    var lossless = true
    /// Once silent as long as the eviction time: it may have been evicted.
    var evictable = false
    /// When it last sent with its token (or joined).
    var lastSent: UInt64 = 0
    var nextSequence: UInt32 = 1
    var unacked: [UInt32] = []
    /// Of this session: the room sequence each message came back as.
    var ownCopies: [UInt32: UInt32] = [:]
}

/// The relay, driven as the worker drives it, with what was written attributed to its cause.
final class ChatFuzzWorld {
    var service: ChatService
    var outbox: Outbox
    let settings: ChatSettings
    let second: UInt64 = 1_000_000_000
    var now: UInt64
    var clients: [ChatFuzzClient] = []
    /// Hostile sources, with a cookie each got at its own address (and when).
    var hostile: [(peer: Endpoint, cookie: ChatCookie, issued: UInt64, token: UInt64, tag: UInt64)] = []
    /// Sources that sent a JOIN with a cookie made for them, less than two epochs old.
    var validated: Set<Endpoint> = []
    /// Every client's id ever (one per membership), to the client, and what it asked for
    /// under it: client sequences said, nicks, a leave.
    var sessions: [UInt64: Int] = [:]
    var said: [UInt64: Set<UInt32>] = [:]
    var renames: [UInt64: [[UInt8]]] = [:]
    var left: Set<UInt64> = []
    /// (room, sequence) -> the event, as first received.
    var history: [[UInt8]: [UInt32: ChatEvent]] = [:]
    var instance: UInt64?
    var handed: UInt64 = 0
    /// Requests whose answer is a datagram of their own: counted replied once it is sent.
    var answeredRequests: UInt64 = 0
    /// Per datagram in the outbox: whether it answers a request (else it is a delivery).
    var answers: [Bool] = []
    let trace = FuzzBudget.environment("HELLOD_CHAT_TRACE") != nil
    var sentTotal: UInt64 = 0

    init(_ settings: ChatSettings, batchSize: Int, now: UInt64) {
        self.settings = settings
        service = ChatService(ServiceSettings(batchSize: batchSize, maxDatagram: 2048, policy: .open), chat: settings)
        outbox = Outbox(capacity: service.outboxCapacity, largestDatagram: service.largestDatagram)
        self.now = now
    }

    var epoch: UInt64 { settings.epochSeconds * second }

    /// Checks each datagram in the outbox from `start` on, as written for `cause`: to whom,
    /// how long, and that it decodes. Returns them decoded.
    func written(
        from start: Int, cause: (peer: Endpoint, length: Int, bytes: [UInt8])?,
        _ checks: inout Checks
    ) -> [(Endpoint, ChatMessage?)] {
        var result: [(Endpoint, ChatMessage?)] = []
        for entry in outbox.entries[start...] {
            let bytes = outbox.datagram(entry)
            let decoded = ChatMessage.decode(bytes)
            let message = decoded?.message
            checks.expect(bytes.count <= ChatWire.largestDatagram, "a datagram of \(bytes.count) bytes")
            if bytes.first == ChatWire.legacyVersion {
                // A version-1 refusal: only to a version-1 request, in one of its two forms.
                let request = cause?.bytes ?? []
                let refusal = [1, 134, 3, 0] + Array("chat protocol 2".utf8)
                let expected =
                    request.count >= 2 && request[1] == ChatType.join.rawValue
                    ? refusal + [UInt8](repeating: 0, count: 64 - refusal.count)
                    : [1, 133] + Array(request.dropFirst(2).prefix(8))
                checks.expect(
                    request.first == ChatWire.legacyVersion && bytes == expected,
                    "a version-1 datagram \(bytes.prefix(20)) for \(request.prefix(20))")
                checks.count("version-1 refusals")
            } else {
                switch message {
                case .challenge?, .welcome?, .events?, .members?, .notAMember?, .refused?: break
                default:
                    let what = "\(Array(bytes).prefix(16)) -> \(String(describing: message))"
                    checks.expect(false, "a datagram that is no relay message: \(what)")
                }
            }
            if let cause, entry.destination == cause.peer, let decoded {
                // What answers a source not proven carries the tag of what it sent (a refused
                // rename, to a member, the tag of the member's JOIN: not checked here).
                let join = cause.bytes.count > 1 && cause.bytes[1] == ChatType.join.rawValue
                let checked: Bool
                switch decoded.message {
                case .challenge, .notAMember: checked = true
                case .refused: checked = join
                default: checked = false
                }
                if checked {
                    let tag = cause.bytes.withUnsafeBytes { ChatWire.tag($0) }
                    checks.expect(
                        decoded.tag == tag,
                        "\(decoded.message) with tag \(decoded.tag), for tag \(String(describing: tag))")
                }
            }
            if !validated.contains(entry.destination) {
                if let cause {
                    checks.expect(
                        entry.destination == cause.peer,
                        "\(entry.destination), not validated, sent an answer to \(cause.peer)")
                    checks.expect(
                        bytes.count <= cause.length,
                        "\(bytes.count) bytes to \(entry.destination), not validated, for \(cause.length): \(String(describing: message))"
                    )
                } else {
                    checks.expect(false, "a tick or a batch's end wrote to \(entry.destination), not validated")
                }
            }
            result.append((entry.destination, message))
            answers.append(cause != nil)
            if trace {
                print(
                    "  -> \(entry.destination) \(cause == nil ? "delivery" : "answer"): \(message.map { "\($0)" } ?? "?")"
                )
            }
        }
        return result
    }

    /// Hands one datagram to the relay (sending the outbox first when it asks); returns
    /// what its handling wrote, and the counters before and after.
    func handle(_ bytes: [UInt8], from peer: Endpoint, split: Int?, _ checks: inout Checks)
        -> (out: [(Endpoint, ChatMessage?)], before: Counters, after: Counters)
    {
        if trace {
            print(
                "\(now / 1_000_000) ms: from \(peer): \(ChatMessage.decode(bytes).map { "\($0)" } ?? "\(bytes.count) bytes")"
            )
        }
        while true {
            let start = outbox.count
            let before = service.counters
            let handled = bytes.withUnsafeBytes { all -> Bool in
                let cut = min(split ?? all.count, all.count)
                let datagram = Datagram(
                    payload: UnsafeRawBufferPointer(rebasing: all[..<cut]),
                    continuation: UnsafeRawBufferPointer(rebasing: all[cut...]), peer: peer)
                return service.handle(datagram, now: now, into: &outbox)
            }
            if !handled {
                checks.expect(
                    outbox.count == start && service.counters == before, "a refused datagram changed something")
                checks.expect(start > 0, "an empty outbox refused a datagram")
                if start == 0 { return ([], before, before) }
                flush(&checks)
                continue
            }
            handed += 1
            checkTables(
                "after \(ChatMessage.decode(bytes).map { "\($0)" } ?? "\(bytes.count) bytes") from \(peer)", &checks)
            let after = service.counters
            let out = written(from: start, cause: (peer, bytes.count, bytes), &checks)
            if after.replied == before.replied && after.drops == before.drops {
                // Neither replied nor dropped yet: its answer is the first datagram written.
                answeredRequests += 1
                checks.expect(!out.isEmpty, "a request counted as answered wrote nothing")
            }
            checks.expect(
                after.read == before.read + 1
                    && after.drops.total + after.replied <= before.drops.total + before.replied + 1,
                "one datagram counted more than once")
            return (out, before, after)
        }
    }

    /// The recount (`tableProblems`) walks every room and slot: at large tables it runs
    /// after every so many datagrams and ticks instead of each, so that a case costs about
    /// the same whatever its tables.
    lazy var tableCheckInterval = max(1, settings.rooms * (1 + settings.membersPerRoom) / 256)
    var sinceTableCheck = 0

    func checkTables(_ when: String, _ checks: inout Checks, always: Bool = false) {
        sinceTableCheck += 1
        guard always || sinceTableCheck >= tableCheckInterval else { return }
        sinceTableCheck = 0
        let problems = service.tableProblems()
        checks.expect(problems.isEmpty, "tables \(when): \(problems.prefix(4).joined(separator: "; "))")
    }

    /// Sends the outbox: each datagram reaches its destination.
    func flush(_ checks: inout Checks) {
        let sent = outbox.entries.map { ($0.destination, ChatMessage.decode(outbox.datagram($0))) }
        let answered = answers
        answers = []
        service.recordSent(outbox.count, failed: 0)
        sentTotal += UInt64(outbox.count)
        outbox.removeAll()
        for ((to, decoded), answer) in zip(sent, answered) {
            for i in clients.indices where clients[i].peer == to {
                switch decoded?.message {
                case .welcome?, .events?, .members?:
                    checks.expect(
                        decoded?.tag == clients[i].tag,
                        "\(to) sent tag \(String(describing: decoded?.tag)), its client's is \(clients[i].tag)")
                default: break
                }
                receive(i, decoded?.message, answer: answer, &checks)
            }
        }
        let c = service.counters
        checks.expect(c.isBalanced, "unbalanced: read \(c.read), replied \(c.replied), dropped \(c.drops.total)")
        checks.expect(c.read == handed, "read \(c.read) of \(handed) handed")
        checks.expect(
            sentTotal == c.deliveries + answeredRequests && c.deliveryFailures == 0,
            "sent \(sentTotal): deliveries \(c.deliveries), answers \(answeredRequests)")
    }

    func endBatch(_ checks: inout Checks) {
        while true {
            let start = outbox.count
            let done = service.endBatch(now: now, into: &outbox)
            _ = written(from: start, cause: nil, &checks)
            if done { break }
            checks.expect(outbox.count > 0, "endBatch: more to come, with an empty outbox")
            if outbox.count == 0 { break }
            flush(&checks)
        }
        flush(&checks)
    }

    func tick(_ checks: inout Checks) {
        let start = outbox.count
        service.tick(now: now, into: &outbox)
        checkTables("after a tick", &checks)
        _ = written(from: start, cause: nil, &checks)
        endBatch(&checks)
    }

    /// A client reads what the relay sent it.
    func receive(_ i: Int, _ message: ChatMessage?, answer: Bool, _ checks: inout Checks) {
        switch message {
        case .challenge(let cookie)?:
            clients[i].cookie = cookie
            clients[i].cookieIssued = now
        case let .welcome(token, instance, next, _)?:
            checks.expect(clients[i].joining, "a WELCOME to \(clients[i].peer), which did not join")
            clients[i].joining = false
            if clients[i].rebinding {
                // The same membership at the new address: its place, and what it is sent next.
                checks.expect(
                    token == clients[i].token,
                    "\(clients[i].peer) moved and rejoined: token \(token), was \(clients[i].token)")
                checks.count("members that moved and rejoined")
                clients[i].rebinding = false
            } else {
                clients[i].expected = next
            }
            clients[i].token = token
            clients[i].lastSent = now
            clients[i].evictable = false
            checkInstance(instance, &checks)
        case let .events(instance, events)?:
            checkInstance(instance, &checks)
            for e in events { receive(i, e, answer: answer, &checks) }
        case .notAMember(let token)?:
            guard token == clients[i].token && token != 0 else { return }
            checks.expect(
                clients[i].evictable, "NOT A MEMBER to \(clients[i].peer), never silent long enough to be evicted")
            clients[i].token = 0
            clients[i].lossless = false
        case .members?, .refused?, nil, .join?, .say?, .keepalive?, .leave?, .resend?, .who?, .nick?:
            break
        }
    }

    func checkInstance(_ value: UInt64, _ checks: inout Checks) {
        if instance == nil { instance = value }
        checks.expect(instance == value, "instance \(value), was \(String(describing: instance))")
    }

    /// An event: `answer`, a copy asked for (history, RESEND, a SAY's again), else the
    /// room's delivery, in order.
    func receive(_ i: Int, _ e: ChatEvent, answer: Bool, _ checks: inout Checks) {
        let room = clients[i].room
        if let first = history[room]?[e.sequence] {
            checks.expect(first == e, "room sequence \(e.sequence) is \(first) and \(e)")
        } else {
            history[room, default: [:]][e.sequence] = e
        }
        // Whose event it is: each must be one its client asked for.
        if let owner = sessions[e.sender] {
            let o = clients[owner]
            switch e.kind {
            case .message:
                checks.expect(
                    said[e.sender]?.contains(e.clientSequence) == true, "a message of \(o.peer) it did not say: \(e)")
            case .left:
                checks.expect(left.contains(e.sender), "a leave of \(o.peer) it did not ask: \(e)")
            case .renamed:
                checks.expect(renames[e.sender]?.contains(e.text) == true, "a rename of \(o.peer) it did not ask: \(e)")
            case .timedOut:
                checks.expect(o.id != e.sender || o.evictable, "\(o.peer) timed out, never silent long enough")
            case .joined:
                break
            }
        }
        var c = clients[i]
        if e.kind == .message && e.sender == c.id {
            checks.expect(
                c.ownCopies[e.clientSequence, default: e.sequence] == e.sequence,
                "\(c.peer)'s message \(e.clientSequence) came back as \(c.ownCopies[e.clientSequence]!) and \(e.sequence)"
            )
            c.ownCopies[e.clientSequence] = e.sequence
            c.unacked.removeAll { $0 == e.clientSequence }
        }
        if c.token != 0 && !answer {
            checks.expect(
                e.sequence >= c.expected, "\(c.peer) was delivered room sequence \(e.sequence) after \(c.expected - 1)")
            checks.expect(
                !c.lossless || e.sequence == c.expected,
                "\(c.peer), which lost nothing, was delivered room sequence \(e.sequence), expecting \(c.expected)")
            c.expected = e.sequence + 1
        }
        clients[i] = c
    }
}

extension SplitMix64 {
    /// A setting from the whole of `range`, as hellod takes it: an end of it one time in
    /// four, anywhere in it (each power of two as likely) one in four, else one of `usual`,
    /// values that keep a short case busy.
    mutating func setting(_ range: ClosedRange<Int>, usual: [Int]) -> Int {
        switch int(0...7) {
        case 0: return range.lowerBound
        case 1: return range.upperBound
        case 2, 3:
            let bits = int(0...(Int.bitWidth - range.upperBound.leadingZeroBitCount))
            let high = min(range.upperBound, (1 << bits) - 1)
            return int(max(range.lowerBound, min(high >> 1 + 1, high))...max(range.lowerBound, high))
        default: return pick(usual)
        }
    }

    mutating func setting(_ range: ClosedRange<Int>, usual: [Int]) -> UInt64 {
        UInt64(setting(range, usual: usual) as Int)
    }
}

/// The relay's settings (and the worker's batch), each drawn from the whole range that
/// hellod takes (`require` in HelloDaemon.swift), ends included, so that a crash from any
/// setting in range is a failure here. Tables drawn too large for a case of a few
/// milliseconds are halved at random until they are not: at most 65,536 member slots, and
/// backlogs of at most 2 GiB of address space (untouched but for the rooms in use).
func chatFuzzSettings(_ rng: inout SplitMix64) -> (settings: ChatSettings, batchSize: Int) {
    var s = ChatSettings()
    s.rooms = rng.setting(1...65_536, usual: [1, 2, 3])
    s.membersPerRoom = rng.setting(1...4096, usual: [1, 2, 3, 4])
    s.membershipsPerPrefix = rng.setting(1...1_000_000, usual: [1, 2, 3])
    s.history = rng.setting(0...1024, usual: [0, 1, 4])
    s.backlog = rng.setting(1...65_536, usual: [1, 8, 80])
    s.maxMessage = rng.setting(0...ChatWire.maxText, usual: [0, 24, 28, 300])
    var batchSize: Int = rng.setting(1...1024, usual: [1, 2, 8])
    while s.rooms * s.membersPerRoom > 65_536
        || s.rooms * max(s.backlog, s.history, batchSize + s.membersPerRoom, ChatWire.maxResend)
            * (16 + 52 + max(s.maxMessage, 32)) > 1 << 31
    {
        switch rng.int(0...4) {
        case 0: s.rooms = max(s.rooms / 2, 1)
        case 1: s.membersPerRoom = max(s.membersPerRoom / 2, 1)
        case 2: s.backlog = max(s.backlog / 2, 1)
        case 3: s.history /= 2
        default: batchSize = max(batchSize / 2, 1)
        }
    }
    s.messageRate = rng.setting(1...1_000_000, usual: [1, 5, 100])
    s.messageBurst = rng.setting(1...1_000_000, usual: [1, 3, 10])
    // A room's deliveries: small enough to bind. hellod takes no burst under the members
    // of a room (a message to a full room would never go).
    s.roomDeliveryRate = rng.setting(1...1_000_000_000, usual: [4, 50, 1_000_000])
    s.roomDeliveryBurst = max(rng.setting(1...1_000_000_000, usual: [8, 20, 1_000_000]), UInt64(s.membersPerRoom))
    // What a member is sent again on request, in bytes: hellod takes no burst under one
    // largest datagram (a long event could never come again).
    s.repairByteRate = rng.setting(1...1_000_000_000, usual: [1, 2000, 65_536])
    s.repairByteBurst = max(
        rng.setting(1...1_000_000_000, usual: [1232, 5000, 78_848]), UInt64(ChatWire.largestDatagram))
    // Not options of hellod: as before.
    s.answerLimit = RateLimiter.Configuration(
        rate: rng.pick([1, 20, 1000]), burst: rng.pick([1, 5, 20]), tableSize: 64)
    s.joinLimit = RateLimiter.Configuration(
        rate: rng.setting(1...1_000_000, usual: [1, 4, 1000]),
        burst: rng.setting(1...1_000_000, usual: [1, 4, 16]), tableSize: 64)
    s.epochSeconds = rng.setting(1...86_400, usual: [10, 120])
    s.silenceSeconds = rng.setting(1...86_400, usual: [5, 35])
    s.evictSeconds = rng.oneIn(4) ? rng.setting(1...86_400, usual: [1, 60]) : s.silenceSeconds + rng.pick([1, 25])
    s.fanOutInterval = rng.setting(0...1_000_000, usual: [0, 0, 1000, 300_000]) * 1000
    s.workers = rng.setting(1...256, usual: [1, 1, 2])
    s.worker = rng.int(0...s.workers - 1)
    s.secret = (rng.next(), rng.next())
    return (s, batchSize)
}

/// The settings, as hellod's options (those it has) name them.
func describe(_ s: ChatSettings, batchSize: Int) -> String {
    "--batch \(batchSize) --chat-rooms \(s.rooms) --chat-members \(s.membersPerRoom) "
        + "--chat-memberships-per-prefix \(s.membershipsPerPrefix) --chat-history \(s.history) --chat-backlog \(s.backlog) "
        + "--chat-max-message \(s.maxMessage) --chat-message-rate \(s.messageRate) --chat-message-burst \(s.messageBurst) "
        + "--chat-room-delivery-rate \(s.roomDeliveryRate) --chat-room-delivery-burst \(s.roomDeliveryBurst) "
        + "--chat-repair-bytes-rate \(s.repairByteRate) --chat-repair-bytes-burst \(s.repairByteBurst) "
        + "--chat-join-rate \(s.joinLimit.rate) --chat-join-burst \(s.joinLimit.burst) --chat-epoch-s \(s.epochSeconds) "
        + "--chat-silence-s \(s.silenceSeconds) --chat-evict-s \(s.evictSeconds) --chat-fanout-us \(s.fanOutInterval / 1000) "
        + "--workers \(s.workers) (worker \(s.worker)); answers \(s.answerLimit.rate)/s, burst \(s.answerLimit.burst)"
}

func chatFuzzCase(_ rng: inout SplitMix64, _ checks: inout Checks) {
    let (s, batchSize) = chatFuzzSettings(&rng)
    checks.note(describe(s, batchSize: batchSize))
    let world = ChatFuzzWorld(s, batchSize: batchSize, now: UInt64(rng.int(1...1000)) * 1_000_000_000)
    // From bits already drawn, so that the fixed seeds' cases draw what they drew before.
    if s.secret.0 & 1 == 0 { world.service.sweepBudget = Int(s.secret.0 >> 1 % 5) + 1 }
    // In half the cases clients move (NAT rebinding), drawn from a generator of their own.
    var moves: SplitMix64? = s.secret.1 & 1 == 0 ? SplitMix64(seed: s.secret.1) : nil
    let second = world.second
    // Names of the longest too (32 bytes): every event carries a nick, a rename two.
    let rooms: [[UInt8]] = [
        Array("lobby".utf8), Array("r".utf8), Array("x".utf8), Array(String(repeating: "R", count: 32).utf8),
    ]
    let nicks: [[UInt8]] = [
        Array("ada".utf8), Array("bob".utf8), Array("cy".utf8), Array("dee".utf8), Array("ada2".utf8),
        Array(String(repeating: "l", count: 32).utf8), Array(String(repeating: "é", count: 16).utf8),
    ]
    for k in 0..<rng.int(1...4) {
        world.clients.append(
            ChatFuzzClient(
                peer: .v4(0x0a00_0001 + UInt32(k), port: 40000 + UInt16(k)),
                room: rng.pick(rooms), nick: rng.pick(nicks),
                tag: SipHasher.hash(key: s.secret, UInt64(k), 0x7461_67)))
    }
    for k in 0..<rng.int(1...3) {
        world.hostile.append(
            (
                peer: Endpoint.v4(0x0a42_0001 + UInt32(k), port: 50000), cookie: ChatCookie.none, issued: 0,
                token: 0,
                tag: SipHasher.hash(key: s.secret, UInt64(k), 0x686f_7374)
            ))
    }

    /// A datagram of a legitimate client, noted as sent, and whether it is a member's from
    /// an address it moved to.
    func legitimate(_ i: Int) -> (bytes: [UInt8], moved: Bool) {
        var c = world.clients[i]
        defer { world.clients[i] = c }
        if c.token != 0 && !c.rebinding && !c.evictable && moves?.oneIn(25) == true {
            // It moves: another port of its address, or another address (another prefix);
            // what is sent to the old one is lost. It rejoins with its token.
            c.moves += 1
            let port = 41000 + UInt16(i) + UInt16(c.moves % 200) * 100 % 24000
            c.peer =
                moves!.oneIn(2)
                ? .v4(c.peer.address.v4, port: port) : .v4(0x0a10_0000 + UInt32(i) << 12 + UInt32(c.moves), port: port)
            (c.rebinding, c.cookie, c.lossless) = (true, .none, false)
        }
        if c.rebinding && c.evictable {
            // Silent too long while it moved: perhaps evicted. A new session, as after NOT A MEMBER.
            (c.rebinding, c.token) = (false, 0)
        }
        if c.token == 0 || c.rebinding {
            // One JOIN with a cookie a batch: its answer comes at the batch's end.
            if c.cookie.isNone || world.now - c.cookieIssued >= world.epoch || rng.oneIn(8)
                || (c.joining && c.joinSent == world.now)
            {
                if c.rebinding && !c.joining && rng.oneIn(2) {
                    // Moved, it goes on as a member (not knowing it moved): not acted on,
                    // and challenged at the new address if 22 bytes or more.
                    let message: ChatMessage =
                        rng.oneIn(2)
                        ? .keepalive(token: c.token, highest: c.expected &- 1)
                        : .who(token: c.token)
                    return (message.encoded(tag: c.tag), true)
                }
                let join = ChatMessage.join(cookie: .none, secret: c.secret, token: 0, room: c.room, nick: c.nick)
                return (join.encoded(tag: c.tag, joinPadding: rng.pick([64, 64, 100, 1232])), false)
            }
            if c.rebinding {
                c.joining = true
                c.joinSent = world.now
                world.validated.insert(c.peer)
                let join = ChatMessage.join(
                    cookie: c.cookie, secret: c.secret, token: c.token, room: c.room, nick: c.nick)
                return (join.encoded(tag: c.tag), false)
            }
            c.secret = ChatSecret(high: rng.next() | 1, low: UInt64(i))
            c.id = c.secret.id
            world.sessions[c.id] = i
            (c.ownCopies, c.unacked, c.nextSequence) = ([:], [], 1)
            c.joining = true
            c.joinSent = world.now
            c.lossless = true
            world.validated.insert(c.peer)
            let join = ChatMessage.join(cookie: c.cookie, secret: c.secret, token: 0, room: c.room, nick: c.nick)
            return (join.encoded(tag: c.tag), false)
        }
        c.lastSent = world.now
        switch rng.int(0...19) {
        case 0...7:
            // At most 4 unacknowledged, none 60 behind the newest: the relay's window of
            // duplicates is 64.
            if !c.unacked.isEmpty && (c.unacked.count >= 4 || c.nextSequence - c.unacked.min()! >= 60 || rng.oneIn(2)) {
                let sequence = rng.pick(c.unacked)
                let say = ChatMessage.say(
                    token: c.token, clientSequence: sequence,
                    text: Array(Array("m\(sequence)".utf8).prefix(s.maxMessage)))
                return (say.encoded(tag: c.tag), false)
            }
            let sequence = c.nextSequence
            c.nextSequence += 1
            world.said[c.id, default: []].insert(sequence)
            c.unacked.append(sequence)
            var text = Array("m\(sequence)".utf8)
            if rng.oneIn(4) { text += [UInt8](repeating: 0x2e, count: rng.int(0...1000)) }
            let say = ChatMessage.say(token: c.token, clientSequence: sequence, text: Array(text.prefix(s.maxMessage)))
            return (say.encoded(tag: c.tag), false)
        case 8...10:
            return (ChatMessage.keepalive(token: c.token, highest: c.expected &- 1).encoded(tag: c.tag), false)
        case 11, 12:
            let first = c.expected &- UInt32(rng.int(0...80))
            return (
                ChatMessage.resend(token: c.token, first: first, count: UInt16(rng.int(0...64))).encoded(tag: c.tag),
                false
            )
        case 13, 14:
            return (ChatMessage.who(token: c.token).encoded(tag: c.tag), false)
        case 15, 16:
            var nick = rng.pick(nicks)
            if rng.oneIn(4) { nick = rng.pick([[], Array("a\u{202E}b".utf8), [UInt8](repeating: 0x61, count: 33)]) }
            world.renames[c.id, default: []].append(nick)
            return (ChatMessage.nick(token: c.token, nick: nick).encoded(tag: c.tag), false)
        default:
            if rng.oneIn(3) {
                world.left.insert(c.id)
                let token = c.token
                c.token = 0
                return (ChatMessage.leave(token: token).encoded(tag: c.tag), false)
            }
            return (ChatMessage.keepalive(token: c.token, highest: c.expected &- 1).encoded(tag: c.tag), false)
        }
    }

    /// Some valid-looking request with `token`.
    func request(token: UInt64) -> [UInt8] {
        let tag = rng.next()
        switch rng.int(0...5) {
        case 0:
            return ChatMessage.say(
                token: token, clientSequence: UInt32(rng.int(0...5)),
                text: Array("forged".utf8)
            ).encoded(tag: tag)
        case 1: return ChatMessage.leave(token: token).encoded(tag: tag)
        case 2: return ChatMessage.nick(token: token, nick: Array("eve".utf8)).encoded(tag: tag)
        case 3: return ChatMessage.keepalive(token: token, highest: 0).encoded(tag: tag)
        case 4: return ChatMessage.resend(token: token, first: 0, count: 64).encoded(tag: tag)
        default: return ChatMessage.who(token: token).encoded(tag: tag)
        }
    }

    /// A hostile datagram, its source, and what must become of it.
    enum Expect { case anything, forged, shortJoin, noMember, moved, legacy(answered: Bool), noMove(UInt64) }
    func hostileDatagram() -> (bytes: [UInt8], from: Endpoint, expect: Expect) {
        let h = rng.int(0...world.hostile.count - 1)
        let me = world.hostile[h].peer
        let victim = world.clients.isEmpty ? nil : rng.pick(world.clients)
        switch rng.int(0...13) {
        case 0, 1:
            // Another member's token (or a stale one), from here.
            guard let victim, victim.token != 0 else { return (request(token: rng.next()), me, .anything) }
            return (request(token: victim.token), me, .forged)
        case 2:
            // Another address's cookie, with or without its token.
            guard let victim, !victim.cookie.isNone else { break }
            let join = ChatMessage.join(
                cookie: victim.cookie, secret: ChatSecret(high: rng.next(), low: 0),
                token: rng.oneIn(2) ? victim.token : 0,
                room: victim.room, nick: Array("eve".utf8))
            return (join.encoded(tag: world.hostile[h].tag), me, .noMember)
        case 3:
            // Its own cookie: fresh (a member, then, maybe), or two epochs old (none).
            let mine = world.hostile[h]
            if mine.cookie.isNone || rng.oneIn(3) {
                break
            }
            let age = world.now - mine.issued
            // Now and then with a member's token (its secret unknown): a forged move.
            let stolen = rng.oneIn(3) ? victim?.token ?? 0 : 0
            let join = ChatMessage.join(
                cookie: mine.cookie, secret: ChatSecret(high: rng.next(), low: 0), token: stolen,
                room: rng.pick(rooms), nick: rng.pick(nicks))
            if age >= 2 * world.epoch { return (join.encoded(tag: world.hostile[h].tag), me, .noMember) }
            // Under one epoch old it is valid; under two, it may be (the previous epoch's).
            world.validated.insert(me)
            return (join.encoded(tag: world.hostile[h].tag), me, stolen != 0 ? .noMove(stolen) : .anything)
        case 4:
            // Its own token, if it has one.
            return (request(token: world.hostile[h].token), me, .anything)
        case 5:
            let join = ChatMessage.join(
                cookie: .none, secret: ChatSecret(high: rng.next(), low: 0), token: 0, room: [0x72],
                nick: [0x6e])
            return (
                join.encoded(tag: world.hostile[h].tag, joinPadding: rng.int(0...63)),
                rng.oneIn(2) ? me : victim?.peer ?? me, .shortJoin
            )
        case 6, 7:
            // A valid datagram cut short, lengthened or with a byte flipped.
            var bytes =
                rng.oneIn(2)
                ? request(token: victim?.token ?? 0)
                : ChatMessage.join(
                    cookie: victim?.cookie ?? .none, secret: testSecret(1), token: 0, room: [0x72],
                    nick: [0x6e]
                ).encoded(tag: world.hostile[h].tag)
            switch rng.int(0...2) {
            case 0: bytes.removeLast(rng.int(1...bytes.count))
            case 1: bytes += [UInt8](repeating: UInt8(rng.int(0...255)), count: rng.int(1...3))
            default: bytes[rng.int(0...bytes.count - 1)] ^= UInt8(1 << rng.int(0...7))
            }
            return (bytes, me, .anything)
        case 8:
            // The client's own address, forged: anything but its token.
            guard let victim else { break }
            let bytes =
                rng.oneIn(2)
                ? request(token: victim.token &+ 1)
                : ChatMessage.join(
                    cookie: .none, secret: testSecret(0), token: 0, room: [0x72],
                    nick: [0x6e]
                ).encoded(tag: world.hostile[h].tag)
            return (bytes, victim.peer, .anything)
        case 12, 13:
            // hellod 1.x's client: a JOIN (64 bytes at least, else nothing), a request with a
            // token (0: nothing), each with whatever follows.
            let type = rng.oneIn(2) ? ChatType.join.rawValue : UInt8(rng.int(2...7))
            let token: UInt64 = rng.oneIn(4) ? 0 : rng.next()
            let head: [UInt8] = [1, type] + withUnsafeBytes(of: token.bigEndian) { Array($0) }
            let length =
                type == ChatType.join.rawValue ? rng.pick([10, 63, 64, 64, 100, 1232]) : rng.pick([10, 14, 22, 100])
            let bytes = head + (10..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let answered = type == ChatType.join.rawValue ? length >= 64 : token != 0
            return (bytes, rng.oneIn(4) ? victim?.peer ?? me : me, .legacy(answered: answered))
        default:
            break
        }
        // Random bytes, or a JOIN without a cookie (a fresh cookie for it, then).
        if rng.oneIn(2) {
            return (
                ChatMessage.join(
                    cookie: .none, secret: testSecret(0), token: 0, room: [0x72],
                    nick: [0x6e]
                ).encoded(tag: world.hostile[h].tag), me, .anything
            )
        }
        var bytes = (0..<rng.pick([0, 1, 2, 10, 64, rng.int(0...1300)])).map { _ in
            UInt8(truncatingIfNeeded: rng.next())
        }
        if bytes.count >= 2 && rng.oneIn(2) { (bytes[0], bytes[1]) = (UInt8(rng.int(1...2)), UInt8(rng.int(0...8))) }
        return (bytes, me, .anything)
    }

    func send(_ bytes: [UInt8], from peer: Endpoint, expect: Expect) {
        let split: Int? = rng.oneIn(4) ? rng.int(0...bytes.count) : nil
        let (out, before, after) = world.handle(bytes, from: peer, split: split, &checks)
        for (to, message) in out where to == peer {
            if case .challenge(let cookie)? = message, let h = world.hostile.firstIndex(where: { $0.peer == peer }) {
                (world.hostile[h].cookie, world.hostile[h].issued) = (cookie, world.now)
            }
            if case .welcome(let token, _, _, _)? = message,
                let h = world.hostile.firstIndex(where: { $0.peer == peer })
            {
                world.hostile[h].token = token
            }
        }
        switch expect {
        case .anything:
            break
        case .forged:
            checks.expect(
                after.drops.total == before.drops.total + 1 && after.replied == before.replied,
                "a forged token was not dropped: \(ChatMessage.decode(bytes).map { "\($0)" } ?? "?")")
            checks.expect(out.allSatisfy { $0.0 == peer }, "a forged token made a datagram to another")
        case .shortJoin:
            checks.expect(
                out.isEmpty && after.drops[.chatShortJoin] == before.drops[.chatShortJoin] + 1,
                "a short JOIN of \(bytes.count) bytes got \(out.map(\.1))")
        case .noMember:
            for (_, message) in out {
                if case .welcome? = message { checks.expect(false, "a replayed or expired cookie made a member") }
            }
        case .noMove(let token):
            // A member's token with another secret moves nothing: no WELCOME with it.
            for (_, message) in out {
                if case .welcome(token, _, _, _)? = message {
                    checks.expect(
                        false,
                        "a JOIN with a stolen token moved its member")
                }
            }
        case .moved:
            // A member's datagram from an address that is not its own: not acted on, a
            // CHALLENGE for the new address at most (22 bytes or more, within the budget).
            let counted =
                after.drops[.chatMoved] == before.drops[.chatMoved] + 1
                || (bytes.count >= ChatWire.challengeLength
                    && after.drops[.chatRateLimited] == before.drops[.chatRateLimited] + 1)
            checks.expect(counted && after.replied == before.replied, "a moved member's datagram was acted on")
            checks.expect(out.allSatisfy { $0.0 == peer }, "a moved member's datagram made a datagram to another")
            if bytes.count < ChatWire.challengeLength {
                checks.expect(
                    out.isEmpty,
                    "a short datagram from a moved member was answered")
            }
            checks.count("moved members' datagrams")
        case .legacy(let answered):
            // Version 1: a refusal in its format within the budget (`written` checks its
            // bytes), or nothing.
            if answered {
                let counted =
                    after.drops[.chatOldVersion] == before.drops[.chatOldVersion] + 1 && out.count == 1
                    || after.drops[.chatRateLimited] == before.drops[.chatRateLimited] + 1 && out.isEmpty
                checks.expect(counted, "a version-1 request of \(bytes.count) bytes got \(out.count) datagrams")
            } else {
                checks.expect(
                    out.isEmpty && after.drops[.chatMalformed] == before.drops[.chatMalformed] + 1,
                    "a version-1 request without token or short got \(out.count) datagrams")
            }
        }
    }

    for _ in 0..<rng.int(20...120) {
        let ticks = rng.oneIn(10)
        switch rng.int(0...9) {
        case 0:
            world.now += rng.pick([
                1, second / 2, 5 * second, s.silenceSeconds * second, s.evictSeconds * second,
                world.epoch, 2 * world.epoch + 1,
            ])
        default:
            world.now += UInt64(rng.int(0...(ticks ? 2_000_000_000 : 200_000_000)))
        }
        // A member silent this long is sent nothing more; this long, it is evicted (hellod
        // takes either time shorter than the other).
        for i in world.clients.indices where world.clients[i].token != 0 {
            let silent = world.now - world.clients[i].lastSent
            if silent >= s.silenceSeconds * second || silent >= s.evictSeconds * second {
                world.clients[i].lossless = false
            }
            if silent >= s.evictSeconds * second { world.clients[i].evictable = true }
        }
        if ticks {
            world.tick(&checks)
            continue
        }
        for _ in 0..<rng.int(1...12) {
            if !world.clients.isEmpty && rng.oneIn(2) {
                let i = rng.int(0...world.clients.count - 1)
                let (bytes, moved) = legitimate(i)
                send(bytes, from: world.clients[i].peer, expect: moved ? .moved : .anything)
            } else {
                let h = hostileDatagram()
                send(h.bytes, from: h.from, expect: h.expect)
            }
        }
        world.endBatch(&checks)
        if !checks.failures.isEmpty { return }
    }

    // Quiet: each member that lost nothing keeps alive and says again what has not come
    // back, until all has. A round is long enough for the room's and the member's limits to
    // let through a message per member however low they are drawn (no tick runs: nobody
    // is evicted for it).
    let round = max(2 * second, 64 * (second / s.roomDeliveryRate), 2 * (second / s.messageRate))
    for _ in 0..<40 {
        guard world.clients.contains(where: { $0.token != 0 && $0.lossless && !$0.unacked.isEmpty }) else { break }
        world.now += round
        for i in world.clients.indices where world.clients[i].token != 0 && world.clients[i].lossless {
            world.clients[i].lastSent = world.now
            let c = world.clients[i]
            send(
                ChatMessage.keepalive(token: c.token, highest: c.expected &- 1).encoded(tag: c.tag), from: c.peer,
                expect: .anything)
            for sequence in c.unacked.prefix(2) {
                send(
                    ChatMessage.say(
                        token: c.token, clientSequence: sequence,
                        text: Array(Array("m\(sequence)".utf8).prefix(s.maxMessage))
                    )
                    .encoded(tag: c.tag),
                    from: c.peer, expect: .anything)
            }
        }
        world.endBatch(&checks)
    }
    world.checkTables("at the end", &checks, always: true)
    for c in world.clients where c.token != 0 && c.lossless {
        checks.expect(c.unacked.isEmpty, "\(c.peer), which lost nothing, never got back its messages \(c.unacked)")
        checks.count("members that lost nothing")
    }
    checks.count("cases")
    let counters = world.service.counters
    if counters.replied > 0 { checks.count("cases with replies") }
    if counters.drops[.chatBadToken] > 0 { checks.count("cases with forged tokens") }
    if counters.drops[.chatBadCookie] > 0 { checks.count("cases with bad cookies") }
    if counters.drops[.chatMoved] > 0 { checks.count("cases with moved members' datagrams") }
    if counters.drops[.chatOldVersion] > 0 { checks.count("cases with version-1 refusals") }
    if counters.drops[.chatRoomRateLimited] > 0 { checks.count("cases with room-rate-limited messages") }
    if counters.deliveries > 0 { checks.count("cases with deliveries") }
}

/// The chat relay under legitimate and hostile traffic, in the fuzz harness
/// (HelloFuzzHarness: HELLOD_FUZZ_SECONDS, HELLOD_FUZZ_SEED, HELLOD_FUZZ_CASES).
@Suite(.serialized) struct ChatFuzzTests {
    @Test func chat() {
        fuzz("chat", share: 0.2, cases: 100_000, floor: 30, chatFuzzCase)
    }

    /// The same few cases on every run, whatever the seed drawn.
    @Test func fixedSeeds() {
        for seed: UInt64 in 1...16 {
            #expect(replay(chatFuzzCase, seed: seed) == [], "chat, case seed \(seed)")
        }
    }
}
