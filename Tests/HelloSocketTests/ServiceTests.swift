import Glibc
import HelloChat
import HelloChatWire
import HelloDatagram
import HelloLauncher
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

/// Something that serves one batch of a socket, whatever its service.
protocol BatchServer: AnyObject {
    func serveBatch() -> Int
}

/// A worker built around a service chosen by name, as hellod builds them.
final class NamedServer<Service: DatagramService & ~Copyable>: BatchServer {
    var worker: Worker<Service>

    init(_ worker: consuming Worker<Service>) {
        self.worker = worker
    }

    func serveBatch() -> Int { worker.serveBatch() }
}

struct BuildServer: ServiceBuilder {
    let socket: DatagramSocket
    let configuration = WorkerConfiguration(batchSize: 16, spinLimit: 0)
    let report = PublishedReport()

    func build<Service: DatagramService & ~Copyable>(_ service: consuming Service) -> Result<
        any BatchServer, SocketError
    > {
        do {
            let worker = try Worker(
                index: 0, socket: socket, service: service, configuration: configuration,
                publishingTo: report)
            return .success(NamedServer(worker))
        } catch {
            return .failure(error)
        }
    }
}

/// A service that is not a reply service: an echo with room for one datagram at a time,
/// which sends "tick" to the last peer it heard from on every tick.
struct TickingEcho: DatagramService {
    let outboxCapacity = 1
    let largestDatagram = 64
    var counters = Counters()
    var tickInterval: UInt64? { 1_000_000 }
    var lastPeer: Endpoint?
    var ticks = 0

    mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool {
        guard outbox.hasRoom(for: datagram.length) else { return false }
        counters.read += 1
        lastPeer = datagram.peer
        outbox.append(datagram.payload, to: datagram.peer, from: datagram.arrival.replySource)
        return true
    }

    mutating func tick(now: UInt64, into outbox: inout Outbox) {
        ticks += 1
        guard let lastPeer else { return }
        Array("tick".utf8).withUnsafeBytes { _ = outbox.append($0, to: lastPeer) }
    }

    mutating func recordSent(_ sent: Int, failed: Int) {
        counters.replied += UInt64(sent)
        counters[.sendFailed] += UInt64(failed)
    }
}

@Suite struct ServiceTests {
    let names = ["Michael", "Tracy", "", "\u{00e9}t\u{00e9}"]

