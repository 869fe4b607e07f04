import Glibc
import HelloCore
import Testing

// Property tests over random inputs: the reply core, the segment planner and the grouping
// by peer, each checked against what it promises rather than against itself.
//
// A run draws one seed and prints it first (a crash then still leaves it behind). Each
// property stops after its case count or its share of the time budget, whichever comes
// first, and at its first failing case, which it reports with its seeds:
//
//   HELLOD_FUZZ_SECONDS=60 swift test --filter FuzzTests     a longer run (default 2 s)
//   HELLOD_FUZZ_SEED=0x... swift test --filter FuzzTests     the same cases again (given the
//                                                             time to reach the failing one)
//   HELLOD_FUZZ_CASES=n                                       another case count per property
//
// A failing case replays alone from its case seed, which makes it a regression test:
// `#expect(replay(replyCoreCase, seed: 0x...) == [])`.

// MARK: - The harness

/// SplitMix64: a generator whose whole state is one number, so a case replays from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// True one time in `n`.
    mutating func oneIn(_ n: Int) -> Bool { Int.random(in: 0..<n, using: &self) == 0 }

    mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }
}

enum FuzzBudget {
    static let seconds = environment("HELLOD_FUZZ_SECONDS").flatMap(Double.init) ?? 2
    static let cases = environment("HELLOD_FUZZ_CASES").flatMap { Int($0) }
    static let seed = environment("HELLOD_FUZZ_SEED").flatMap(parseSeed) ?? UInt64.random(in: 0...UInt64.max)

    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    static func parseSeed(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// The failed checks of one case; a handful is enough to see what went wrong.
struct Checks {
    private(set) var failures: [String] = []

    mutating func expect(_ condition: Bool, _ what: @autoclosure () -> String) {
        if !condition && failures.count < 8 { failures.append(what()) }
    }
}

/// Runs `property` on fresh cases until `cases` ran or `share` of the budget's seconds went.
func fuzz(_ name: String, share: Double, cases: Int, _ property: (inout SplitMix64, inout Checks) -> Void) {
    let clock = ContinuousClock()
    let start = clock.now
    let budget = Duration.seconds(FuzzBudget.seconds * share)
    let cases = FuzzBudget.cases ?? cases
    print("fuzz \(name): HELLOD_FUZZ_SEED=\(hex(FuzzBudget.seed))")
    var seeds = SplitMix64(seed: FuzzBudget.seed)
    var ran = 0
    while ran < cases && clock.now - start < budget {
        let seed = seeds.next()
        let failures = replay(property, seed: seed)
        ran += 1
        if !failures.isEmpty {
            Issue.record("""
                \(name): case \(ran) of HELLOD_FUZZ_SEED=\(hex(FuzzBudget.seed)) (case seed \(hex(seed))) failed:
                  \(failures.joined(separator: "\n  "))
                """)
            break
        }
    }
    print("fuzz \(name): \(ran) cases in \(clock.now - start)")
}

/// The failed checks of one case, replayed from its case seed.
func replay(_ property: (inout SplitMix64, inout Checks) -> Void, seed: UInt64) -> [String] {
    var rng = SplitMix64(seed: seed)
    var checks = Checks()
    property(&rng, &checks)
    return checks.failures
}

@Suite(.serialized) struct FuzzTests {
    @Test func replyCore() {
        fuzz("reply core", share: 0.5, cases: 100_000, replyCoreCase)
    }

    @Test func segmentPlanner() {
        fuzz("segment planner", share: 0.25, cases: 1_000_000, segmentPlannerCase)
    }

    @Test func peerGrouping() {
        fuzz("peer grouping", share: 0.25, cases: 1_000_000, peerGroupingCase)
    }

    /// The same few cases on every run, whatever the seed drawn.
    @Test func fixedSeeds() {
        for seed: UInt64 in 1...16 {
            #expect(replay(replyCoreCase, seed: seed) == [], "reply core, case seed \(seed)")
            #expect(replay(segmentPlannerCase, seed: seed) == [], "segment planner, case seed \(seed)")
            #expect(replay(peerGroupingCase, seed: seed) == [], "peer grouping, case seed \(seed)")
        }
    }
}

// MARK: - Inputs

/// A peer, with what it is known by construction: the expectations below never ask
/// PeerAddress what it thinks.
struct FuzzPeer: CustomStringConvertible {
    var address: PeerAddress
    var port: UInt16
    /// IPv4, or IPv4 in a v4-mapped IPv6 address (::ffff:a.b.c.d).
    var overIPv4: Bool
    var loopback: Bool
    /// The address's bits: IPv4 in the low 32.
    var high: UInt64
    var low: UInt64

    /// 65535 less the IPv4 and UDP headers; over IPv6, whose header is not counted, less UDP's.
    var largestPayload: Int { overIPv4 ? 65535 - 20 - 8 : 65535 - 8 }

    var description: String { "\(address)\(overIPv4 ? " (IPv4)" : "")\(loopback ? " (loopback)" : "")" }

    static func v4(_ a: UInt32, port: UInt16, mapped: Bool) -> FuzzPeer {
        let address: PeerAddress = mapped ? .v6(high: 0, low: 0xffff_0000_0000 | UInt64(a), port: port) : .v4(a, port: port)
        return FuzzPeer(address: address, port: port, overIPv4: true, loopback: a >> 24 == 127, high: 0, low: UInt64(a))
    }

    static func v6(high: UInt64, low: UInt64, port: UInt16, loopback: Bool) -> FuzzPeer {
        FuzzPeer(address: .v6(high: high, low: low, port: port), port: port, overIPv4: false, loopback: loopback,
                 high: high, low: low)
    }

    static func random(_ rng: inout SplitMix64, ownPorts: [UInt16]) -> FuzzPeer {
        let special: [UInt16] = [0, 1, 7, 19, 53, 123, 1023, 1024, 1025, 65535, UInt16(rng.int(1...1023))]
        let port: UInt16 = rng.oneIn(3) ? rng.pick(special + ownPorts) : UInt16(rng.int(1024...65535))
        let a = UInt32(truncatingIfNeeded: rng.next())
        let loopback4 = 0x7f00_0000 | a & 0x00ff_ffff
        switch rng.int(0...7) {
        case 0, 1:
            return .v4(a >> 24 == 127 ? a ^ 0x8000_0000 : a, port: port, mapped: false)
        case 2:
            return .v4(loopback4, port: port, mapped: false)
        case 3:
            return .v4(rng.oneIn(2) ? loopback4 : a, port: port, mapped: true)
        case 4:
            return .v6(high: 0, low: 1, port: port, loopback: true)
        case 5:
            // Next to ::1 and ::ffff:0:0/96 but neither: ::, ::2, ::fffe:.., ::1:ffff:..,
            // ::a.b.c.d (IPv4-compatible, not mapped), and the same low halves under a prefix.
            let high: UInt64 = rng.pick([0, 0, 0, 1, 1 << 63, 0xfe80 << 48])
            var low: UInt64 = rng.pick([0, 2, 0xfffe_0000_0000 | UInt64(a), 0x1_ffff_0000_0000 | UInt64(a), UInt64(a), ~0])
            if high == 0 && low == 1 { low = 2 }
            return .v6(high: high, low: low, port: port, loopback: false)
        default:
            let high = rng.oneIn(4) ? 0xfe80 << 48 : rng.next() | 1 << 61  // link-local, or anything but ::/3
            return .v6(high: high, low: rng.next(), port: port, loopback: false)
        }
    }

    /// Another peer next to this one: one address bit flipped (never into or out of ::1
    /// or ::ffff:0:0/96), or another port.
    func neighbour(_ rng: inout SplitMix64) -> FuzzPeer {
        let port = rng.oneIn(3) ? UInt16(rng.int(1024...65535)) : self.port
        if overIPv4 {
            return .v4(UInt32(truncatingIfNeeded: low) ^ 1 << UInt32(rng.pick([0, 0, 1, 7, 8, rng.int(0...31)])), port: port,
                       mapped: rng.oneIn(2))
        }
        guard high != 0 else { return .v6(high: high, low: low, port: port, loopback: loopback) }
        return .v6(high: high, low: low ^ 1 << UInt64(rng.pick([0, 0, 1, 62, 63, rng.int(0...63)])), port: port,
                   loopback: false)
    }

    /// The source prefix one rate limit covers.
    func prefix(_ limit: RateLimiter.Configuration) -> [UInt64] {
        func mask(_ bits: Int, width: Int) -> UInt64 {
            bits <= 0 ? 0 : bits >= width ? ~0 : ~0 << UInt64(width - bits)
        }
        if overIPv4 {
            return [4, low & mask(limit.ipv4PrefixLength, width: 32) & 0xffff_ffff]
        }
        return [6, high & mask(limit.ipv6PrefixLength, width: 64), low & mask(limit.ipv6PrefixLength - 64, width: 64)]
    }
}

struct FuzzRequest {
    var bytes: [UInt8]
    var truncated: Bool
    var peer: FuzzPeer
    /// The local address it came to: a reply leaves from there, so it is part of the route.
    var local: Int

    /// A request's size: mostly small, often at the edges of what UDP carries over IPv4
    /// and IPv6 and of what a hello reply still fits in.
    static func size(_ rng: inout SplitMix64, heavy: Bool) -> Int {
        switch rng.int(0...15) {
        case 0...7: return rng.int(0...16)
        case 8...10: return rng.int(0...1500)
        case 11, 12: return rng.pick([0, 1, 7, 8, 65498, 65499, 65500, 65506, 65507, 65508, 65519, 65520, 65527])
        default: return heavy ? rng.int(0...65527) : rng.int(0...9000)
        }
    }

    /// A datagram of `size` bytes read into `maxDatagram`: cut and flagged as the kernel
    /// does when it is larger, else flagged now and then anyway.
    static func random(_ rng: inout SplitMix64, size: Int, maxDatagram: Int, peer: FuzzPeer, locals: Int) -> FuzzRequest {
        let length = min(size, maxDatagram)
        let fill = Int32(truncatingIfNeeded: rng.next() & 0xff)
        var bytes = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            if length > 0 { memset(buffer.baseAddress!, fill, length) }
            count = length
        }
        for _ in 0..<min(length, 4) {
            bytes[rng.int(0...length - 1)] = UInt8(truncatingIfNeeded: rng.next())
        }
        if length > 0 {
            bytes[length - 1] = UInt8(truncatingIfNeeded: rng.next())
        }
        return FuzzRequest(bytes: bytes, truncated: size > maxDatagram || rng.oneIn(12), peer: peer,
                           local: rng.int(0...locals - 1))
    }
}

/// What became of one request.
enum Verdict: Equatable, CustomStringConvertible {
    case reply
    case drop(DropReason)

