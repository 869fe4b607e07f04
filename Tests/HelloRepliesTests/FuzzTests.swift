import Glibc
import HelloDatagram
import HelloFuzzHarness
import HelloReplies
import HelloService
import Testing

// Property tests over random inputs: the reply service (admission, with a reference model
// of the rate limit; the reply rules; the outbox), the segment planner, the grouping by
// peer, the PKTINFO policy and the chat relay under legitimate and hostile traffic
// (HelloChatTests/ChatFuzzTests.swift), each checked against what it promises rather than against itself.
//
// A run draws one seed and prints it first (a crash then still leaves it behind). Each
// property runs at least its floor of cases, then stops after its case count or its share
// of the time budget, whichever comes first, and at its first failing case, which it
// reports with its seeds. It prints how many cases it ran, and what they went through:
//
//   HELLOD_FUZZ_SECONDS=60 swift test --filter FuzzTests     a longer run (default 2 s)
//   HELLOD_FUZZ_SEED=0x... swift test --filter FuzzTests     the same cases again (given the
//                                                             time to reach the failing one)
//   HELLOD_FUZZ_CASES=n                                       another case count per property
//                                                             (and at most that floor)
//
// A failing case replays alone from its case seed, which makes it a regression test:
// `#expect(replay(replyCoreCase, seed: 0x...) == [])`.

@Suite(.serialized) struct FuzzTests {
    @Test func replyCore() {
        fuzz("reply core", share: 0.4, cases: 100_000, floor: 100, replyCoreCase)
    }

    @Test func segmentPlanner() {
        fuzz("segment planner", share: 0.15, cases: 1_000_000, floor: 500, segmentPlannerCase)
    }

    @Test func peerGrouping() {
        fuzz("peer grouping", share: 0.15, cases: 1_000_000, floor: 200, peerGroupingCase)
    }

    @Test func arrival() {
        fuzz("arrival", share: 0.1, cases: 1_000_000, floor: 500, arrivalCase)
    }

    /// The same few cases on every run, whatever the seed drawn.
    @Test func fixedSeeds() {
        for seed: UInt64 in 1...16 {
            #expect(replay(replyCoreCase, seed: seed) == [], "reply core, case seed \(seed)")
            #expect(replay(segmentPlannerCase, seed: seed) == [], "segment planner, case seed \(seed)")
            #expect(replay(peerGroupingCase, seed: seed) == [], "peer grouping, case seed \(seed)")
            #expect(replay(arrivalCase, seed: seed) == [], "arrival, case seed \(seed)")
        }
    }
}

// MARK: - Inputs

/// A peer, with what it is known by construction: the expectations below never ask
/// Endpoint what it thinks.
struct FuzzPeer: CustomStringConvertible {
    var endpoint: Endpoint
    var port: UInt16
    /// IPv4, or IPv4 in a v4-mapped IPv6 address (::ffff:a.b.c.d).
    var overIPv4: Bool
    var loopback: Bool
    /// The address's bits: IPv4 in the low 32.
    var high: UInt64
    var low: UInt64

    /// 65535 less the IPv4 and UDP headers; over IPv6, whose header is not counted, less UDP's.
    var largestPayload: Int { overIPv4 ? 65535 - 20 - 8 : 65535 - 8 }

    /// Equal for the same peer, however its address was written.
    var identity: [UInt64] { [overIPv4 ? 4 : 6, high, low, UInt64(port)] }

    var description: String { "\(endpoint)\(overIPv4 ? " (IPv4)" : "")\(loopback ? " (loopback)" : "")" }

    /// Whether `endpoint` is this peer, field by field.
    func matches(_ endpoint: Endpoint) -> Bool {
        endpoint.port == port && endpoint.address.family == (overIPv4 ? .v4 : .v6)
            && endpoint.address.high == high && endpoint.address.low == low
    }

    static func v4(_ a: UInt32, port: UInt16, mapped: Bool) -> FuzzPeer {
        let endpoint: Endpoint =
            mapped ? .v6(high: 0, low: 0xffff_0000_0000 | UInt64(a), port: port) : .v4(a, port: port)
        return FuzzPeer(
            endpoint: endpoint, port: port, overIPv4: true, loopback: a >> 24 == 127, high: 0, low: UInt64(a))
    }

