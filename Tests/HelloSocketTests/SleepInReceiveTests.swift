import Glibc
import HelloDatagram
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

/// A worker alone on its socket sleeps in its receive (one system call where poll and
/// then recvmmsg took two): the receive waits for the first datagram, gives up after the
/// socket's receive timeout, and returns at once when its thread is interrupted (stop).
/// Real sockets and threads; every wait bounded.
@Suite struct SleepInReceiveTests {
    static func bound() throws -> DatagramSocket {
        try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!)
    }

    static let configuration = WorkerConfiguration(spinLimit: 0, coalesceDelay: 0)

    /// A worker for the service `make` builds, on `socket`, run until `stop` in a thread of
    /// its own, as hellod runs each.
    static func runWorker<Service: DatagramService & ~Copyable>(
        on socket: DatagramSocket, until stop: StopSignal, reporting report: PublishedReport,
        liveness: Liveness? = nil, _ make: @escaping @Sendable () -> Service
    ) -> PosixThread {
        PosixThread.spawn(name: "test-worker") {
            guard
                var worker = try? Worker(
                    index: 0, socket: socket, service: make(), configuration: configuration, publishingTo: report)
            else { return }
            worker.run(until: stop, liveness: liveness)
        }
    }

    @Test func aWaitingReceiveTakesWhatComesAndGivesUpAfterItsTimeout() throws {
        let socket = try Self.bound()
        defer { try? socket.close() }
        // As systemd passes its sockets: O_NONBLOCK set, which a waiting receive must clear.
        _ = fcntl(socket.descriptor.rawValue, F_SETFL, fcntl(socket.descriptor.rawValue, F_GETFL) | O_NONBLOCK)
        try socket.setReceiveTimeout(50_000_000)
        let receiver = ReceiveBatch(capacity: 8, maxDatagram: 2048, packetInfo: false)
        let client = try TestClient()
        defer { client.close() }
        // Made blocking for the waiting receive, the socket still never blocks otherwise.
        #expect(try receiver.receive(from: socket) == 0)
        try client.send(Array("Michael".utf8), to: try socket.localAddress())
        #expect(try receiver.receive(from: socket, waiting: true) == 1)
        #expect(Array(receiver.datagram(0).payload) == Array("Michael".utf8))
        let started = monotonicNanoseconds()
        #expect(try receiver.receive(from: socket, waiting: true) == 0)
        let waited = monotonicNanoseconds() - started
        #expect(waited >= 40_000_000 && waited < 2_000_000_000, "waited \(waited) ns")
    }

    @Test func anInterruptWakesAThreadSleepingInItsReceive() throws {
        try PosixThread.interruptible()
        let socket = try Self.bound()
        defer { try? socket.close() }
        try socket.setReceiveTimeout(10_000_000_000)  // far longer than the test may take
        let result = ResultBox()
        let thread = PosixThread.spawn(name: "test-sleeper") {
            let receiver = ReceiveBatch(capacity: 8, maxDatagram: 2048, packetInfo: false)
            let started = monotonicNanoseconds()
            result.set((try? receiver.receive(from: socket, waiting: true)) ?? -1, monotonicNanoseconds() - started)
        }
        Posix.sleep(nanoseconds: 50_000_000)  // asleep in recvmmsg by now, most likely
        // Bounded: a receive that sleeps on through interrupts would hang the test.
        try #require(thread.join(interruptingEvery: 10_000_000, giveUpAfter: 5_000_000_000), "still asleep after 5 s")
        let (count, waited) = result.get()
        #expect(count == 0)
        #expect(waited < 5_000_000_000, "interrupted after \(waited) ns")
    }

    @Test func aWorkerSleepingInItsReceiveAnswersAndStops() throws {
        try PosixThread.interruptible()
        let socket = try Self.bound()
        let address = try socket.localAddress()
        let stop = StopSignal()
        let report = PublishedReport()
        let thread = Self.runWorker(on: socket, until: stop, reporting: report) {
            ReplyService(HelloReply(), Self.configuration.serviceSettings(policy: AdmissionPolicy()))
        }
        let client = try TestClient()
        defer { client.close() }
        for name in ["Michael", "Tracy", "Sarah"] {
            Posix.sleep(nanoseconds: 20_000_000)  // each comes to a worker asleep
            try client.send(Array(name.utf8), to: address)
            #expect(try client.receive()?.bytes == Array("Hello, \(name)!".utf8))
        }
        stop.stop()
        try #require(thread.join(interruptingEvery: 10_000_000, giveUpAfter: 5_000_000_000), "not stopped after 5 s")
        try socket.close()
        #expect(report.snapshot().counters.replied == 3)
    }
}