    var description: String {
        switch self {
        case .reply: return "reply"
        case .drop(let reason): return reason.name
        }
    }
}

/// What may become of `request`, worked out from the documented order of the checks:
/// truncated, privileged source port, own port, rate limited, reply too large. Whether the
/// limiter lets a request through is its own business; only requests it is asked about
/// (a limit set, and not from loopback unless loopback is limited) may be refused by it.
func allowedVerdicts(_ request: FuzzRequest, mode: ReplyMode, policy: AdmissionPolicy) -> [Verdict] {
    if request.truncated { return [.drop(.truncated)] }
    let port = request.peer.port
    if port < 1024 && !policy.allowPrivilegedSourcePorts { return [.drop(.privilegedSourcePort)] }
    if !policy.allowOwnPorts && policy.ownPorts.contains(port) { return [.drop(.ownPort)] }
    let replyLength = mode == .hello ? "Hello, ".utf8.count + request.bytes.count + 1 : request.bytes.count
    let last: Verdict = replyLength <= request.peer.largestPayload ? .reply : .drop(.replyTooLarge)
    let limited = policy.rateLimit != nil && (policy.limitLoopback || !request.peer.loopback)
    return limited ? [.drop(.rateLimited), last] : [last]
}

/// The reply built from the words of the rule, not from its code.
func expectedReply(to bytes: [UInt8], mode: ReplyMode) -> [UInt8] {
    mode == .hello ? Array("Hello, ".utf8) + bytes + Array("!".utf8) : bytes
}

/// Byte-for-byte equality by memcmp: unoptimized test code would compare element by element.
func same(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
    b.withUnsafeBytes { b in a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0) }
}

