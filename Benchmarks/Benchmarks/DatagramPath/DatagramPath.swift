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
// mallocCountTotal is per iteration (1024 datagrams); the custom metrics put it per
// datagram and over the whole run. Every malloc metric is gated at 0 in Thresholds/:
// `swift package benchmark thresholds check` fails on any malloc (the canary's is 1).

import Benchmark
import Glibc
import HelloCore
import HelloServer
import HelloSocket
import MallocInterposerSwift

// MARK: - What each benchmark sends

struct Scenario: Sendable {
    var listen = "127.0.0.1:0"
    var batchSize = 64
    var mode: ReplyMode = .hello
    var policy = AdmissionPolicy()
    var segmentation = true
    /// Client sockets, each its own peer (own source port).
    var peers = 8
    var requestsPerPeer = 8
    var rounds = 16
    /// The request size of peer `peer`'s `k`th request of a round.
    var size: @Sendable (_ peer: Int, _ k: Int) -> Int = { _, _ in 16 }
    /// False: no worker serves; each client sends to itself and drains (the control).
    var serve = true

    var datagramsPerRound: Int { peers * requestsPerPeer }
    var datagramsPerIteration: Int { datagramsPerRound * rounds }
}

// MARK: - Sockets, worker and buffers, all made before measuring

enum RoundFailure: Int {
    case none, sendFailed, serveTimedOut, replyTimedOut, wrongReply
}

final class Rig {
    let scenario: Scenario
    var worker: Worker
    let report = PublishedReport()
    let server: DatagramSocket
    let clients: UnsafeMutablePointer<Int32>
    // Request j of a round (j = k * peers + peer, peers interleaved) and its expected reply.
    let requests: UnsafeMutableRawPointer
    let requestOffset: UnsafeMutablePointer<Int>
    let requestLength: UnsafeMutablePointer<Int>
    let replies: UnsafeMutableRawPointer
    let replyOffset: UnsafeMutablePointer<Int>
    let replyLength: UnsafeMutablePointer<Int>
    let receiveBuffer: UnsafeMutableRawPointer
    static let receiveCapacity = 65536
    private(set) var failure = RoundFailure.none
    private(set) var failedAt = 0
    private(set) var failureDetail = 0
    /// Mallocs over every measured iteration so far.
    var runningMallocs = 0

    init(_ scenario: Scenario) throws {
        self.scenario = scenario
        server = try DatagramSocket.bound(to: SocketAddress(parsing: scenario.listen)!)
        // A round's requests all queue at once: room for 64 of up to 1400 bytes and more.
        try server.setReceiveBufferSize(4 << 20)
        try server.setSendBufferSize(4 << 20)
        let configuration = WorkerConfiguration(rule: ReplyRule(mode: scenario.mode), batchSize: scenario.batchSize,
                                                spinLimit: 0, coalesceDelay: 0, segmentation: scenario.segmentation,
                                                policy: scenario.policy)
        worker = Worker(index: 0, socket: server, configuration: configuration, publishingTo: report)

        // Clients on loopback, connected: to the worker, or (control) to themselves.
        let port = server.localAddress.port
        clients = .allocate(capacity: scenario.peers)
        for p in 0..<scenario.peers {
            let client = try DatagramSocket.bound(to: SocketAddress(ip: "127.0.0.1", port: 0)!)
            try client.setReceiveBufferSize(1 << 20)
            try client.connect(to: scenario.serve ? SocketAddress(ip: "127.0.0.1", port: port)! : client.localAddress)
            clients[p] = client.descriptor.rawValue
        }

        let count = scenario.datagramsPerRound
        let rule = ReplyRule(mode: scenario.mode)
        var requestBytes: [[UInt8]] = []
        var replyBytes: [[UInt8]] = []
        for j in 0..<count {
            let peer = j % scenario.peers, k = j / scenario.peers
            let size = scenario.size(peer, k)
            // "p3-r05-xxxx…": readable, distinct, exactly `size` bytes.
            var bytes = Array("p\(peer)-r\(k < 10 ? "0" : "")\(k)-".utf8)
            bytes += Array(repeating: UInt8(ascii: "a") + UInt8(j % 26), count: max(0, size - bytes.count))
            bytes = Array(bytes.prefix(size))
            requestBytes.append(bytes)
            replyBytes.append(scenario.serve ? rule.reply(to: bytes) : bytes)
        }
        (requests, requestOffset, requestLength) = Self.pack(requestBytes)
        (replies, replyOffset, replyLength) = Self.pack(replyBytes)
        receiveBuffer = .allocate(byteCount: Self.receiveCapacity, alignment: 64)
    }

