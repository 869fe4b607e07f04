import HelloCore
import Testing

/// The checks that keep hellod from being a reflector or a loop partner.
@Suite struct AdmissionTests {
    let second: UInt64 = 1_000_000_000

    func engine(_ policy: AdmissionPolicy) -> ReplyEngine {
        ReplyEngine(rule: ReplyRule(mode: .echo), batchSize: 1024, maxDatagram: 64, policy: policy)
    }

    func peer(_ last: UInt32, port: UInt16 = 40000) -> PeerAddress {
        .v4(0xc000_0200 | last, port: port)  // 192.0.2.x: not loopback
    }

    @Test func privilegedSourcePortsAreRefusedByDefault() {
        var e = engine(AdmissionPolicy())
        let ports: [UInt16] = [0, 7, 19, 53, 123, 1023, 1024, 40000]
        respond(&e, ports.map { (Array("x".utf8), peer(1, port: $0), false) })
        #expect(replies(e).map(\.request) == [6, 7])
        #expect(e.counters.drops[.privilegedSourcePort] == 6)
    }

    @Test func privilegedSourcePortsCanBeAllowed() {
        var policy = AdmissionPolicy()
        policy.allowPrivilegedSourcePorts = true
        var e = engine(policy)
        respond(&e, [(Array("x".utf8), peer(1, port: 7), false), (Array("x".utf8), peer(1, port: 0), false)])
        #expect(replies(e).count == 2)
    }

    @Test func ownPortsAreRefusedByDefault() {
        var policy = AdmissionPolicy()
        policy.ownPorts = [9999, 7777]
        var e = engine(policy)
        respond(&e, [(Array("a".utf8), peer(1, port: 9999), false), (Array("b".utf8), peer(1, port: 7777), false),
                     (Array("c".utf8), peer(1, port: 9998), false)])
        #expect(replies(e).map(\.request) == [2])
        #expect(e.counters.drops[.ownPort] == 2)
        policy.allowOwnPorts = true
        var allowed = engine(policy)
        respond(&allowed, [(Array("a".utf8), peer(1, port: 9999), false)])
        #expect(replies(allowed).count == 1)
    }

    @Test func theFirstFailingCheckNamesTheDrop() {
        var policy = AdmissionPolicy()
        policy.ownPorts = [53]
        var e = engine(policy)
        respond(&e, [(Array("x".utf8), peer(1, port: 53), true), (Array("x".utf8), peer(1, port: 53), false)])
        #expect(e.counters.drops[.truncated] == 1)
        #expect(e.counters.drops[.privilegedSourcePort] == 1)
        #expect(e.counters.drops[.ownPort] == 0)
        #expect(e.counters.drops.total == 2)
    }

    func limited(rate: UInt64, burst: UInt64, v4: Int = 32, v6: Int = 64, table: Int = 4096,
                 loopback: Bool = false) -> ReplyEngine {
        var policy = AdmissionPolicy()
        policy.rateLimit = RateLimiter.Configuration(rate: rate, burst: burst, ipv4PrefixLength: v4,
                                                     ipv6PrefixLength: v6, tableSize: table)
        policy.limitLoopback = loopback
        return engine(policy)
    }

    func answered(_ e: inout ReplyEngine, _ peers: [PeerAddress], now: UInt64) -> Int {
        respond(&e, peers.map { (Array("x".utf8), $0, false) }, now: now)
        return replies(e).count
    }

    @Test func aSourceGetsItsBurstThenItsRate() {
        var e = limited(rate: 100, burst: 10)
        let flood = Array(repeating: peer(1), count: 1000)
        #expect(answered(&e, flood, now: 10 * second) == 10)
        #expect(answered(&e, flood, now: 10 * second + second / 2) == 10)  // 50 earned, capped at the burst
        var total = 0
        for ms in stride(from: UInt64(0), to: 1000, by: 10) {  // 1 s of 100 datagrams every 10 ms
            total += answered(&e, Array(repeating: peer(1), count: 100), now: 20 * second + ms * 1_000_000)
        }
        #expect(total >= 100 && total <= 110)  // the rate, plus the burst it started with
        #expect(e.counters.drops[.rateLimited] == UInt64(2000 - 20 + 10_000 - total))
    }