func randomPolicy(_ rng: inout SplitMix64) -> AdmissionPolicy {
    if rng.oneIn(6) { return .open }
    var policy = AdmissionPolicy()
    policy.allowPrivilegedSourcePorts = rng.oneIn(3)
    policy.allowOwnPorts = rng.oneIn(3)
    policy.ownPorts = (0..<rng.int(0...3)).map { _ in rng.pick([9999, 7, 53, 1024, 65535, UInt16(rng.int(1...65535))]) }
    policy.limitLoopback = rng.oneIn(2)
    if rng.oneIn(4) {
        policy.rateLimit = nil
    } else {
        // Within what hellod's options accept; tables small, so sets fill up.
        policy.rateLimit = RateLimiter.Configuration(
            rate: rng.pick([1, 10, 1000, 1_000_000_000, UInt64(rng.int(1...1_000_000_000))]),
            burst: rng.pick([1, 2, 200, 1_000_000_000, UInt64(rng.int(1...1000))]),
            ipv4PrefixLength: rng.pick([0, 1, 24, 31, 32, rng.int(0...32)]),
            ipv6PrefixLength: rng.pick([0, 1, 48, 63, 64, 65, 127, 128, rng.int(0...128)]),
            tableSize: rng.pick([4, 5, 8, 16, 64, 4096, rng.int(4...65536)]))
    }
    return policy
}

