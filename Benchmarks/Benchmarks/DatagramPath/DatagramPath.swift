// Heap allocations on hellod's datagram path, counted by package-benchmark's malloc
// interposer over many batches through the real code: a `Worker` on a UDP socket on
// loopback, clients on their own sockets, `Worker.serveBatch()` doing the recvmmsg, the
// reply rules and the (segmented) sendmmsg, exactly as `Worker.run` does between waits.
//
// One iteration = `rounds` rounds; one round = every client sends its requests (peers
// interleaved, so the worker must group them for GSO), the worker serves them batch by
// batch, every client drains and checks its replies. Sockets, the worker and every byte a
// round sends or expects are set up before the first iteration; the client side of a
// round is plain send(2)/recv(2)/poll(2) on preallocated buffers, so what the counters see
// is the server path (the "Control" benchmark proves the client side allocates nothing,
// the "Harness" one that the measuring does not either).
//
// mallocCountTotal is per iteration (1024 datagrams in most); the custom metrics put it per
// datagram and over the whole run. Every malloc metric is gated at 0 in Thresholds/:
// `swift package benchmark thresholds check` fails on any malloc (the canary's is 1).
// It fails too on any other failure: a benchmark whose setup or a round fails, or whose
// worker counts anything but exactly what its scenario expects, ends its process (Gate.swift).
// The rig and hellod's server API are in Rig.swift; sockets and namespaces in Network.swift.

import Benchmark
import Glibc
import HelloChat
import HelloChatWire
import HelloLauncher
import HelloServer
import HelloService
import HelloSocket
import MallocInterposerSwift

/// Holds a benchmark's rig from its setup to its teardown.
final class RigSlot: @unchecked Sendable {
    var rig: Rig?
}

// MARK: - Metrics and thresholds

enum Metrics {
    /// ceil(mallocs x 1000 / datagrams) per iteration: any malloc at all shows as >= 1.
    static let perThousandDatagrams = BenchmarkMetric.custom(
        "Mallocs per 1000 datagrams (ceil)", useScalingFactor: false)
    /// Mallocs over all measured iterations so far: the p90 the threshold check gates is
    /// then non-zero if anything allocated in the first 90% of the run, not just if one
    /// iteration in ten did (mallocCountTotal's p90 would miss a rare allocation).
    static let runningTotal = BenchmarkMetric.custom("Mallocs so far in the run", useScalingFactor: false)
}

/// Zero tolerance at every percentile: one malloc is a regression.
func zeroTolerance() -> BenchmarkThresholds {
    BenchmarkThresholds(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])
}

/// The gated malloc metrics, with the names Thresholds/ uses for them.
func gatedMetrics(perDatagram: Bool) -> [(BenchmarkMetric, String)] {
    [
        (.mallocCountTotal, "mallocCountTotal"), (.freeCountTotal, "freeCountTotal"),
        (.mallocBytesCount, "mallocBytesCount"),
        (Metrics.runningTotal, "Mallocs so far in the run"),
    ]
        + (perDatagram ? [(Metrics.perThousandDatagrams, "Mallocs per 1000 datagrams (ceil)")] : [])
}

/// Every gated metric at 0: what each benchmark's file in Thresholds/ must say.
func zeroThresholds(perDatagram: Bool = true) -> [String: Int] {
    Dictionary(uniqueKeysWithValues: gatedMetrics(perDatagram: perDatagram).map { ($0.1, 0) })
}

/// The malloc metrics, each gated at 0 (here for `baseline check`, and in Thresholds/ for
/// `thresholds check`), and the time an iteration takes, for context.
func configuration(perDatagram: Bool = true) -> Benchmark.Configuration {
    let gated = gatedMetrics(perDatagram: perDatagram).map(\.0)
    return .init(
        metrics: gated + [.wallClock, .throughput],
        timeUnits: .microseconds,
        warmupIterations: 3,
        scalingFactor: .one,
        maxDuration: .seconds(1),
        maxIterations: 2_000,
        thresholds: Dictionary(uniqueKeysWithValues: gated.map { ($0, zeroTolerance()) })
    )
}