    @Test func sourcesAreLimitedSeparately() {
        var e = limited(rate: 100, burst: 5)
        let peers = (1...50).flatMap { i in Array(repeating: peer(UInt32(i)), count: 20) }
        #expect(answered(&e, peers, now: second) == 50 * 5)
    }

    @Test func ipv4PrefixesShareALimit() {
        var e = limited(rate: 100, burst: 5, v4: 24)
        let peers = (1...50).flatMap { i in Array(repeating: peer(UInt32(i)), count: 20) }  // all in 192.0.2.0/24
        #expect(answered(&e, peers, now: second) == 5)
    }

    @Test func ipv6SlashSixtyFourSharesALimit() {
        var e = limited(rate: 100, burst: 5)
        let sameNet = (1...20).map { PeerAddress.v6(high: 0x2001_0db8_0000_0000, low: UInt64($0), port: 40000) }
        #expect(answered(&e, sameNet, now: second) == 5)
        let otherNet = (1...20).map { PeerAddress.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, otherNet, now: second) == 20)
    }

    @Test func loopbackIsExemptUnlessAsked() {
        var exempt = limited(rate: 10, burst: 1)
        let local = Array(repeating: PeerAddress.v4(0x7f00_0001, port: 40000), count: 100)
        #expect(answered(&exempt, local, now: second) == 100)
        var strict = limited(rate: 10, burst: 1, loopback: true)
        #expect(answered(&strict, local, now: second) == 1)
    }

    @Test func aFullTableRefusesNewSourcesAndKeepsTheLimitsItHolds() {
        var e = limited(rate: 10, burst: 2, table: 8)  // the smallest table: one set of eight slots
        let eight = (1...8).map { peer(UInt32($0)) }
        #expect(answered(&e, eight + eight + eight, now: second) == 16)  // two each
        #expect(answered(&e, [peer(9), peer(10)], now: second) == 0)  // no room: refused
        #expect(answered(&e, eight, now: second) == 0)  // the eight are still held to their limit
        // A second later every bucket has refilled: those slots can be reused.
        #expect(answered(&e, [peer(9), peer(10)], now: 2 * second) == 2)
    }

    @Test func theTableFillsEvenly() {
        // Half full, no source may be refused for lack of a slot (with one set per source,
        // chance alone overfilled some sets: 6 of 1000 sources were refused at a quarter).
        var e = limited(rate: 10, burst: 1, table: 4096)
        let sources = (0..<2048).map { PeerAddress.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, Array(sources[..<1024]), now: second) == 1024)
        #expect(answered(&e, Array(sources[1024...]), now: second) == 1024)
        #expect(e.counters.drops[.rateLimited] == 0)
        // Three quarters full: still (almost) every source finds a slot.
        let more = (2048..<3072).map { PeerAddress.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, more, now: second) >= 1014)
    }

    @Test func memoryIsFixed() {
        let limiter = RateLimiter(RateLimiter.Configuration(tableSize: 4096))
        #expect(limiter.slotCount == 4096)
        let rounded = RateLimiter(RateLimiter.Configuration(tableSize: 5000))
        #expect(rounded.slotCount == 8192)
    }

    @Test func everyDropReasonHasItsOwnCounter() {
        var drops = DropCounts()
        for (i, reason) in DropReason.allCases.enumerated() { drops[reason] = UInt64(i + 1) }
        #expect(DropReason.allCases.map { drops[$0] } == Array(1...UInt64(DropReason.allCases.count)))
        #expect(drops.total == UInt64((1...DropReason.allCases.count).reduce(0, +)))
    }
}