/// A hash of a peer for the grouping; equal peers, equal hashes.
func peerHash(_ peer: PeerAddress) -> UInt64 {
    PeerGrouping.mix(peer.high ^ PeerGrouping.mix(peer.low ^ UInt64(peer.port) << 48)) ^ (peer.family == .v4 ? 4 : 6)
}

// MARK: - The reply core

/// One engine through a few batches, each as the worker runs it: grouped by peer, each
/// request answered or dropped, the plan cut into sends, the sends counted.
func replyCoreCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    let mode: ReplyMode = rng.oneIn(2) ? .hello : .echo
    let rule = ReplyRule(mode: mode)
    let capacity = rng.pick([1, 2, 3, rng.int(1...16), rng.int(1...64), 64, rng.int(1...1024), 1024])
    let maxDatagram = rng.pick([0, 1, 8, 1500, 65499, 65500, 65507, 65508, 65527, 65527, rng.int(1...65527)])
    let policy = randomPolicy(&rng)
    let heavy = rng.oneIn(8)
    var peers: [FuzzPeer] = []
    for _ in 0..<rng.pick([1, 2, 3, 8, 64, 1000]) {
        peers.append(!peers.isEmpty && rng.oneIn(3) ? rng.pick(peers).neighbour(&rng)
                                                     : FuzzPeer.random(&rng, ownPorts: policy.ownPorts))
    }
    let locals = rng.pick([1, 1, 2, 3])
    let setting = "\(mode) batch \(capacity) max \(maxDatagram) \(policy)"

    var engine = ReplyEngine(rule: rule, batchSize: capacity, maxDatagram: maxDatagram, policy: policy)
    var grouping = PeerGrouping(capacity: capacity)
    let planner = SegmentPlanner(maxSegments: 64)
    var now = rng.pick([0, 1, 1_000_000_000, UInt64(rng.int(0...(1 << 50)))])
    var read: UInt64 = 0
    var admitted: [[UInt64]: (since: UInt64, count: UInt64)] = [:]

    for _ in 0..<rng.int(1...4) {
        now += rng.pick([0, 1, 1000, 1_000_000, 1_000_000_000, UInt64(rng.int(0...10_000_000_000))])
        let count = rng.pick([1, capacity, rng.int(1...capacity)])
        let requests = (0..<count).map { _ in
            FuzzRequest.random(&rng, size: FuzzRequest.size(&rng, heavy: heavy), maxDatagram: maxDatagram,
                               peer: rng.pick(peers), locals: locals)
        }
        engine.beginBatch(now: now)
        grouping.group(count: count, hash: { peerHash(requests[$0].peer.address) },
                       sameKey: { requests[$0].peer.address == requests[$1].peer.address })
        let order = (0..<count).map { grouping.order[$0] }
        checkGrouping(order, keys: requests.map(\.peer.address), &check)
        guard check.failures.isEmpty else { return }

        var replied: [Int] = []
        for i in order {
            let request = requests[i]
            let before = engine.counters
            let planned = engine.plan.count
            request.bytes.withUnsafeBytes { bytes in
                // As the socket layer does: the first bytes in a head buffer, the rest after.
                let head = min(bytes.count, 512)
                engine.respond(to: Request(payload: UnsafeRawBufferPointer(rebasing: bytes[..<head]),
                                           continuation: UnsafeRawBufferPointer(rebasing: bytes[head...]),
                                           truncated: request.truncated, peer: request.peer.address),
                               index: i)
            }
            let after = engine.counters
            read += 1
            var verdict: Verdict?
            if engine.plan.count == planned + 1 && after.drops == before.drops {
                verdict = .reply
                replied.append(i)
            } else if engine.plan.count == planned && after.drops.total == before.drops.total + 1 {
                verdict = DropReason.allCases.first { after.drops[$0] == before.drops[$0] + 1 }.map { .drop($0) }
            }
            let allowed = allowedVerdicts(request, mode: mode, policy: policy)
            check.expect(after.read == before.read + 1, "read counted \(after.read - before.read) times")
            check.expect(verdict.map(allowed.contains) ?? false,
                         "\(request.bytes.count) bytes\(request.truncated ? " truncated" : "") from \(request.peer): "
                         + "\(verdict?.description ?? "no single verdict"), expected one of \(allowed); \(setting)")

            // What the limiter lets through: a prefix gets its burst, then its rate, no more.
            if let limit = policy.rateLimit, allowed.contains(.drop(.rateLimited)), let verdict, verdict != .drop(.rateLimited) {
                let key = request.peer.prefix(limit)
                var seen = admitted[key] ?? (since: now, count: 0)
                seen.count += 1
                admitted[key] = seen
                let most = limit.burst + (now - seen.since) / max(1_000_000_000 / limit.rate, 1)
                check.expect(seen.count <= most, "\(request.peer)'s prefix got \(seen.count) replies, at most \(most) allowed; \(setting)")
            }
        }

        // The counters balance before and after the plan is sent.
        check.expect(engine.counters.read == read, "read \(engine.counters.read), \(read) requests")
        check.expect(engine.counters.read == engine.counters.replied + UInt64(engine.plan.count) + engine.counters.drops.total,
                     "before sending: read \(engine.counters.read) != replied + planned + dropped")

        // Each reply is its request's, in the order answered, side by side from the start.
        let entries = engine.plan.entries
        check.expect(entries.map { Int($0.request) } == replied, "the plan's requests are not the ones answered")
        var offset = 0
        for entry in entries {
            let request = requests[Int(entry.request)]
            let bytes = engine.plan.bytes(of: entry)
            check.expect(Int(entry.offset) == offset, "reply to \(entry.request) at \(entry.offset), not \(offset)")
            check.expect(same(bytes, rule.reply(to: request.bytes)), "reply to \(entry.request) is not ReplyRule's")
            check.expect(same(bytes, expectedReply(to: request.bytes, mode: mode)), "reply to \(entry.request) is wrong")
            offset += Int(entry.length)
        }
        check.expect(engine.plan.bufferUsed == offset && offset <= engine.plan.bufferCapacity,
                     "plan uses \(engine.plan.bufferUsed) of \(engine.plan.bufferCapacity) bytes, replies \(offset)")

        checkSends(entries, planner, plainThrough: -1,
                   largestPayload: { requests[$0].peer.largestPayload },
                   sameRoute: { requests[$0].peer.address == requests[$1].peer.address && requests[$0].local == requests[$1].local },
                   &check)

        let failed = rng.oneIn(4) ? rng.int(0...entries.count) : 0
        let sent = engine.counters
        engine.recordSent(replies: entries.count - failed, failed: failed)
        check.expect(engine.counters.replied == sent.replied + UInt64(entries.count - failed), "replies not counted")
        check.expect(engine.counters.drops[.sendFailed] == sent.drops[.sendFailed] + UInt64(failed), "send failures not counted")
        check.expect(engine.counters.isBalanced, "unbalanced after the send: \(engine.counters)")
        guard check.failures.isEmpty else { return }
    }
}