/// A benchmark of `scenario`. Any failure ends the process (see `fail`): no round may fail,
/// and after every iteration the worker's counters must be exactly `scenario.expected`
/// times the rounds run.
func registerDatagramBenchmark(_ name: String, _ scenario: Scenario) {
    let slot = RigSlot()
    let datagrams = scenario.datagramsPerIteration
    Benchmark(name, configuration: configuration()) { benchmark in
        guard let rig = slot.rig else { fail(name, "no rig") }
        benchmark.startMeasurement()
        let before = MallocInterposerSwift.getStatistics()
        let ok = rig.iteration()
        let after = MallocInterposerSwift.getStatistics()
        benchmark.stopMeasurement()
        guard ok else { fail(name, rig.failureDescription) }
        if let mismatch = rig.counterMismatch() { fail(name, "worker counters: \(mismatch)") }
        let mallocs = after.mallocCount - before.mallocCount
        rig.runningMallocs += mallocs
        benchmark.measurement(Metrics.perThousandDatagrams, (mallocs * 1000 + datagrams - 1) / datagrams)
        benchmark.measurement(Metrics.runningTotal, rig.runningMallocs)
    } setup: {
        requireThresholds(name, zeroThresholds())
        let rig: Rig
        do {
            rig = try Rig(scenario)
        } catch {
            fail(name, "setup: \(error)")
        }
        // A first iteration outside any measurement: lazily made runtime metadata and the
        // first touch of every buffer happen here, as in a daemon's first second. (The
        // harness then runs 3 warm-up iterations with counting off, then measures.)
        guard rig.iteration() else { fail(name, "setup: " + rig.failureDescription) }
        if let mismatch = rig.counterMismatch() { fail(name, "setup: worker counters: \(mismatch)") }
        slot.rig = rig
    } teardown: {
        defer { slot.rig = nil }
        guard let rig = slot.rig else { fail(name, "teardown: no rig") }
        printToStandardError("\(name): worker \(rig.summary)")
        if let mismatch = rig.counterMismatch() { fail(name, "teardown: worker counters: \(mismatch)") }
        if scenario.failsAtTeardown { fail(name, "teardown: injected failure (HELLOD_BENCH_BROKEN)") }
    }
}

extension AdmissionPolicy {
    /// The default checks without the rate limit, which exempts only loopback peers: the
    /// 192.0.2.1 peers' floods must reach the send, not the limiter.
    static var unlimited: AdmissionPolicy {
        var policy = AdmissionPolicy()
        policy.rateLimit = nil
        return policy
    }
}

// MARK: - The benchmarks