    deinit {
        for p in 0..<scenario.peers { _ = Glibc.close(clients[p]) }
        server.close()
        clients.deallocate()
        for pointer in [requests, replies, receiveBuffer] { pointer.deallocate() }
        for pointer in [requestOffset, requestLength, replyOffset, replyLength] { pointer.deallocate() }
    }

    static func pack(_ datagrams: [[UInt8]])
        -> (UnsafeMutableRawPointer, UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) {
        let total = datagrams.reduce(0) { $0 + $1.count }
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 64)
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: datagrams.count)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: datagrams.count)
        var at = 0
        for (i, d) in datagrams.enumerated() {
            d.withUnsafeBytes { (bytes + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            offsets[i] = at
            lengths[i] = d.count
            at += d.count
        }
        return (bytes, offsets, lengths)
    }

    /// One measured iteration: `rounds` rounds, each sent, served and drained in full.
    /// Returns false on a failed round (recorded in `failure`).
    @inline(never)
    func iteration() -> Bool {
        for r in 0..<scenario.rounds {
            let result = round()
            if result != .none {
                failure = result
                failedAt = r
                return false
            }
        }
        return true
    }

    @inline(never)
    func round() -> RoundFailure {
        let count = scenario.datagramsPerRound
        let peers = scenario.peers
        for j in 0..<count {
            let sent = send(clients[j % peers], requests + requestOffset[j], requestLength[j], Int32(MSG_DONTWAIT))
            guard sent == requestLength[j] else {
                failureDetail = sent < 0 ? Int(errno) : sent
                return .sendFailed
            }
        }
        if scenario.serve {
            // Loopback delivers a send at once, so one serveBatch takes up to a whole batch;
            // should the kernel defer some, wait for them (never a spin forever).
            var served = 0
            while served < count {
                let n = worker.serveBatch()
                if n == 0 && !readable(server.descriptor.rawValue) {
                    failureDetail = served
                    return .serveTimedOut
                }
                served += n
            }
        }
        // Each client's replies come in the order it sent its requests.
        for peer in 0..<peers {
            let fd = clients[peer]
            for k in 0..<scenario.requestsPerPeer {
                let j = k * peers + peer
                var n = recv(fd, receiveBuffer, Self.receiveCapacity, Int32(MSG_DONTWAIT))
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && readable(fd) {
                    n = recv(fd, receiveBuffer, Self.receiveCapacity, Int32(MSG_DONTWAIT))
                }
                guard n >= 0 else {
                    failureDetail = j
                    return .replyTimedOut
                }
                guard n == replyLength[j], memcmp(receiveBuffer, replies + replyOffset[j], n) == 0 else {
                    failureDetail = j
                    return .wrongReply
                }
            }
        }
        return .none
    }

    /// Waits up to a second for `fd` to become readable.
    @inline(__always)
    func readable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 1000) == 1
    }

    var failureDescription: String {
        "round \(failedAt) of an iteration failed: \(failure) (detail \(failureDetail)); worker report: \(report.snapshot())"
    }
}

/// Holds a benchmark's rig from its setup to its teardown.
final class RigSlot: @unchecked Sendable {
    var rig: Rig?
}

// MARK: - Metrics and thresholds

enum Metrics {
    /// ceil(mallocs x 1000 / datagrams) per iteration: any malloc at all shows as >= 1.
    static let perThousandDatagrams = BenchmarkMetric.custom("Mallocs per 1000 datagrams (ceil)", useScalingFactor: false)
    /// Mallocs over all measured iterations so far: the p90 the threshold check gates is
    /// then non-zero if anything allocated in the first 90% of the run, not just if one
    /// iteration in ten did (mallocCountTotal's p90 would miss a rare allocation).
    static let runningTotal = BenchmarkMetric.custom("Mallocs so far in the run", useScalingFactor: false)
}

/// Zero tolerance at every percentile: one malloc is a regression.
func zeroTolerance() -> BenchmarkThresholds {
    BenchmarkThresholds(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])
}