// MARK: - The segment planner

/// Walks a plan's sends as DatagramBatch does, so every entry must be in exactly one send,
/// in order; checks each send against every rule of a segmented send, and that it stops
/// only where a rule says so.
func checkSends(_ entries: UnsafeBufferPointer<Outgoing>, _ planner: SegmentPlanner, plainThrough: Int,
                largestPayload: (Int) -> Int, sameRoute: (Int, Int) -> Bool, _ check: inout Checks) {
    var e = 0
    while e < entries.count {
        let send = planner.send(from: e, of: entries, plainThrough: plainThrough, largestPayload: largestPayload,
                                sameRoute: sameRoute)
        let at = "send from entry \(e) (\(send.count) entries, \(send.bytes) bytes)"
        check.expect(send.firstEntry == e, "\(at) says it starts at \(send.firstEntry)")
        guard send.count >= 1 && e + send.count <= entries.count else {
            check.expect(false, "\(at): outside the plan of \(entries.count)")
            return
        }
        let head = entries[e]
        let segment = Int(head.length)
        let members = Array(entries[e..<e + send.count])
        let bytes = members.reduce(0) { $0 + Int($1.length) }
        check.expect(send.bytes == bytes, "\(at): the entries hold \(bytes) bytes")
        if send.count > 1 {
            check.expect(send.count <= planner.maxSegments, "\(at): more than \(planner.maxSegments) segments")
            check.expect(e > plainThrough, "\(at): starts at or before plainThrough \(plainThrough)")
            check.expect(segment > 0, "\(at): empty segments")
            check.expect(bytes <= largestPayload(Int(head.request)), "\(at): larger than one datagram to its peer")
            var offset = Int(head.offset)
            for (j, member) in members.enumerated() {
                check.expect(Int(member.offset) == offset, "\(at): entry \(e + j) not next to the one before")
                check.expect(sameRoute(Int(head.request), Int(member.request)), "\(at): entry \(e + j) goes elsewhere")
                check.expect(member.length > 0, "\(at): entry \(e + j) is empty")
                if j < members.count - 1 {
                    check.expect(Int(member.length) == segment, "\(at): entry \(e + j) is not \(segment) bytes")
                } else {
                    check.expect(Int(member.length) <= segment, "\(at): the last entry is longer than a segment")
                }
                offset += Int(member.length)
            }
        }
        // Greedy: a send that could take the next entry does.
        let open = planner.maxSegments > 1 && e > plainThrough && segment > 0 && send.count < planner.maxSegments
            && Int(members.last!.length) == segment && e + send.count < entries.count
        if open {
            let next = entries[e + send.count]
            let joinable = next.length > 0 && Int(next.length) <= segment
                && bytes + Int(next.length) <= largestPayload(Int(head.request))
                && Int(next.offset) == Int(head.offset) + bytes && sameRoute(Int(head.request), Int(next.request))
            check.expect(!joinable, "\(at): stopped before entry \(e + send.count), which fits")
        }
        e += send.count
    }
}