extension SleepInReceiveTests {
    /// A datagram the worker's wait reads just as its stop is asked (its receive has no
    /// timeout: the service has no ticks) is answered and counted, not dropped unseen: read,
    /// it is no longer in the socket for the next hellod.
    @Test func aDatagramReadAsTheStopComesIsStillAnswered() throws {
        try PosixThread.interruptible()
        let socket = try Self.bound()
        let address = try socket.localAddress()
        let stop = StopSignal()
        let report = PublishedReport()
        let thread = Self.runWorker(on: socket, until: stop, reporting: report) { QuietEcho() }
        let client = try TestClient()
        defer { client.close() }
        Posix.sleep(nanoseconds: 50_000_000)  // asleep in its receive, with no timeout
        stop.stop()  // no interrupt: the datagram wakes it
        try client.send(Array("last".utf8), to: address)
        #expect(try client.receive()?.bytes == Array("last".utf8))
        try #require(thread.join(interruptingEvery: 10_000_000, giveUpAfter: 5_000_000_000), "not stopped after 5 s")
        try socket.close()
        let counters = report.snapshot().counters
        #expect(counters.read == 1 && counters.replied == 1)
    }
}

/// A running worker publishes its counters at most every `publicationInterval` while
/// traffic flows; what it counted in a burst reaches its report once the burst is over, at
/// its next wake-up or, where nothing would wake it, before it sleeps. Each waits for the
/// report with a bound, and stops its worker.
@Suite struct DeferredPublicationTests {
    /// Sends `count` datagrams back to back (each answered before the next: well within the
    /// interval), then waits up to 2 s for the report to count them all; whether it did.
    static func burst(_ count: Int, to socket: DatagramSocket, report: PublishedReport) throws -> Bool {
        try exchange(count, with: socket)
        let sent = monotonicNanoseconds()
        while report.snapshot().counters.replied < count {
            guard monotonicNanoseconds() - sent < 2_000_000_000 else { return false }
            Posix.sleep(nanoseconds: 1_000_000)
        }
        return true
    }

    /// Sends `count` datagrams, each after the last one's echo came back.
    static func exchange(_ count: Int, with socket: DatagramSocket) throws {
        let client = try TestClient()
        defer { client.close() }
        let address = try socket.localAddress()
        for n in 0..<count {
            try client.send(Array("burst \(n)".utf8), to: address)
            #expect(try client.receive()?.bytes == Array("burst \(n)".utf8))
        }
    }

    /// Runs `body` beside a worker (`QuietEcho`, woken by `liveness` alone), then stops the
    /// worker; its report, as the stopped worker left it.
    @discardableResult
    static func run(liveness: Liveness?, _ body: (DatagramSocket, PublishedReport) throws -> Void) throws
        -> PublishedReport
    {
        try PosixThread.interruptible()
        let socket = try SleepInReceiveTests.bound()
        let stop = StopSignal()
        let report = PublishedReport()
        let thread = SleepInReceiveTests.runWorker(on: socket, until: stop, reporting: report, liveness: liveness) {
            QuietEcho()
        }
        try body(socket, report)
        stop.stop()
        try #require(thread.join(interruptingEvery: 10_000_000, giveUpAfter: 5_000_000_000), "not stopped after 5 s")
        try socket.close()
        return report
    }

    @Test func withNothingToWakeTheWorkerABurstIsPublishedBeforeItSleeps() throws {
        try Self.run(liveness: nil) { socket, report in
            let published = try Self.burst(20, to: socket, report: report)
            #expect(published, "the burst's replies never reached the report")
        }
    }

    @Test func aBurstIsPublishedAtTheWorkersNextWakeUp() throws {
        // Woken every 50 ms (a quarter of the watchdog's interval), never by a tick.
        let liveness = Liveness(interval: 200_000_000, workers: 1) {}
        try Self.run(liveness: liveness) { socket, report in
            let published = try Self.burst(20, to: socket, report: report)
            #expect(published, "the burst's replies never reached the report")
        }
    }

    @Test func aWorkerThatWakesSeldomPublishesBeforeItSleeps() throws {
        // Woken every 100 s, far later than `publicationLag`: it may not wait for that.
        let liveness = Liveness(interval: 400_000_000_000, workers: 1) {}
        try Self.run(liveness: liveness) { socket, report in
            let published = try Self.burst(20, to: socket, report: report)
            #expect(published, "the burst's replies never reached the report")
        }
    }

    @Test func aStoppedWorkerHasPublishedEverything() throws {
        // Woken every 100 ms: the stop comes, most likely, before its next wake-up.
        let liveness = Liveness(interval: 400_000_000, workers: 1) {}
        let report = try Self.run(liveness: liveness) { socket, _ in try Self.exchange(20, with: socket) }
        #expect(report.snapshot().counters.replied == 20)
    }
}

/// An echo without ticks: a worker alone with it sleeps in its receive with no timeout.
private struct QuietEcho: DatagramService {
    let outboxCapacity = 64
    let largestDatagram = 2048
    var counters = Counters()
    var tickInterval: UInt64? { nil }

    mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool {
        guard outbox.hasRoom(for: datagram.length) else { return false }
        counters.read += 1
        outbox.append(datagram.payload, to: datagram.peer, from: datagram.arrival.replySource)
        return true
    }

    mutating func recordSent(_ sent: Int, failed: Int) {
        counters.replied += UInt64(sent)
        counters[.sendFailed] += UInt64(failed)
    }
}

/// A result one thread writes and another reads after joining it.
private final class ResultBox: @unchecked Sendable {
    private var value = (0, UInt64(0))
    func set(_ count: Int, _ waited: UInt64) { value = (count, waited) }
    func get() -> (Int, UInt64) { value }
}