/// The malloc metrics, each gated at 0 (here for `baseline check`, and in Thresholds/ for
/// `thresholds check`), and the time an iteration takes, for context.
func configuration(perDatagram: Bool = true) -> Benchmark.Configuration {
    let gated: [BenchmarkMetric] = [.mallocCountTotal, .freeCountTotal, .mallocBytesCount, Metrics.runningTotal]
        + (perDatagram ? [Metrics.perThousandDatagrams] : [])
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

func registerDatagramBenchmark(_ name: String, _ scenario: Scenario) {
    let slot = RigSlot()
    let datagrams = scenario.datagramsPerIteration
    Benchmark(name, configuration: configuration()) { benchmark in
        guard let rig = slot.rig else {
            benchmark.error("no rig: setup failed")
            return
        }
        benchmark.startMeasurement()
        let before = MallocInterposerSwift.getStatistics()
        let ok = rig.iteration()
        let after = MallocInterposerSwift.getStatistics()
        benchmark.stopMeasurement()
        guard ok else {
            benchmark.error(rig.failureDescription)
            return
        }
        let mallocs = after.mallocCount - before.mallocCount
        rig.runningMallocs += mallocs
        benchmark.measurement(Metrics.perThousandDatagrams, (mallocs * 1000 + datagrams - 1) / datagrams)
        benchmark.measurement(Metrics.runningTotal, rig.runningMallocs)
    } setup: {
        let rig = try Rig(scenario)
        // A first iteration outside any measurement: lazily made runtime metadata and the
        // first touch of every buffer happen here, as in a daemon's first second. (The
        // harness then runs 3 warm-up iterations with counting off, then measures.)
        guard rig.iteration() else { throw SetupError(description: rig.failureDescription) }
        slot.rig = rig
    } teardown: {
        defer { slot.rig = nil }
        guard let rig = slot.rig else { return }
        // Every datagram read was answered: none dropped (rate limited, too large, …).
        let report = rig.report.snapshot()
        printToStandardError("\(name): worker \(rig.scenario.serve ? report.summary : "not serving")")
        guard report.counters.isBalanced && report.counters.drops.total == 0 && report.receiveErrors == 0 else {
            throw SetupError(description: "\(name): the worker dropped or failed: \(report)")
        }
    }
}

func printToStandardError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

extension WorkerReport {
    var summary: String {
        "read \(counters.read), replied \(counters.replied), dropped \(counters.drops.total), "
            + "batches \(batches), segmented sends \(segmentedSends)"
    }
}

struct SetupError: Error, CustomStringConvertible {
    let description: String
}

// MARK: - The benchmarks

let benchmarks: @Sendable () -> Void = {
    // What measuring costs: nothing happens between the start and the stop.
    var harnessMallocs = 0
    Benchmark("Harness-empty-measured-region", configuration: configuration(perDatagram: false)) { benchmark in
        benchmark.startMeasurement()
        let before = MallocInterposerSwift.getStatistics()
        let after = MallocInterposerSwift.getStatistics()
        benchmark.stopMeasurement()
        harnessMallocs += after.mallocCount - before.mallocCount
        benchmark.measurement(Metrics.runningTotal, harnessMallocs)
    }

    // The canary: exactly one malloc (and one free) of 64 bytes per iteration. Its
    // threshold is 1, so were the interposer not counting at all, this one's check would
    // fail ("better than threshold") instead of every other benchmark passing unnoticed.
    Benchmark("Canary-one-malloc-per-iteration",
              configuration: .init(metrics: [.mallocCountTotal, .freeCountTotal, .mallocBytesCount, .wallClock],
                                   timeUnits: .microseconds, warmupIterations: 3, maxDuration: .seconds(1),
                                   maxIterations: 2_000)) { benchmark in
        benchmark.startMeasurement()
        let p = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        blackHole(p)
        p.deallocate()
        benchmark.stopMeasurement()
    }

    // The clients' side of a round, alone: 8 sockets each send 8 datagrams to themselves
    // and drain them. Whatever this counts, the worker benchmarks count too.
    registerDatagramBenchmark("Control-clients-only-1024-datagrams", Scenario(serve: false))

    // The common case: 64 requests from 8 peers, one recvmmsg, 8 segmented sends (GSO)
    // of 8 same-length replies each.
    registerDatagramBenchmark("Worker-batch-64-1024-datagrams", Scenario())

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

    // Same-length replies without GSO: one message per reply.
    registerDatagramBenchmark("Worker-batch-64-no-GSO-1024-datagrams", Scenario(segmentation: false))

    // The per-source rate limiter on every datagram (loopback is exempt by default), at a
    // rate no round comes near: every request passes through RateLimiter.allow.
    var limited = AdmissionPolicy()
    limited.limitLoopback = true
    limited.rateLimit = RateLimiter.Configuration(rate: 100_000_000, burst: 1_000_000)
    registerDatagramBenchmark(
        "Worker-batch-64-rate-limited-loopback-1024-datagrams",
        Scenario(policy: limited))

    // A wildcard socket: IP_PKTINFO in, a source-address control message out per reply.
    registerDatagramBenchmark(
        "Worker-batch-64-wildcard-PKTINFO-1024-datagrams",
        Scenario(listen: "0.0.0.0:0"))

    // Echo mode, dual-stack wildcard socket, IPv4 peers seen as v4-mapped IPv6.
    registerDatagramBenchmark(
        "Worker-batch-64-dual-stack-echo-1024-datagrams",
        Scenario(listen: "[::]:0", mode: .echo))
}