/// Random plans, not only the engine's: runs of equal lengths with shorter, longer and
/// empty ones among them, gaps and overlaps, few routes, tight limits, any segment cap.
func segmentPlannerCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    let n = rng.pick([0, 1, 2, 63, 64, 65, 128, rng.int(0...300)])
    let requests = rng.int(1...max(n, 1))
    let routes = (0..<requests).map { _ in rng.int(0...2) }
    let limits = (0..<requests).map { _ in rng.pick([65507, 65527, rng.int(1...5000)]) }
    var entries: [Outgoing] = []
    var offset = 0
    while entries.count < n {
        let length = rng.pick([0, 1, 2, 8, 100, 1472, 65507, 65527, rng.int(0...2000)])
        let request = rng.int(0...requests - 1)
        for _ in 0..<rng.int(1...80) where entries.count < n {
            var l = length
            if rng.oneIn(8) { l = rng.int(0...length) }
            if rng.oneIn(30) { l = length + rng.int(1...10) }
            if rng.oneIn(25) { offset = max(0, offset + rng.pick([-1, 1, rng.int(-100...100)])) }
            let r = rng.oneIn(5) ? rng.int(0...requests - 1) : request
            entries.append(Outgoing(request: Int32(r), offset: Int32(offset), length: Int32(l)))
            offset += l
        }
    }
    let planner = SegmentPlanner(maxSegments: rng.pick([1, 2, 3, 64, rng.int(1...100)]))
    let plainThrough = rng.oneIn(3) ? rng.int(-1...n) : -1
    entries.withUnsafeBufferPointer { entries in
        checkSends(entries, planner, plainThrough: plainThrough, largestPayload: { limits[$0] },
                   sameRoute: { routes[$0] == routes[$1] }, &check)
    }
}