    static func v6(high: UInt64, low: UInt64, port: UInt16, loopback: Bool) -> FuzzPeer {
        FuzzPeer(
            endpoint: .v6(high: high, low: low, port: port), port: port, overIPv4: false, loopback: loopback,
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
            var low: UInt64 = rng.pick([
                0, 2, 0xfffe_0000_0000 | UInt64(a), 0x1_ffff_0000_0000 | UInt64(a), UInt64(a), ~0,
            ])
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
            return .v4(
                UInt32(truncatingIfNeeded: low) ^ 1 << UInt32(rng.pick([0, 0, 1, 7, 8, rng.int(0...31)])), port: port,
                mapped: rng.oneIn(2))
        }
        guard high != 0 else { return .v6(high: high, low: low, port: port, loopback: loopback) }
        return .v6(
            high: high, low: low ^ 1 << UInt64(rng.pick([0, 0, 1, 62, 63, rng.int(0...63)])), port: port,
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

/// Where a datagram went, as the kernel would say it (PKTINFO), with what the policy must
/// make of it worked out here from the raw bits: the kind of destination, and the address
/// (and, for a link-local one, the interface) a reply leaves from.
struct FuzzLocal: CustomStringConvertible {
    var info = PacketInfo()
    /// The IPV6_PKTINFO destination's bits, as the kernel wrote them (before any mapping).
    var v6: (high: UInt64, low: UInt64)?
    var kind = DestinationKind.unicast
    /// The reply's source: IPv4 or not, the address's bits (IPv4 in the low 32), the interface.
    var source: [UInt64]?

    var description: String {
        var said: [String] = []
        if info.hasIPv4 {
            said.append(
                "IP_PKTINFO \(IPAddress.v4(info.headerDestination)) spec_dst \(IPAddress.v4(info.localAddress))")
        }
        if let v6 {
            said.append("IPV6_PKTINFO \(hex(v6.high)) \(hex(v6.low)) interface \(info.ipv6Interface)")
        }
        return "[\(said.isEmpty ? "no PKTINFO" : said.joined(separator: ", "))]"
    }

    /// Whether `source` is the one expected, field by field.
    func matches(_ source: LocalSource?) -> Bool {
        guard let source else { return self.source == nil }
        return self.source == [
            source.address.family == .v4 ? 4 : 6, source.address.high, source.address.low,
            UInt64(source.interface),
        ]
    }

    /// The rules, from the bits: a multicast destination (224.0.0.0/4, ff00::/8) or a
    /// broadcast one (255.255.255.255, or under IP_PKTINFO one that is not the local address
    /// the kernel would answer from) gets no answer, so no source. A unicast one is answered
    /// from the local address (under IP_PKTINFO: spec_dst, or the destination when spec_dst
    /// is 0.0.0.0), with the interface only for fe80::/10; IP_PKTINFO decides when both came.
    mutating func decide() {
        func v4(_ a: UInt32) {
            if a & 0xf000_0000 == 0xe000_0000 {
                kind = .multicast
            } else if a == 0xffff_ffff {
                kind = .broadcast
            } else if a != 0 {
                source = [4, 0, UInt64(a), 0]
            }
        }
        if info.hasIPv4 {
            let header = info.headerDestination, local = info.localAddress
            if header & 0xf000_0000 == 0xe000_0000 {
                kind = .multicast
            } else if header == 0xffff_ffff || (local != 0 && local != header) {
                kind = .broadcast
            } else {
                source = [4, 0, UInt64(local == 0 ? header : local), 0]
            }
        } else if let v6 {
            let (high, low) = v6
            if high == 0 && low >> 32 == 0xffff {
                v4(UInt32(truncatingIfNeeded: low))
            } else if high >> 56 == 0xff {
                kind = .multicast
            } else if high != 0 || low != 0 {
                let linkLocal = (high >> 48) & 0xffc0 == 0xfe80
                source = [6, high, low, linkLocal ? UInt64(info.ipv6Interface) : 0]
            }
        }
    }

    static func randomV4(_ rng: inout SplitMix64) -> UInt32 {
        let a = UInt32(truncatingIfNeeded: rng.next())
        return rng.pick([
            a, a, 0x7f00_0001, 0x7f00_0002, 0xc000_0201, 0xc000_02ff, 0xffff_ffff, 0xffff_fffe, 0,
            0xe000_0000 | a & 0x0fff_ffff, 0xe000_00fb, 0xefff_ffff, 0xdfff_ffff, 0xf000_0000,
        ])
    }

    static func randomV6(_ rng: inout SplitMix64) -> (high: UInt64, low: UInt64) {
        let a = UInt64(randomV4(&rng))
        let x = rng.next()
        let y = rng.next()
        var choices: [(high: UInt64, low: UInt64)] = []
        // Multicast, link-local (fe80::/10 and either side of it), ::, ::1, others.
        choices += [(0xff02 << 48, 1), (0xff00 << 48 | x >> 8, x), (0xfe80 << 48, x), (0xfebf << 48 | x >> 16, x)]
        choices += [(0xfec0 << 48, 1), (0xfe7f << 48 | x >> 16, 1), (0, 0), (0, 1), (0x2001_0db8 << 32, x), (x, y)]
        // v4-mapped (any IPv4 address, 0.0.0.0 among them), and next to ::ffff:0:0/96.
        choices += [(0, 0xffff_0000_0000 | a), (0, 0xffff_0000_0000 | a), (0, 0xffff_0000_0000), (0, a)]
        choices += [(0, 0x1_ffff_0000_0000 | a), (1, 0xffff_0000_0000 | a), (0, 0xfffe_0000_0000 | a)]
        return rng.pick(choices)
    }

    /// Any PKTINFO at all, or (`unicastMostly`) mostly what a datagram to one of the
    /// host's addresses brings.
    static func random(_ rng: inout SplitMix64, unicastMostly: Bool) -> FuzzLocal {
        if unicastMostly && !rng.oneIn(8) {
            return unicast(&rng)
        }
        var local = FuzzLocal()
        switch rng.int(0...5) {
        case 0:
            break  // no PKTINFO
        case 1, 2, 3:
            local.info.hasIPv4 = true
            let header = randomV4(&rng)
            local.info.headerDestination = header
            local.info.localAddress = rng.pick([header, 0, randomV4(&rng), header ^ 1 << UInt32(rng.int(0...31))])
            if rng.oneIn(4) {
                local.v6 = rng.oneIn(2) ? (0, 0xffff_0000_0000 | UInt64(header)) : randomV6(&rng)
            }
        default:
            local.v6 = randomV6(&rng)
        }
        local.finish(&rng)
        return local
    }

    /// What a datagram to one of the host's unicast addresses brings (the model decides
    /// all the same).
    static func unicast(_ rng: inout SplitMix64) -> FuzzLocal {
        var local = FuzzLocal()
        let a = UInt32(truncatingIfNeeded: rng.next()) & 0xdfff_fffe  // not 224.0.0.0/3's multicast, nor all ones
        switch rng.int(0...3) {
        case 0:
            break  // no PKTINFO
        case 1:
            local.info.hasIPv4 = true
            local.info.headerDestination = rng.pick([a, 0x7f00_0001, 0x7f00_0002])
            local.info.localAddress = rng.pick([local.info.headerDestination, local.info.headerDestination, 0])
            if rng.oneIn(2) {
                local.v6 = (0, 0xffff_0000_0000 | UInt64(local.info.headerDestination))
            }
        default:
            let choices: [(high: UInt64, low: UInt64)] = [
                (0x2001_0db8 << 32, rng.next()), (0xfe80 << 48, rng.next()), (0, 1),
                (0, 0xffff_0000_0000 | UInt64(a)),
            ]
            local.v6 = rng.pick(choices)
        }
        local.finish(&rng)
        return local
    }

    private mutating func finish(_ rng: inout SplitMix64) {
        if let v6 {
            info.ipv6Destination = .v6(high: v6.high, low: v6.low)
            info.ipv6Interface = rng.pick([0, 1, 2, UInt32(truncatingIfNeeded: rng.next())])
        }
        decide()
    }
}

struct FuzzRequest {
    var bytes: [UInt8]
    var truncated: Bool
    var peer: FuzzPeer
    /// Where it went: a reply leaves from there, so it is part of the route.
    var local: FuzzLocal

    /// The peer and the reply's source: replies that share it may share a send.
    var route: [UInt64] { peer.identity + (local.source ?? []) }

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
    static func random(_ rng: inout SplitMix64, size: Int, maxDatagram: Int, peer: FuzzPeer, locals: [FuzzLocal])
        -> FuzzRequest
    {
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
        return FuzzRequest(
            bytes: bytes, truncated: size > maxDatagram || rng.oneIn(12), peer: peer,
            local: rng.pick(locals))
    }
}

/// What became of one request.
enum Verdict: Equatable, CustomStringConvertible {
    case reply
    case drop(CounterID)

    var description: String {
        switch self {
        case .reply: return "reply"
        case .drop(let reason): return CounterSchema.generic.name(of: reason)
        }
    }
}

/// The rate limit as documented, per source prefix: a datagram is allowed while the
/// prefix's theoretical arrival time is less than `burst` intervals (of 1/rate s) ahead
/// of now, and moves it one interval on (GCRA). Every prefix has its own entry: a table
/// that never fills.
struct ReferenceLimiter {
    let interval: UInt64
    let tolerance: UInt64
    var arrivals: [[UInt64]: UInt64] = [:]

    /// The slots a source may live in (one set's ways): a source within its limit can be
    /// refused for want of a slot only while at least this many other prefixes hold one.
    static let ways = 8

    init(_ limit: RateLimiter.Configuration) {
        interval = max(1_000_000_000 / limit.rate, 1)
        tolerance = interval * (limit.burst - 1)
    }

    func allows(_ prefix: [UInt64], now: UInt64) -> Bool {
        max(arrivals[prefix] ?? 0, now) - now <= tolerance
    }

    mutating func admit(_ prefix: [UInt64], now: UInt64) {
        arrivals[prefix] = max(arrivals[prefix] ?? 0, now) + interval
    }

    /// Other prefixes whose bucket has not refilled at `now`: each holds its slot.
    mutating func busy(besides prefix: [UInt64], now: UInt64) -> Int {
        arrivals = arrivals.filter { $0.value > now }
        return arrivals.keys.count(where: { $0 != prefix })
    }
}

/// What may become of `request` at `now`, worked out from the documented order of the
/// checks: truncated, broadcast or multicast, privileged source port, own port, rate
/// limited, reply too large; the rate limit is the reference's verdict. And the prefix
/// whose limit the limiter is asked about, if it is.
func expectedVerdict(
    _ request: FuzzRequest, hello: Bool, policy: AdmissionPolicy, limiter: ReferenceLimiter?,
    now: UInt64
) -> (verdict: Verdict, limited: [UInt64]?) {
    if request.truncated { return (.drop(.truncated), nil) }
    if request.local.kind != .unicast { return (.drop(.broadcastOrMulticast), nil) }
    let port = request.peer.port
    if port < 1024 && !policy.allowPrivilegedSourcePorts { return (.drop(.privilegedSourcePort), nil) }
    if !policy.allowOwnPorts && policy.ownPorts.contains(port) { return (.drop(.ownPort), nil) }
    let last: Verdict =
        replyLength(request.bytes.count, hello: hello) <= request.peer.largestPayload ? .reply : .drop(.replyTooLarge)
    guard let limit = policy.rateLimit, let limiter, policy.limitLoopback || !request.peer.loopback else {
        return (last, nil)
    }
    let prefix = request.peer.prefix(limit)
    return (limiter.allows(prefix, now: now) ? last : .drop(.rateLimited), prefix)
}

func replyLength(_ requestLength: Int, hello: Bool) -> Int {
    hello ? "Hello, ".utf8.count + requestLength + 1 : requestLength
}

/// The reply built from the words of the rule, not from its code.
func expectedReply(to bytes: [UInt8], hello: Bool) -> [UInt8] {
    hello ? Array("Hello, ".utf8) + bytes + Array("!".utf8) : bytes
}

/// Byte-for-byte equality by memcmp: unoptimized test code would compare element by element.
func same(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
    b.withUnsafeBytes { b in
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }
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
func peerHash(_ peer: Endpoint) -> UInt64 {
    PeerGrouping.mix(peer.address.high ^ PeerGrouping.mix(peer.address.low ^ UInt64(peer.port) << 48))
        ^ (peer.family == .v4 ? 4 : 6)
}

// MARK: - The reply service

/// One service through a few batches, each as the worker runs it: grouped by peer, each
/// request answered or dropped, the outbox cut into sends whenever the service says it is
/// full and after the batch, the sends counted.
func replyCoreCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    if rng.oneIn(2) {
        replyCoreCase(HelloReply(), hello: true, &rng, &check)
    } else {
        replyCoreCase(EchoReply(), hello: false, &rng, &check)
    }
}

func replyCoreCase<Rule: ReplyRule>(_ rule: Rule, hello: Bool, _ rng: inout SplitMix64, _ check: inout Checks) {
    let capacity = rng.pick([1, 2, 3, rng.int(1...16), rng.int(1...64), 64, rng.int(1...1024), 1024])
    let maxDatagram = rng.pick([0, 1, 8, 1500, 65499, 65500, 65507, 65508, 65527, 65527, rng.int(1...65527)])
    let policy = randomPolicy(&rng)
    let heavy = rng.oneIn(8)
    var peers: [FuzzPeer] = []
    for _ in 0..<rng.pick([1, 2, 3, 8, 64, 1000]) {
        peers.append(
            !peers.isEmpty && rng.oneIn(3)
                ? rng.pick(peers).neighbour(&rng)
                : FuzzPeer.random(&rng, ownPorts: policy.ownPorts))
    }
    let locals = (0..<rng.pick([1, 1, 2, 3])).map { _ in FuzzLocal.random(&rng, unicastMostly: true) }
    var run = ReplyCoreRun(rule, hello: hello, capacity: capacity, maxDatagram: maxDatagram, policy: policy, &rng)
    var grouping = PeerGrouping(capacity: capacity)
    var now = rng.pick([0, 1, 1_000_000_000, UInt64(rng.int(0...(1 << 50)))])

    for _ in 0..<rng.int(1...4) {
        now += rng.pick([0, 1, 1000, 1_000_000, 1_000_000_000, UInt64(rng.int(0...10_000_000_000))])
        let count = rng.pick([1, capacity, rng.int(1...capacity)])
        let requests = (0..<count).map { _ in
            FuzzRequest.random(
                &rng, size: FuzzRequest.size(&rng, heavy: heavy), maxDatagram: maxDatagram,
                peer: rng.pick(peers), locals: locals)
        }
        grouping.group(
            count: count, hash: { peerHash(requests[$0].peer.endpoint) },
            sameKey: { requests[$0].peer.endpoint == requests[$1].peer.endpoint })
        let order = (0..<count).map { grouping.index($0) }
        checkGrouping(order, keys: requests.map(\.peer.identity), &check)
        guard check.failures.isEmpty else { return }
        for i in order {
            run.handle(requests[i], now: now, &rng, &check)
            guard check.failures.isEmpty else { return }
        }
        run.flush(&rng, &check)
        guard check.failures.isEmpty else { return }
    }
}

/// A reply service and what the worker keeps around it, with the model of what it must do.
struct ReplyCoreRun<Rule: ReplyRule>: ~Copyable {
    let rule: Rule
    let hello: Bool
    let policy: AdmissionPolicy
    let setting: String
    var service: ReplyService<Rule>
    var outbox: Outbox
    let planner = SegmentPlanner(maxSegments: 64)
    var limiter: ReferenceLimiter?
    /// The request each outbox entry answers.
    var answered: [FuzzRequest] = []
    var read: UInt64 = 0

    init(_ rule: Rule, hello: Bool, capacity: Int, maxDatagram: Int, policy: AdmissionPolicy, _ rng: inout SplitMix64) {
        self.rule = rule
        self.hello = hello
        self.policy = policy
        service = ReplyService(rule, ServiceSettings(batchSize: capacity, maxDatagram: maxDatagram, policy: policy))
        // The worker's outbox holds the replies of a whole batch; a smaller one now and then
        // makes the service say it is full mid-batch, as a service that writes several
        // datagrams per request would.
        let outboxCapacity = rng.oneIn(4) ? rng.int(1...capacity) : service.outboxCapacity
        outbox = Outbox(capacity: outboxCapacity, largestDatagram: service.largestDatagram)
        limiter = policy.rateLimit.map(ReferenceLimiter.init)
        setting =
            "\(hello ? "hello" : "echo") batch \(capacity) (outbox \(outboxCapacity)) max \(maxDatagram) \(policy)"
    }

    /// Hands `request` to the service as the worker does: as often as it says its outbox is
    /// full, sends the outbox and hands it again.
    mutating func handle(_ request: FuzzRequest, now: UInt64, _ rng: inout SplitMix64, _ check: inout Checks) {
        let length = replyLength(request.bytes.count, hello: hello)
        var before = service.counters
        var planned = outbox.count
        while true {
            before = service.counters
            planned = outbox.count
            let used = outbox.bufferUsed
            let handled = request.bytes.withUnsafeBytes { bytes in
                // As the socket layer does: the first bytes in a head buffer, the rest after.
                let head = min(bytes.count, 512)
                return service.handle(
                    Datagram(
                        payload: UnsafeRawBufferPointer(rebasing: bytes[..<head]),
                        continuation: UnsafeRawBufferPointer(rebasing: bytes[head...]),
                        truncated: request.truncated, peer: request.peer.endpoint,
                        arrival: Arrival(request.local.info)),
                    now: now, into: &outbox)
            }
            // "No room" only when there is none for a reply that fits the peer. (A reply
            // without room cannot be written at all: the outbox stops the process.)
            let room = planned < outbox.capacity && length <= outbox.bufferCapacity - used
            check.expect(
                handled || (!room && length <= request.peer.largestPayload),
                "\(request.bytes.count) bytes from \(request.peer) refused for want of room with \(planned) "
                    + "datagrams, \(used) bytes in an outbox of \(outbox.capacity), \(outbox.bufferCapacity)")
            if handled { break }
            check.count("outbox full")
            check.expect(
                service.counters == before && outbox.count == planned && outbox.bufferUsed == used,
                "a datagram refused for want of room changed the counters or the outbox")
            check.expect(planned > 0, "no room in an empty outbox for \(length) bytes; \(setting)")
            guard check.failures.isEmpty else { return }
            flush(&rng, &check)
        }
        let after = service.counters
        read += 1
        var verdict: Verdict?
        if outbox.count == planned + 1 && after.drops == before.drops {
            verdict = .reply
            answered.append(request)
        } else if outbox.count == planned && after.drops.total == before.drops.total + 1 {
            verdict = after.schema.drops.first { after.drops[$0] == before.drops[$0] + 1 }.map { .drop($0) }
        }
        let expected = expectedVerdict(request, hello: hello, policy: policy, limiter: limiter, now: now)
        var allowed = [expected.verdict]
        if verdict == .drop(.rateLimited), expected.verdict != verdict, let prefix = expected.limited,
            limiter!.busy(besides: prefix, now: now) >= ReferenceLimiter.ways
        {
            // Within its limit, but every slot it may take can be busy: refused for want of one.
            allowed.append(.drop(.rateLimited))
            check.count("rate-limited: no free slot")
        }
        check.expect(after.read == before.read + 1, "read counted \(after.read - before.read) times")
        check.expect(
            verdict.map(allowed.contains) ?? false,
            "\(request.bytes.count) bytes\(request.truncated ? " truncated" : "") from \(request.peer) to "
                + "\(request.local): \(verdict?.description ?? "no single verdict"), expected one of \(allowed); \(setting)"
        )
        check.count(verdict?.description ?? "no verdict")
        // What the limiter let through spends its prefix's allowance.
        if let prefix = expected.limited, verdict == .reply || verdict == .drop(.replyTooLarge) {
            limiter!.admit(prefix, now: now)
        }
    }

    /// Sends the outbox as the worker does: checks every datagram is its request's reply,
    /// cuts the outbox into sends, and tells the service how many the kernel took.
    mutating func flush(_ rng: inout SplitMix64, _ check: inout Checks) {
        // The counters balance before the outbox is sent.
        let counters = service.counters
        check.expect(counters.read == read, "read \(counters.read), \(read) requests")
        check.expect(
            counters.read == counters.replied + UInt64(outbox.count) + counters.drops.total,
            "before sending: read \(counters.read) != replied + in the outbox + dropped")

        // Each datagram is its request's reply, to its peer, from the address its request
        // came to, in the order answered, side by side from the start.
        let entries = outbox.entries
        check.expect(
            entries.count == answered.count, "\(entries.count) datagrams in the outbox, \(answered.count) replies")
        guard check.failures.isEmpty else { return }
        var offset = 0
        for (e, entry) in entries.enumerated() {
            let request = answered[e]
            let bytes = outbox.bytes(of: entry)
            check.expect(Int(entry.offset) == offset, "reply \(e) at \(entry.offset), not \(offset)")
            check.expect(same(bytes, rule.reply(to: request.bytes)), "reply \(e) is not ReplyRule's")
            check.expect(same(bytes, expectedReply(to: request.bytes, hello: hello)), "reply \(e) is wrong")
            check.expect(
                request.peer.matches(entry.destination), "reply \(e) goes to \(entry.destination), not \(request.peer)")
            check.expect(
                request.local.matches(entry.source),
                "reply \(e) leaves from \(entry.source.map { "\($0)" } ?? "anywhere") after \(request.local)")
            offset += Int(entry.length)
        }
        check.expect(
            outbox.bufferUsed == offset && offset <= outbox.bufferCapacity,
            "outbox uses \(outbox.bufferUsed) of \(outbox.bufferCapacity) bytes, replies \(offset)")

        let limits = answered.map(\.peer.largestPayload)
        let routes = answered.map(\.route)
        checkSends(
            entries, planner, plainThrough: -1, largestPayload: { limits[$0] }, sameRoute: { routes[$0] == routes[$1] },
            &check)

        let failed = rng.oneIn(4) ? rng.int(0...entries.count) : 0
        service.recordSent(entries.count - failed, failed: failed)
        check.expect(
            service.counters.replied == counters.replied + UInt64(entries.count - failed), "replies not counted")
        check.expect(
            service.counters.drops[.sendFailed] == counters.drops[.sendFailed] + UInt64(failed),
            "send failures not counted")
        check.expect(service.counters.isBalanced, "unbalanced after the send: \(service.counters)")
        outbox.removeAll()
        self.answered.removeAll(keepingCapacity: true)
    }
}

// MARK: - The segment planner

/// Walks an outbox's sends as SendBatch does, so every entry must be in exactly one send,
/// in order; checks each send against every rule of a segmented send, and that it stops
/// only where a rule says so. `largestPayload(e)` and `sameRoute(e, f)` are worked out by
/// the caller for entries `e` and `f`.
func checkSends(
    _ entries: UnsafeBufferPointer<Outgoing>, _ planner: SegmentPlanner, plainThrough: Int,
    largestPayload: (Int) -> Int, sameRoute: (Int, Int) -> Bool, _ check: inout Checks
) {
    var e = 0
    while e < entries.count {
        let send = planner.send(from: e, of: entries, plainThrough: plainThrough)
        let at = "send from entry \(e) (\(send.count) entries, \(send.bytes) bytes)"
        check.expect(send.firstEntry == e, "\(at) says it starts at \(send.firstEntry)")
        guard send.count >= 1 && e + send.count <= entries.count else {
            check.expect(false, "\(at): outside the outbox of \(entries.count)")
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
            check.expect(bytes <= largestPayload(e), "\(at): larger than one datagram to its peer")
            var offset = Int(head.offset)
            for (j, member) in members.enumerated() {
                check.expect(Int(member.offset) == offset, "\(at): entry \(e + j) not next to the one before")
                check.expect(sameRoute(e, e + j), "\(at): entry \(e + j) goes elsewhere")
                check.expect(member.length > 0, "\(at): entry \(e + j) is empty")
                if j < members.count - 1 {
                    check.expect(Int(member.length) == segment, "\(at): entry \(e + j) is not \(segment) bytes")
                } else {
                    check.expect(Int(member.length) <= segment, "\(at): the last entry is longer than a segment")
                }
                offset += Int(member.length)
            }
            check.count("segmented sends")
        }
        // Greedy: a send that could take the next entry does.
        let open =
            planner.maxSegments > 1 && e > plainThrough && segment > 0 && send.count < planner.maxSegments
            && Int(members.last!.length) == segment && e + send.count < entries.count
        if open {
            let n = e + send.count
            let next = entries[n]
            let joinable =
                next.length > 0 && Int(next.length) <= segment
                && bytes + Int(next.length) <= largestPayload(e)
                && Int(next.offset) == Int(head.offset) + bytes && sameRoute(e, n)
            check.expect(!joinable, "\(at): stopped before entry \(n), which fits")
        }
        e += send.count
    }
}

/// Random outboxes, not only the service's: runs of equal lengths with shorter, longer and
/// empty ones among them, gaps and overlaps, a few routes (destinations of both families,
/// the same destination from different sources), any segment cap.
func segmentPlannerCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    let destinations: [(endpoint: Endpoint, largestPayload: Int)] = [
        (.v4(0xc000_0201, port: 40000), 65507), (.v6(high: 0x2001_0db8 << 32, low: 1, port: 40000), 65527),
        (.v4(0xc000_0201, port: 40001), 65507), (.v6(high: 0, low: 0xffff_c000_0202, port: 40000), 65507),
    ]
    let sources: [LocalSource?] = [
        nil, LocalSource(.v4(0x7f00_0001)), LocalSource(.v6(high: 0xfe80 << 48, low: 1), interface: 2),
        LocalSource(.v6(high: 0xfe80 << 48, low: 1), interface: 3),
    ]
    var pairs = destinations.indices.flatMap { d in sources.indices.map { s in (d, s) } }
    pairs.shuffle(using: &rng)
    let routes = Array(pairs.prefix(rng.pick([1, 2, 3])))  // distinct by construction

    let n = rng.pick([0, 1, 2, 63, 64, 65, 128, rng.int(0...300)])
    var entries: [Outgoing] = []
    var routeOf: [Int] = []
    var offset = 0
    while entries.count < n {
        let length = rng.pick([0, 1, 2, 8, 100, 1472, 1489, 1500, 65507, 65527, rng.int(0...2000)])
        let route = rng.int(0...routes.count - 1)
        for _ in 0..<rng.int(1...80) where entries.count < n {
            var l = length
            if rng.oneIn(8) { l = rng.int(0...length) }
            if rng.oneIn(30) { l = length + rng.int(1...10) }
            if rng.oneIn(25) { offset = max(0, offset + rng.pick([-1, 1, rng.int(-100...100)])) }
            let r = rng.oneIn(5) ? rng.int(0...routes.count - 1) : route
            entries.append(
                Outgoing(
                    offset: Int32(offset), length: Int32(l), destination: destinations[routes[r].0].endpoint,
                    source: sources[routes[r].1]))
            routeOf.append(r)
            offset += l
        }
    }
    let planner = SegmentPlanner(maxSegments: rng.pick([1, 2, 3, 64, rng.int(1...100)]))
    let plainThrough = rng.oneIn(3) ? rng.int(-1...n) : -1
    entries.withUnsafeBufferPointer { entries in
        checkSends(
            entries, planner, plainThrough: plainThrough,
            largestPayload: { destinations[routes[routeOf[$0]].0].largestPayload },
            sameRoute: { routeOf[$0] == routeOf[$1] }, &check)
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
            check.expect((0..<count).map { grouping.index($0) } == Array(0..<count), "arrival order of \(count)")
            continue
        }
        let pool: [UInt64] = (0..<rng.pick([1, 2, 3, 8, max(count, 1)])).map { i in
            rng.pick([UInt64(i), UInt64(i) << 40, rng.next()])
        }
        let keys = (0..<count).map { _ in rng.pick(pool) }
        let weak = rng.int(0...3)
        var hashed = 0
        grouping.group(
            count: count,
            hash: { i in
                hashed += 1
                switch weak {
                case 0: return keys[i]
                case 1: return keys[i] % 3
                case 2: return 0
                default: return keys[i] << 32
                }
            }, sameKey: { keys[$0] == keys[$1] })
        check.expect(hashed <= count, "hashed \(hashed) times for \(count) requests")
        checkGrouping((0..<count).map { grouping.index($0) }, keys: keys, &check)
    }
}

// MARK: - The PKTINFO policy

/// Any PKTINFO the kernel could write (and some it would not): the kind of destination
/// and the reply's source are the rules', and no datagram to many gets a reply source.
func arrivalCase(_ rng: inout SplitMix64, _ check: inout Checks) {
    for _ in 0..<16 {
        let local = FuzzLocal.random(&rng, unicastMostly: rng.oneIn(4))
        let arrival = Arrival(local.info)
        check.expect(arrival.destination == local.kind, "\(local): \(arrival.destination), not \(local.kind)")
        check.expect(
            arrival.destination == .unicast || arrival.replySource == nil,
            "\(local): a reply source for a \(arrival.destination) destination")
        check.expect(
            local.matches(arrival.replySource),
            "\(local): reply source \(arrival.replySource.map { "\($0)" } ?? "none"), not \(local.source ?? [])")
        check.count("\(local.kind)\(local.source == nil ? "" : " with a source")")
    }
}
