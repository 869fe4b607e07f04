import Glibc
import HelloDatagram
import HelloReplies
import HelloService
import Testing

/// The checks that keep hellod from being a reflector or a loop partner.
@Suite struct AdmissionTests {
    let second: UInt64 = 1_000_000_000

    func service(_ policy: AdmissionPolicy) -> Served<EchoReply> {
        Served(EchoReply(), batchSize: 1024, maxDatagram: 64, policy: policy)
    }

    func peer(_ last: UInt32, port: UInt16 = 40000) -> Endpoint {
        .v4(0xc000_0200 | last, port: port)  // 192.0.2.x: not loopback
    }

    @Test func privilegedSourcePortsAreRefusedByDefault() {
        var e = service(AdmissionPolicy())
        let ports: [UInt16] = [0, 7, 19, 53, 123, 1023, 1024, 40000]
        e.respond(ports.map { (Array("x".utf8), peer(1, port: $0), false) })
        #expect(e.replies.map(\.request) == [6, 7])
        #expect(e.counters.drops[.privilegedSourcePort] == 6)
    }

    @Test func privilegedSourcePortsCanBeAllowed() {
        var policy = AdmissionPolicy()
        policy.allowPrivilegedSourcePorts = true
        var e = service(policy)
        e.respond([(Array("x".utf8), peer(1, port: 7), false), (Array("x".utf8), peer(1, port: 0), false)])
        #expect(e.replies.count == 2)
    }

    @Test func ownPortsAreRefusedByDefault() {
        var policy = AdmissionPolicy()
        policy.ownPorts = [9999, 7777]
        var e = service(policy)
        e.respond([
            (Array("a".utf8), peer(1, port: 9999), false), (Array("b".utf8), peer(1, port: 7777), false),
            (Array("c".utf8), peer(1, port: 9998), false),
        ])
        #expect(e.replies.map(\.request) == [2])
        #expect(e.counters.drops[.ownPort] == 2)
        policy.allowOwnPorts = true
        var allowed = service(policy)
        allowed.respond([(Array("a".utf8), peer(1, port: 9999), false)])
        #expect(allowed.replies.count == 1)
    }

    @Test func theFirstFailingCheckNamesTheDrop() {
        var policy = AdmissionPolicy()
        policy.ownPorts = [53]
        var e = service(policy)
        e.respond([(Array("x".utf8), peer(1, port: 53), true), (Array("x".utf8), peer(1, port: 53), false)])
        #expect(e.counters.drops[.truncated] == 1)
        #expect(e.counters.drops[.privilegedSourcePort] == 1)
        #expect(e.counters.drops[.ownPort] == 0)
        #expect(e.counters.drops.total == 2)
    }

    func limited(
        rate: UInt64, burst: UInt64, v4: Int = 32, v6: Int = 64, table: Int = 4096,
        loopback: Bool = false
    ) -> Served<EchoReply> {
        var policy = AdmissionPolicy()
        policy.rateLimit = RateLimiter.Configuration(
            rate: rate, burst: burst, ipv4PrefixLength: v4,
            ipv6PrefixLength: v6, tableSize: table)
        policy.limitLoopback = loopback
        return service(policy)
    }