// MARK: - The grouping by peer

/// `order` is requests `0..<keys.count` grouped by key: the first-seen key's requests
/// first, each key's in the order they came. That is one permutation, worked out here
/// the slow way.
func checkGrouping<Key: Hashable>(_ order: [Int], keys: [Key], _ check: inout Checks) {
    var firstSeen: [Key: Int] = [:]
    for (i, key) in keys.enumerated() where firstSeen[key] == nil {
        firstSeen[key] = i
    }
    let expected = keys.indices.sorted { (firstSeen[keys[$0]]!, $0) < (firstSeen[keys[$1]]!, $1) }
    check.expect(order == expected, "grouped \(keys.count) requests as \(order.prefix(40)), not \(expected.prefix(40))")
}

/// One grouping reused over several batches (its table must come back empty), with keys
/// from a few to all distinct and hashes from good to useless.
func peerGroupingCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    let capacity = rng.pick([1, 2, 3, 4, rng.int(1...64), 64, rng.int(1...1024), 1024])
    var grouping = PeerGrouping(capacity: capacity)
    for _ in 0..<rng.int(1...6) {
        let count = min(rng.pick([0, 1, 2, 3, capacity, rng.int(0...capacity)]), capacity)
        if rng.oneIn(8) {
            grouping.arrivalOrder(count: count)
            check.expect((0..<count).map { grouping.order[$0] } == Array(0..<count), "arrival order of \(count)")
            continue
        }
        let pool: [UInt64] = (0..<rng.pick([1, 2, 3, 8, max(count, 1)])).map { i in
            rng.pick([UInt64(i), UInt64(i) << 40, rng.next()])
        }
        let keys = (0..<count).map { _ in rng.pick(pool) }
        let weak = rng.int(0...3)
        var hashed = 0
        grouping.group(count: count, hash: { i in
            hashed += 1
            switch weak {
            case 0: return keys[i]
            case 1: return keys[i] % 3
            case 2: return 0
            default: return keys[i] << 32
            }
        }, sameKey: { keys[$0] == keys[$1] })
        check.expect(hashed <= count, "hashed \(hashed) times for \(count) requests")
        checkGrouping((0..<count).map { grouping.order[$0] }, keys: keys, &check)
    }
}