let benchmarks: @Sendable () -> Void = {
    keepStandardError()

    // What measuring costs: nothing happens between the start and the stop.
    var harnessMallocs = 0
    let harness = "Harness-empty-measured-region"
    Benchmark(harness, configuration: configuration(perDatagram: false)) { benchmark in
        benchmark.startMeasurement()
        let before = MallocInterposerSwift.getStatistics()
        let after = MallocInterposerSwift.getStatistics()
        benchmark.stopMeasurement()
        harnessMallocs += after.mallocCount - before.mallocCount
        benchmark.measurement(Metrics.runningTotal, harnessMallocs)
    } setup: {
        requireThresholds(harness, zeroThresholds(perDatagram: false))
    }

    // The canary: exactly one malloc (and one free) of 64 bytes per iteration. Its
    // threshold is 1, so were the interposer not counting at all, this one's check would
    // fail ("better than threshold") instead of every other benchmark passing unnoticed.
    let canary = "Canary-one-malloc-per-iteration"
    Benchmark(
        canary,
        configuration: .init(
            metrics: [.mallocCountTotal, .freeCountTotal, .mallocBytesCount, .wallClock],
            timeUnits: .microseconds, warmupIterations: 3, maxDuration: .seconds(1),
            maxIterations: 2_000)
    ) { benchmark in
        benchmark.startMeasurement()
        let p = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        blackHole(p)
        p.deallocate()
        benchmark.stopMeasurement()
    } setup: {
        requireThresholds(canary, ["mallocCountTotal": 1, "freeCountTotal": 1])
    }

    // The clients' side of a round, alone: 8 sockets each send 8 datagrams to themselves
    // and drain them. Whatever this counts, the worker benchmarks count too.
    registerDatagramBenchmark("Control-clients-only-1024-datagrams", Scenario(expected: nil, serve: false))

    // MARK: Every datagram answered (64 a round, 64 replied)

    // The common case: 64 requests from 8 peers, one recvmmsg, 8 segmented sends (GSO)
    // of 8 same-length replies each.
    registerDatagramBenchmark("Worker-batch-64-1024-datagrams", Scenario())

    // The same with the trace on (hellod --trace): a record per datagram into the worker's
    // ring, completed after the send; the rig empties the rings each round.
    registerDatagramBenchmark("Worker-batch-64-traced-1024-datagrams", Scenario(traced: true))

    // --batch 1: one recvmmsg and one sendmmsg per datagram.
    registerDatagramBenchmark("Worker-batch-1-1024-datagrams", Scenario(batchSize: 1))

    // Sizes from 1 to 1400 bytes, mixed within each peer: GSO groups break at every
    // length change, and a shorter reply may close a group.
    registerDatagramBenchmark(
        "Worker-batch-64-mixed-sizes-1024-datagrams",
        Scenario(size: { peer, k in
            let sizes = [1, 16, 16, 16, 100, 512, 512, 1400, 7, 1400, 1400, 64]
            return sizes[(peer * 5 + k) % sizes.count]
        }))

    // MARK: UDP GRO (hellod's default): trains read as one receive, split into datagrams

    // GRO on, plain sends: what every batch without a train pays (a look at each receive).
    registerDatagramBenchmark("Worker-batch-64-GRO-no-trains-1024-datagrams", Scenario(coalescing: true))

    // Each of the 8 peers sends its 8 requests as one UDP_SEGMENT train: one recvmmsg of 8
    // coalesced receives, each split into its 8 datagrams, answered by 8 segmented sends.
    registerDatagramBenchmark(
        "Worker-batch-64-GRO-trains-1024-datagrams", Scenario(coalescing: true, trains: true))

    // ...traced: a record per datagram of each train.
    registerDatagramBenchmark(
        "Worker-batch-64-GRO-trains-traced-1024-datagrams", Scenario(coalescing: true, trains: true, traced: true))

    // ...of 300-byte requests: segments straddle the 512-byte head's end (payload and
    // continuation), replies of 308 bytes.
    registerDatagramBenchmark(
        "Worker-batch-64-GRO-trains-straddling-1024-datagrams",
        Scenario(coalescing: true, trains: true, size: { _, _ in 300 }))

    // ...cut: slots of 100 bytes (forced: hellod coalesces only with 64 KiB slots), trains
    // of 8 x 16 bytes: 6 read whole and answered, the 7th cut and the 8th lost, both
    // counted truncated.
    registerDatagramBenchmark(
        "Worker-batch-64-GRO-trains-cut-1024-datagrams",
        Scenario(
            maxDatagram: 100, coalescing: true, trains: true, answered: { _, k in k < 6 },
            expected: Expected(read: 64, replied: 48, drops: ["truncated": 16])))

    // Same-length replies without GSO: one message per reply.
    registerDatagramBenchmark("Worker-batch-64-no-GSO-1024-datagrams", Scenario(segmentation: false))

    // The per-source rate limiter on every datagram (loopback is exempt by default), at a
    // rate no round comes near: every request passes through RateLimiter.allow.
    var generous = AdmissionPolicy()
    generous.limitLoopback = true
    generous.rateLimit = RateLimiter.Configuration(rate: 100_000_000, burst: 1_000_000)
    registerDatagramBenchmark("Worker-batch-64-rate-limited-loopback-1024-datagrams", Scenario(policy: generous))

    // A wildcard socket: IP_PKTINFO in, a source-address control message out per reply.
    registerDatagramBenchmark("Worker-batch-64-wildcard-PKTINFO-1024-datagrams", Scenario(listen: "0.0.0.0:0"))

    // Echo mode, dual-stack wildcard socket, IPv4 peers seen as v4-mapped IPv6.
    registerDatagramBenchmark(
        "Worker-batch-64-dual-stack-echo-1024-datagrams", Scenario(listen: "[::]:0", service: .echo))

    // Two sockets, two services: even peers to a hello socket, odd peers to an echo one,
    // a worker each (as `--listen hello@... --listen echo@...` runs them).
    registerDatagramBenchmark(
        "Worker-batch-64-hello-and-echo-two-sockets-1024-datagrams",
        Scenario(secondService: .echo))

    // MARK: chat: a room's messages to every member

    // 8 peers join one room before measuring (challenge, cookie, WELCOME); then every
    // round each SAYs once (8 datagrams read, each replied when handled) and each gets the
    // round's 8 events, numbered in the room, in one EVENTS datagram (8 deliveries). 128
    // rounds an iteration. Messages are not rate-limited here: the rounds come far faster
    // than any member may send, nor are the room's deliveries.
    var room = ChatSettings()
    room.messageRate = 1_000_000_000
    room.messageBurst = 1_000_000_000
    room.roomDeliveryRate = 1_000_000_000
    room.roomDeliveryBurst = 1_000_000_000
    registerDatagramBenchmark(
        "Worker-chat-room-of-8-1024-datagrams",
        Scenario(
            service: .chat, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 8, replied: 8, deliveries: 8), chat: room))

    // ...traced: each SAY's record names its request and room (the member found by token).
    registerDatagramBenchmark(
        "Worker-chat-room-of-8-traced-1024-datagrams",
        Scenario(
            service: .chat, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 8, replied: 8, deliveries: 8), chat: room, traced: true))

    // The full-size fan-out (the benchmark case is 64 members): 64 peers join one
    // room; every round 8 of them SAY once (8 datagrams read) and all 64 get the round's 8
    // events in one EVENTS datagram (64 deliveries, 8 per SAY). Members 8 to 63 only
    // listen, so silence and eviction are set beyond any run; the 64 joins from one source
    // (127.0.0.1) need the challenge and join limits' bursts and the memberships per
    // prefix raised.
    var large = room
    large.membersPerRoom = 64
    large.membershipsPerPrefix = 64
    large.answerLimit = RateLimiter.Configuration(rate: 1000, burst: 128, tableSize: 64)
    large.joinLimit = RateLimiter.Configuration(rate: 1000, burst: 128, tableSize: 64)
    (large.silenceSeconds, large.evictSeconds) = (1_000_000, 2_000_000)
    registerDatagramBenchmark(
        "Worker-chat-room-of-64-1024-datagrams",
        Scenario(
            service: .chat, peers: 64, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 8, replied: 8, deliveries: 64), chat: large, chatSpeakers: 8))

    // The nick policy on JOIN and NICK (NamePolicy: the key of each nick, its hash, the
    // full comparison on a match). In the room of 8, every round 4 members send a NICK and
    // 4 a JOIN (with a valid cookie, another secret) with a nick that reads as another
    // member's: each is refused, nick taken (8 read, 8 dropped, 8 REFUSED sent).
    registerDatagramBenchmark(
        "Worker-chat-look-alike-join-and-nick-refused-1024-datagrams",
        Scenario(
            service: .chat, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 8, replied: 0, drops: ["chat-bad-name": 8], deliveries: 8), chat: room,
            chatRequests: .lookAlikesRefused))
    registerDatagramBenchmark(
        "Worker-chat-look-alike-join-and-nick-refused-traced-1024-datagrams",
        Scenario(
            service: .chat, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 8, replied: 0, drops: ["chat-bad-name": 8], deliveries: 8), chat: room,
            chatRequests: .lookAlikesRefused, traced: true))

    // ...and a NICK taken: member 0 renames itself every round, c0 and C0 in turn, and all
    // 8 get the renamed event (1 read and replied, 8 deliveries). 128 rounds an iteration.
    registerDatagramBenchmark(
        "Worker-chat-nick-rename-128-datagrams",
        Scenario(
            service: .chat, requestsPerPeer: 1, rounds: 128,
            expected: Expected(read: 1, replied: 1, deliveries: 8), chat: room, chatSpeakers: 1,
            chatRequests: .rename))

    // MARK: The drop paths: floods that are mostly or wholly refused

    // Broadcasts, never answered: peers 0 and 1 send to 192.0.2.255 (the tap's subnet, in
    // a private namespace; looped back to the host), the others to 127.0.0.1, all to one
    // wildcard socket. 16 a round refused as broadcast-or-multicast, 48 answered.
    registerDatagramBenchmark(
        "Worker-batch-64-broadcast-refused-1024-datagrams",
        Scenario(
            listen: "0.0.0.0:0", network: .stalledLink, policy: .unlimited,
            peerKind: { $0 < 2 ? .broadcast : .loopback }, answered: { peer, _ in peer >= 2 },
            expected: Expected(read: 64, replied: 48, drops: ["broadcast-or-multicast": 16])))

    // A flood over the rate limit: all 8 peers are 127.0.0.1, one source, limited to 1000/s
    // with a burst of 1, on a clock that advances 1 ms a round. Each round, the first
    // request read (peer 0's first) takes the one token; the other 63 are refused.
    var strict = AdmissionPolicy()
    strict.limitLoopback = true
    strict.rateLimit = RateLimiter.Configuration(rate: 1000, burst: 1)
    registerDatagramBenchmark(
        "Worker-batch-64-rate-limited-flood-1024-datagrams",
        Scenario(
            policy: strict, answered: { peer, k in peer == 0 && k == 0 },
            expected: Expected(read: 64, replied: 1, drops: ["rate-limited": 63]), clockStep: 1_000_000))

    // --max-datagram 600 (512 bytes in the head buffer, 88 in the tail): each peer sends
    // 16, 600, 601 and 1400 bytes, twice. The kernel cuts the last two (MSG_TRUNC).
    let truncationSizes = [16, 600, 601, 1400]
    registerDatagramBenchmark(
        "Worker-batch-64-truncated-1024-datagrams",
        Scenario(
            maxDatagram: 600, size: { _, k in truncationSizes[k % 4] },
            answered: { _, k in truncationSizes[k % 4] <= 600 },
            expected: Expected(read: 64, replied: 32, drops: ["truncated": 32])))

    // Peer 0's first request of each round is 65,500 bytes: its hello reply, 65,508 bytes,
    // is over IPv4's 65,507. (One a round: a few such datagrams fill a receive queue.)
    registerDatagramBenchmark(
        "Worker-batch-64-reply-too-large-1024-datagrams",
        Scenario(
            size: { peer, k in peer == 0 && k == 0 ? 65_500 : 16 }, answered: { peer, k in peer != 0 || k != 0 },
            expected: Expected(read: 64, replied: 63, drops: ["reply-too-large": 1])))

    // Peers 0 and 1 send from ports 1000 and 1001 (in a private network namespace, so the
    // ports are free): refused, the other 6 peers answered.
    registerDatagramBenchmark(
        "Worker-batch-64-privileged-source-port-1024-datagrams",
        Scenario(
            network: .isolated, peerKind: { $0 < 2 ? .privilegedPort : .loopback }, answered: { peer, _ in peer >= 2 },
            expected: Expected(read: 64, replied: 48, drops: ["privileged-source-port": 16])))

    // Peers 0 and 1 send from ports the worker's policy lists as its own.
    registerDatagramBenchmark(
        "Worker-batch-64-own-port-1024-datagrams",
        Scenario(
            peerKind: { $0 < 2 ? .ownPort : .loopback }, answered: { peer, _ in peer >= 2 },
            expected: Expected(read: 64, replied: 48, drops: ["own-port": 16])))

    // Peers 0 and 1 send from 192.0.2.1 in a private network namespace that has no route
    // there: each of their replies (one segmented send of 8 each) fails with ENETUNREACH.
    registerDatagramBenchmark(
        "Worker-batch-64-send-failed-unreachable-1024-datagrams",
        Scenario(
            network: .isolated, policy: .unlimited, peerKind: { $0 < 2 ? .testNet : .loopback },
            answered: { peer, _ in peer >= 2 },
            expected: Expected(read: 64, replied: 48, drops: ["send-failed": 16], lastSendErrno: ENETUNREACH)))

    // ...traced: which replies failed is known per datagram (the sender's lost runs).
    registerDatagramBenchmark(
        "Worker-batch-64-traced-send-failed-unreachable-1024-datagrams",
        Scenario(
            network: .isolated, policy: .unlimited, peerKind: { $0 < 2 ? .testNet : .loopback },
            answered: { peer, _ in peer >= 2 },
            expected: Expected(read: 64, replied: 48, drops: ["send-failed": 16], lastSendErrno: ENETUNREACH),
            traced: true))

    // A full send buffer: the worker listens on 192.0.2.100, on a link whose neighbours
    // never resolve, with the smallest send buffer, filled before the first round. Every
    // sendmmsg meets EAGAIN; the worker waits for room 3 times (10 ms each) a batch, then
    // counts the batch's replies as failed. 2 rounds an iteration: each takes 30 ms.
    registerDatagramBenchmark(
        "Worker-batch-64-send-buffer-full-EAGAIN-128-datagrams",
        Scenario(
            listen: "192.0.2.100:0", connectTo: "192.0.2.100", network: .stalledLink, policy: .unlimited, rounds: 2,
            peerKind: { _ in .testNet }, answered: { _, _ in false },
            expected: Expected(read: 64, replied: 0, drops: ["send-failed": 64], lastSendErrno: EAGAIN),
            serverSendBuffer: 0, fillSendBuffer: true))

    registerBrokenBenchmarks()
}