    func answered(_ e: inout Served<EchoReply>, _ peers: [Endpoint], now: UInt64) -> Int {
        e.respond(peers.map { (Array("x".utf8), $0, false) }, now: now)
        return e.replies.count
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
        let sameNet = (1...20).map { Endpoint.v6(high: 0x2001_0db8_0000_0000, low: UInt64($0), port: 40000) }
        #expect(answered(&e, sameNet, now: second) == 5)
        let otherNet = (1...20).map { Endpoint.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, otherNet, now: second) == 20)
    }

    @Test func loopbackIsExemptUnlessAsked() {
        var exempt = limited(rate: 10, burst: 1)
        let local = Array(repeating: Endpoint.v4(0x7f00_0001, port: 40000), count: 100)
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
        let sources = (0..<2048).map { Endpoint.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, Array(sources[..<1024]), now: second) == 1024)
        #expect(answered(&e, Array(sources[1024...]), now: second) == 1024)
        #expect(e.counters.drops[.rateLimited] == 0)
        // Three quarters full: still (almost) every source finds a slot.
        let more = (2048..<3072).map { Endpoint.v6(high: 0x2001_0db8_0000_0000 | UInt64($0), low: 1, port: 40000) }
        #expect(answered(&e, more, now: second) >= 1014)
    }

    /// The table is allocated once, at its rounded size, and a flood of any number of
    /// sources neither grows it nor holds more sources than it has slots.
    @Test func memoryIsFixed() throws {
        #expect(RateLimiter(RateLimiter.Configuration(tableSize: 4096)).slotCount == 4096)
        #expect(RateLimiter(RateLimiter.Configuration(tableSize: 5000)).slotCount == 8192)

        // 100k sources at one instant, each allowed one datagram a second: the table holds
        // at most its 4096 slots' worth; every other source is refused, not remembered.
        var limiter = RateLimiter(RateLimiter.Configuration(rate: 1, burst: 1, tableSize: 4096), seed: 1)
        let admitted = (0..<100_000).filter { limiter.allow(distinctSource($0), now: second) }.count
        #expect(admitted <= limiter.slotCount)
        #expect(admitted >= limiter.slotCount * 3 / 4)  // and it fills evenly (the test above)
        let again = limiter.allow(distinctSource(0), now: second)
        #expect(!again)  // those it holds stay limited

        // 100k sources one after another, each busy for 1 ms: the table takes every one,
        // reusing slots, and the process's anonymous memory does not grow. Measured in a
        // child process, where no other test's thread allocates meanwhile.
        let flood = { (count: Int) -> [Int] in
            var limiter = RateLimiter(RateLimiter.Configuration(rate: 1000, burst: 1, tableSize: 4096), seed: 1)
            var admitted = 0
            for i in 0..<10_000 where limiter.allow(distinctSource(i), now: UInt64(i) * 10_000) { admitted += 1 }
            let before = anonymousResidentBytes()
            for i in 10_000..<10_000 + count where limiter.allow(distinctSource(i), now: UInt64(i) * 10_000) {
                admitted += 1
            }
            return [before, anonymousResidentBytes(), admitted]
        }
        _ = flood(100)  // everything the child runs, run once here first
        let measured = try #require(alone { flood(100_000) })
        let (before, after, floodAdmitted) = (measured[0], measured[1], measured[2])
        #expect(floodAdmitted == 110_000)
        #expect(
            before > 0 && after - before < 256 << 10,
            "anonymous memory grew by \(after - before) bytes over 100k sources (\(before) before)")
    }

    /// Found by the fuzzer: the key once joined an IPv6 address's halves as
    /// `high ^ low * C` and tagged the families by XOR, so distinct prefixes shared one key
    /// (and one limit) whatever the seed: IPv6 prefixes longer than 64 bits that an
    /// attacker could aim at a victim's from its own /64, and IPv4 a.b.c.d with
    /// 2000:0:a.b.c.d::/64 under the defaults.
    @Test func distinctPrefixesHaveTheirOwnLimits() {
        var longPrefixes = RateLimiter(RateLimiter.Configuration(rate: 1, burst: 1, ipv6PrefixLength: 65), seed: 1)
        let first = longPrefixes.allow(.v6(high: 0, low: 1, port: 40000), now: second)
        let other = longPrefixes.allow(.v6(high: 1 << 63, low: 1 << 63, port: 40000), now: second)  // another /65
        #expect(first && other)
        var defaults = RateLimiter(RateLimiter.Configuration(rate: 1, burst: 1), seed: 1)
        let v4 = defaults.allow(.v4(0xc000_0201, port: 40000), now: second)
        let v6 = defaults.allow(.v6(high: 0x2000_0000_c000_0201, low: 1, port: 40000), now: second)
        #expect(v4 && v6)
    }

    /// Source `i` of a flood: 10.0.0.0/8 and 2001:db8::/32 /64s, every one distinct.
    func distinctSource(_ i: Int) -> Endpoint {
        i % 2 == 0
            ? .v4(0x0a00_0000 | UInt32(i), port: 40000)
            : .v6(high: 0x2001_0db8_0000_0000 | UInt64(i), low: 1, port: 40000)
    }

    @Test func broadcastAndMulticastAreNeverAnsweredEvenWithAnOpenPolicy() {
        var admission = Admission(.open)
        for kind in [DestinationKind.broadcast, .multicast] {
            #expect(refusal(&admission, from: peer(1), arrival: Arrival(destination: kind)) == .broadcastOrMulticast)
        }
        #expect(refusal(&admission, from: peer(1), arrival: Arrival(destination: .unicast)) == nil)
        // Through the service: counted under its own name, never replied.
        var e = service(.open)
        e.respond([(Array("x".utf8), peer(1), false)], arrival: Arrival(destination: .broadcast))
        e.respond([(Array("x".utf8), peer(1), false)], arrival: Arrival(destination: .multicast))
        #expect(e.outbox.count == 0)
        #expect(e.counters.drops[.broadcastOrMulticast] == 2 && e.counters.drops.total == 2)
        #expect(CounterSchema.generic.name(of: .broadcastOrMulticast) == "broadcast-or-multicast")
    }

    /// Truncated, broadcast or multicast, privileged source port, own port, rate limited:
    /// the first check that fails names the drop, and a datagram refused before the rate
    /// limit does not spend its source's allowance.
    @Test func theChecksInOrder() {
        var policy = AdmissionPolicy()
        policy.ownPorts = [53, 9999]
        policy.rateLimit = RateLimiter.Configuration(rate: 1, burst: 1)
        var admission = Admission(policy)
        let broadcast = Arrival(destination: .broadcast)
        let unicast = Arrival(destination: .unicast, replySource: LocalSource(.v4(0xc000_0202)))
        #expect(refusal(&admission, from: peer(1, port: 53), truncated: true, arrival: broadcast) == .truncated)
        #expect(refusal(&admission, from: peer(1, port: 53), arrival: broadcast) == .broadcastOrMulticast)
        #expect(refusal(&admission, from: peer(1, port: 53), arrival: unicast) == .privilegedSourcePort)
        #expect(refusal(&admission, from: peer(1, port: 9999), arrival: unicast) == .ownPort)
        #expect(refusal(&admission, from: peer(1, port: 40000), arrival: broadcast) == .broadcastOrMulticast)
        #expect(refusal(&admission, from: peer(1, port: 40000), arrival: unicast) == nil)  // its one datagram
        #expect(refusal(&admission, from: peer(1, port: 40000), arrival: unicast) == .rateLimited)
        #expect(refusal(&admission, from: peer(1, port: 40000), truncated: true, arrival: unicast) == .truncated)
    }

    func refusal(_ admission: inout Admission, from peer: Endpoint, truncated: Bool = false, arrival: Arrival)
        -> CounterID?
    {
        Array("x".utf8).withUnsafeBytes {
            admission.refusal(
                of: Datagram(payload: $0, truncated: truncated, peer: peer, arrival: arrival), now: second)
        }
    }

    @Test(arguments: [CounterSchema.generic])
    func everyDropReasonHasItsOwnCounter(schema: CounterSchema) {
        var counters = Counters(schema: schema)
        let reasons = schema.drops
        for (i, reason) in reasons.enumerated() { counters[reason] = UInt64(i + 1) }
        #expect(reasons.map { counters.drops[$0] } == Array(1...UInt64(reasons.count)))
        #expect(counters.drops.total == UInt64((1...reasons.count).reduce(0, +)))
    }
}