    /// hellod serves each socket with its own service: a hello socket and an echo socket
    /// side by side, each answering in its own protocol.
    @Test func twoSocketsTwoServicesEachAnswersItsOwn() throws {
        var hello = try TestServer("127.0.0.1:0", HelloReply())
        var echo = try TestServer("127.0.0.1:0", EchoReply())
        let client = try TestClient()
        defer { client.close() }
        for name in names {
            try client.send(Array(name.utf8), to: hello.address)
            try client.send(Array(name.utf8), to: echo.address)
        }
        #expect(hello.worker.serveBatch() == names.count)
        #expect(echo.worker.serveBatch() == names.count)
        var fromHello: [[UInt8]] = []
        var fromEcho: [[UInt8]] = []
        for _ in 0..<2 * names.count {
            let reply = try #require(try client.receive())
            if reply.from == hello.address {
                fromHello.append(reply.bytes)
            } else {
                #expect(reply.from == echo.address)
                fromEcho.append(reply.bytes)
            }
        }
        #expect(fromHello == names.map { Array("Hello, \($0)!".utf8) })
        #expect(fromEcho == names.map { Array($0.utf8) })
        for counters in [hello.counters, echo.counters] {
            #expect(
                counters.read == UInt64(names.count) && counters.replied == UInt64(names.count) && counters.isBalanced)
        }
    }

    /// The same, with each worker's service chosen by name, as `--listen SERVICE@ADDRESS`
    /// and systemd's FileDescriptorName= choose it.
    @Test func servicesChosenByName() throws {
        var servers: [(name: ServiceName, server: any BatchServer, address: SocketAddress)] = []
        var sockets: [DatagramSocket] = []
        defer { sockets.forEach { try? $0.close() } }
        for name in ServiceName.allCases {
            let socket = try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!)
            sockets.append(socket)
            let builder = BuildServer(socket: socket)
            let server = try name.build(builder.configuration.serviceSettings(policy: AdmissionPolicy()), with: builder)
                .get()
            servers.append((name, server, try socket.localAddress()))
        }
        let client = try TestClient()
        defer { client.close() }
        // chat speaks its own protocol: a JOIN without a cookie gets a CHALLENGE.
        let join = ChatMessage.join(
            cookie: .none, secret: ChatSecret(high: 1, low: 2), token: 0, room: Array("r".utf8),
            nick: Array("n".utf8)
        ).encoded(tag: 0x7461_6721)
        for (name, _, address) in servers {
            try client.send(name == .chat ? join : Array("Michael".utf8), to: address)
        }
        for (_, server, _) in servers {
            #expect(server.serveBatch() == 1)
        }
        var replies: [ServiceName: [UInt8]] = [:]
        for _ in servers {
            let reply = try #require(try client.receive())
            let name = try #require(servers.first { $0.address == reply.from }?.name)
            replies[name] = reply.bytes
        }
        let challenge = replies.removeValue(forKey: .chat).flatMap { ChatMessage.decode($0) }
        #expect(challenge?.tag == 0x7461_6721)
        guard case .challenge? = challenge?.message else {
            Issue.record("chat answered \(String(describing: challenge))")
            return
        }
        #expect(replies == [.hello: Array("Hello, Michael!".utf8), .echo: Array("Michael".utf8)])
    }

    /// The worker drives any service: it hands the same datagram again after sending a
    /// full outbox, and gives ticks when they are due, sending what they write.
    @Test func aServiceWithASmallOutboxAndTicks() throws {
        let socket = try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!)
        defer { try? socket.close() }
        let report = PublishedReport()
        var worker = try Worker(
            index: 0, socket: socket, service: TickingEcho(),
            configuration: WorkerConfiguration(batchSize: 8, spinLimit: 0), publishingTo: report)
        let address = try socket.localAddress()
        let client = try TestClient()
        defer { client.close() }
        for i in 0..<5 { try client.send(Array("echo \(i)".utf8), to: address) }
        #expect(worker.serveBatch() == 5)  // five sends of one datagram each
        for i in 0..<5 { #expect(try client.receive()?.bytes == Array("echo \(i)".utf8)) }
        #expect(report.snapshot().counters.replied == 5)
        #expect(report.snapshot().batches == 1)

        let now = monotonicNanoseconds()
        worker.tickIfDue(now: now)
        #expect(try client.receive()?.bytes == Array("tick".utf8))
        worker.tickIfDue(now: now + 999_999)  // not due yet
        #expect(try client.receive(timeout: 0.1) == nil)
        worker.tickIfDue(now: now + 1_000_000)
        #expect(try client.receive()?.bytes == Array("tick".utf8))
        #expect(report.snapshot().counters.replied == 7)
    }

    /// A datagram to the loopback's broadcast address (127.255.255.255) reaches a wildcard
    /// socket, and the kernel's PKTINFO marks it: counted, never answered.
    @Test func aBroadcastIsCountedNotAnswered() throws {
        var server = try TestServer("0.0.0.0:0", EchoReply(), policy: .open)
        let client = try TestClient()
        defer { client.close() }
        try client.socket.setOption(SOL_SOCKET, SO_BROADCAST, 1, "setsockopt(SO_BROADCAST)")
        try client.send(Array("to all".utf8), to: SocketAddress(ip: "127.255.255.255", port: server.address.port)!)
        try client.send(Array("to one".utf8), to: SocketAddress(ip: "127.0.0.1", port: server.address.port)!)
        server.serve(2)
        #expect(try client.receive()?.bytes == Array("to one".utf8))
        #expect(try client.receive(timeout: 0.2) == nil)
        let counters = server.counters
        #expect(counters.read == 2 && counters.replied == 1)
        #expect(counters.drops[.broadcastOrMulticast] == 1 && counters.isBalanced)
    }
}