// MARK: - Deliberately broken benchmarks, for Benchmarks/prove-gate.sh

/// Registered only when HELLOD_BENCH_BROKEN is set: `malloc` for one that allocates and
/// otherwise passes, `failure` for six that fail without a malloc in the gated metrics.
/// `thresholds check` must fail on each (prove-gate.sh runs them, and requires it).
func registerBrokenBenchmarks() {
    guard let setting = getenv("HELLOD_BENCH_BROKEN").map({ String(cString: $0) }), !setting.isEmpty else { return }
    let ownPorts: @Sendable (Int) -> PeerKind = { $0 < 2 ? .ownPort : .loopback }
    switch setting {
    case "malloc":
        // One 64-byte malloc per iteration; every round and counter as expected.
        registerDatagramBenchmark("Broken-malloc-per-iteration-1024-datagrams", Scenario(allocatesPerIteration: true))
    case "failure":
        // The case: a malloc per iteration, and a teardown that fails.
        registerDatagramBenchmark(
            "Broken-malloc-then-teardown-fails-1024-datagrams",
            Scenario(allocatesPerIteration: true, failsAtTeardown: true))
        // The setup fails: no such address in a private namespace.
        registerDatagramBenchmark(
            "Broken-setup-fails-1024-datagrams",
            Scenario(listen: "192.0.2.1:0", network: .isolated))
        // Own-port drops stated as privileged-source-port ones: the replies are as the
        // clients expect, the counters are not.
        registerDatagramBenchmark(
            "Broken-wrong-drop-reason-1024-datagrams",
            Scenario(
                peerKind: ownPorts, answered: { peer, _ in peer >= 2 },
                expected: Expected(read: 64, replied: 48, drops: ["privileged-source-port": 16])))
        // "Every datagram answered", on a path that drops: a round fails (no reply).
        registerDatagramBenchmark(
            "Broken-claims-all-answered-1024-datagrams",
            Scenario(peerKind: ownPorts))
        // Fails while measured (where package-benchmark silences stderr): loopback peers
        // rate-limited at the default 1000/s with a burst of 200, on a clock that barely
        // moves. The setup's 128 requests pass; the first measured round runs out of tokens.
        var limited = AdmissionPolicy()
        limited.limitLoopback = true
        registerDatagramBenchmark(
            "Broken-rate-limited-after-setup-128-datagrams",
            Scenario(policy: limited, rounds: 2, clockStep: 1))
        // A correct benchmark without a file in Thresholds/.
        registerDatagramBenchmark("Broken-no-thresholds-file-1024-datagrams", Scenario())
    default:
        fail("HELLOD_BENCH_BROKEN", "unknown value \(setting); use malloc or failure")
    }
}