/// Anonymous resident memory of this process, in bytes (/proc/self/statm: resident less
/// file-backed and shared pages). Reads into the stack: measuring allocates nothing.
func anonymousResidentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { buffer in
        let n = read(fd, buffer.baseAddress, buffer.count)
        guard n > 0 else { return -1 }
        var fields: (Int, Int, Int) = (0, 0, 0)  // size, resident, shared
        var field = 0
        for byte in buffer[..<n] {
            if byte == UInt8(ascii: " ") {
                field += 1
                if field == 3 { break }
            } else if field == 1 {
                fields.1 = fields.1 * 10 + Int(byte - UInt8(ascii: "0"))
            } else if field == 2 {
                fields.2 = fields.2 * 10 + Int(byte - UInt8(ascii: "0"))
            }
        }
        return (fields.1 - fields.2) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// Runs `body` in a child process, where the calling thread is the only one, and returns
/// what it returned (nil, with an issue recorded, if the child failed). The child runs
/// plain code and leaves with `_exit`.
func alone(_ body: () -> [Int]) -> [Int]? {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else {
        Issue.record("pipe: errno \(errno)")
        return nil
    }
    let pid = fork()
    if pid == 0 {
        close(fds[0])
        let values = body()
        let ok = values.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) == $0.count }
        _exit(ok ? 0 : 1)
    }
    close(fds[1])
    defer { close(fds[0]) }
    guard pid > 0 else {
        Issue.record("fork: errno \(errno)")
        return nil
    }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 256)
    var ready = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
    while true {
        let status = poll(&ready, 1, 60_000)
        if status < 0 && errno == EINTR { continue }
        guard status > 0 else {
            kill(pid, SIGKILL)
            Issue.record("the child process did not finish in 60 s")
            break
        }
        let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[..<n]
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    guard status == 0, bytes.count % MemoryLayout<Int>.size == 0 else {
        Issue.record("the child process failed: wait status \(status), \(bytes.count) bytes")
        return nil
    }
    return bytes.withUnsafeBytes { raw in
        (0..<raw.count / MemoryLayout<Int>.size).map {
            raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<Int>.size, as: Int.self)
        }
    }
}
