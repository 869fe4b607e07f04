// The rig: a hellod `Worker` on a UDP socket, client sockets, and every byte a round sends
// or expects, all made before measuring. This file is the only one that uses hellod's
// server API (Worker, WorkerConfiguration, PublishedReport, WorkerReport).

import Benchmark
import Glibc
import HelloChat
import HelloChatWire
import HelloLauncher
import HelloServer
import HelloService
import HelloSocket

// MARK: - What each benchmark sends, and what must happen to it

/// What the worker must count in one round: exactly this, times the rounds run.
struct Expected: Sendable {
    var read: Int
    var replied: Int
    /// By the reason's name, as operators see it.
    var drops: [String: Int] = [:]
    /// Datagrams sent beyond one reply per request (chat's events to a room's members).
    var deliveries = 0
    /// The errno of the worker's last refused send (0: no send refused).
    var lastSendErrno: Int32 = 0

    /// Every one of `count` datagrams read and answered.
    static func allAnswered(_ count: Int) -> Expected { Expected(read: count, replied: count) }
}

struct Scenario: Sendable {
    var listen = "127.0.0.1:0"
    /// Where the clients send (the server's address if it is not a wildcard).
    var connectTo = "127.0.0.1"
    var network = Network.host
    var batchSize = 64
    var maxDatagram = 65527
    var service: ServiceName = .hello
    /// A second server socket with this service: odd-numbered peers send to it.
    var secondService: ServiceName?
    var policy = AdmissionPolicy()
    var segmentation = true
    /// UDP GRO on the server's socket (hellod's default; WorkerConfiguration's is off).
    var coalescing = false
    /// Each peer sends its round's requests as one train, one UDP_SEGMENT send (they must
    /// be of one length a peer): on loopback, a socket with GRO reads it as one receive.
    var trains = false
    /// Client sockets, each its own peer (own source port).
    var peers = 8
    var requestsPerPeer = 8
    var rounds = 16
    /// The request size of peer `peer`'s `k`th request of a round.
    var size: @Sendable (_ peer: Int, _ k: Int) -> Int = { _, _ in 16 }
    var peerKind: @Sendable (_ peer: Int) -> PeerKind = { _ in .loopback }
    /// Whether peer `peer`'s `k`th request of a round gets its reply.
    var answered: @Sendable (_ peer: Int, _ k: Int) -> Bool = { _, _ in true }
    /// The worker's counters per round; nil only for the control (no worker).
    var expected: Expected? = .allAnswered(64)
    /// 0: the worker reads the real clock. Else a clock that advances this many
    /// nanoseconds per round, so the rate limiter refuses the same requests every round.
    var clockStep: UInt64 = 0
    var serverSendBuffer = 4 << 20
    /// Fill the server's send buffer before the first round (`Network.stalledLink`).
    var fillSendBuffer = false
    /// False: no worker serves; each client sends to itself and drains (the control).
    var serve = true
    /// chat: the relay's settings. Before the first round, every peer joins one room (JOIN,
    /// CHALLENGE, JOIN with the cookie, WELCOME: `Rig.joinChat`); then in every round each
    /// of the first `chatSpeakers` peers (all of them if nil) SAYs one message
    /// (`requestsPerPeer` 1) and every peer receives the room's EVENTS, every SAY of the
    /// round numbered in the room, in one datagram. The counters the joins made are not the
    /// rounds'.
    var chat: ChatSettings?
    var chatSpeakers: Int?
    /// What a chat round's speakers send (SAYs unless told).
    var chatRequests = ChatRequests.say
    /// The trace on (hellod --trace): every datagram's record written into the worker's
    /// ring; the rig empties the rings after each round, as the daemon's writer would, and
    /// checks each fate against the counters.
    var traced = false
    /// Deliberately broken (HELLOD_BENCH_BROKEN only): one 64-byte malloc per iteration.
    var allocatesPerIteration = false
    /// Deliberately broken (HELLOD_BENCH_BROKEN only): the teardown fails.
    var failsAtTeardown = false

    /// Requests sent (and read) a round: a chat round's are its speakers' SAYs.
    var datagramsPerRound: Int { chat != nil ? chatSpeakers ?? peers : peers * requestsPerPeer }
    var datagramsPerIteration: Int { datagramsPerRound * rounds }
}

/// What the speakers of a chat round send, and what comes back.
enum ChatRequests: Sendable {
    /// One SAY each; every member gets the round's messages in one EVENTS.
    case say
    /// A NICK (peers 0 to 3) or a JOIN with a valid cookie (peers 4 to 7) with a nick that
    /// reads as another member's (a Cyrillic or a fullwidth C, "С1", "Ｃ5"): each gets
    /// REFUSED, nick taken (a delivery, the request dropped as chat-bad-name).
    case lookAlikesRefused
    /// Peer 0 renames itself, c0 and C0 in turn (its own look-alike: allowed); every member
    /// gets the renamed event in one EVENTS.
    case rename
}

// MARK: - Sockets, worker and buffers, all made before measuring

enum RoundFailure: Int {
    case none, sendFailed, serveTimedOut, replyTimedOut, wrongReply, unexpectedReply
}

struct SetupError: Error, CustomStringConvertible {
    let description: String
}

final class Rig {
    let scenario: Scenario
    /// One worker per server socket, each behind a closure (`Worker` is generic over its
    /// service): `serveBatch(now)`, nil for the real clock.
    var workers: [(UInt64?) -> Int] = []
    let reports: [PublishedReport]
    let servers: [DatagramSocket]
    let clients: UnsafeMutablePointer<Int32>
    let tap: Int32
    // Request j of a round (j = k * peers + peer, peers interleaved) and its expected reply
    // (length -1: none).
    let requests: UnsafeMutableRawPointer
    let requestOffset: UnsafeMutablePointer<Int>
    let requestLength: UnsafeMutablePointer<Int>
    /// `Scenario.trains`: peer p's requests of a round, side by side (else empty).
    let trainBytes: UnsafeMutableRawPointer
    let trainOffset: UnsafeMutablePointer<Int>
    let trainLength: UnsafeMutablePointer<Int>
    let replies: UnsafeMutableRawPointer
    let replyOffset: UnsafeMutablePointer<Int>
    let replyLength: UnsafeMutablePointer<Int>
    let receiveBuffer: UnsafeMutableRawPointer
    static let receiveCapacity = 65536
    // The expected counters per round, one entry per drop reason of any service (by name).
    let reasons: [String]
    let expectedDrops: [UInt64]
    private(set) var failure = RoundFailure.none
    private(set) var failedAt = 0
    private(set) var failureDetail = 0
    /// Rounds completed, every one checked by the clients.
    private(set) var rounds: UInt64 = 0
    /// The worker's clock, when the scenario sets one.
    private var clock: UInt64 = 1_000_000_000_000
    /// Mallocs over every measured iteration so far.
    var runningMallocs = 0
    /// chat: the next room sequence, the SAYs each peer has made, and the worker's counters
    /// once the peers joined (what the rounds count is beyond them).
    private var chatNext: UInt32 = 0
    private var chatSaid: UInt32 = 0
    private var baseline = Counters()
    /// The trace (`Scenario.traced`), and its records by fate since the baseline: replied,
    /// send failed, served, then by worker and counter place, dropped.
    let trace: TraceControl?
    let tracedFates: UnsafeMutablePointer<UInt64>
    static let fateSlots = 3 + 2 * CounterBlock.capacity

    init(_ scenario: Scenario) throws {
        self.scenario = scenario
        reasons = ServiceName.allCases.flatMap { service in
            service.counterSchema.drops.map { service.counterSchema.name(of: $0) }
        }.reduce(into: []) { names, name in if !names.contains(name) { names.append(name) } }
        expectedDrops = reasons.map { UInt64(scenario.expected?.drops[$0] ?? 0) }
        if let e = scenario.expected {
            let answered = (0..<scenario.datagramsPerRound).filter {
                scenario.answered($0 % scenario.peers, $0 / scenario.peers)
            }.count
            // A chat round's answers are the rig's own (`chatRound`), refusals among them.
            guard e.read == scenario.datagramsPerRound, e.replied == answered || scenario.chat != nil,
                e.read == e.replied + e.drops.values.reduce(0, +)
            else {
                throw SetupError(
                    description: "the stated counters (read \(e.read), replied \(e.replied), drops \(e.drops)) "
                        + "disagree with the scenario (\(scenario.datagramsPerRound) sent a round, \(answered) answered)"
                )
            }
        }

        let namespace = try PrivateNetwork.enter(scenario.network)
        defer { namespace?.leave() }
        tap = namespace?.tap ?? -1

        guard let listen = SocketAddress(parsing: scenario.listen) else {
            throw SetupError(description: "bad listen address \(scenario.listen)")
        }
        let services = [scenario.service] + (scenario.secondService.map { [$0] } ?? [])
        servers = try services.map { _ in
            let server = try DatagramSocket.bound(to: listen)
            // A round's requests all queue at once: room for 64 of up to 1400 bytes and more.
            try server.setReceiveBufferSize(4 << 20)
            try server.setSendBufferSize(scenario.serverSendBuffer)
            return server
        }
        reports = services.map { PublishedReport(schema: $0.counterSchema) }
        let ports = try servers.map { try $0.localAddress().port }

        clients = .allocate(capacity: scenario.peers)
        var policy = scenario.policy
        for p in 0..<scenario.peers {
            let kind = scenario.peerKind(p)
            let port = ports[p % ports.count]
            clients[p] = try clientSocket(
                kind, peer: p, server: scenario.serve ? ipv4(scenario.connectTo, port) : nil,
                receiveBuffer: 1 << 20)
            if kind == .ownPort {
                policy.ownPorts.append(localPort(clients[p]))
            }
        }
        if !policy.ownPorts.isEmpty {
            policy.ownPorts += ports
        }
        if scenario.fillSendBuffer {
            try Self.fill(servers[0])
        }

        let configuration = WorkerConfiguration(
            batchSize: scenario.batchSize, maxDatagram: scenario.maxDatagram,
            spinLimit: 0, coalesceDelay: 0, segmentation: scenario.segmentation, coalescing: scenario.coalescing)
        // An allowance no run spends: the rate is the writer's business, not the path's.
        trace = scenario.traced ? TraceControl(workers: services.count, filter: [], rate: 1 << 50, on: true) : nil
        tracedFates = .allocate(capacity: Self.fateSlots)
        tracedFates.initialize(repeating: 0, count: Self.fateSlots)
        let settings = configuration.serviceSettings(policy: policy)
        let chat = scenario.chat ?? ChatSettings()
        for (index, service) in services.enumerated() {
            let builder = BenchWorkerBuilder(
                index: index, socket: servers[index], configuration: configuration,
                report: reports[index], trace: trace)
            workers.append(try service.build(settings, chat: chat, with: builder).get())
        }

        let count = scenario.datagramsPerRound
        var requestBytes: [[UInt8]] = []
        var replyBytes: [[UInt8]?] = []
        if scenario.chat != nil {
            guard scenario.requestsPerPeer == 1, services == [.chat], scenario.serve,
                (1...min(scenario.peers, 10)).contains(count)
            else {
                throw SetupError(
                    description: "a chat scenario is one chat socket, one SAY per speaker a round, 1 to 10 speakers")
            }
            (requestBytes, replyBytes) = Self.chatRound(scenario.chatRequests, peers: scenario.peers, speakers: count)
        }
        for j in requestBytes.count..<count {
            let peer = j % scenario.peers, k = j / scenario.peers
            let size = scenario.size(peer, k)
            // "p3-r05-xxxx…": readable, distinct, exactly `size` bytes.
            var bytes = Array("p\(peer)-r\(k < 10 ? "0" : "")\(k)-".utf8)
            bytes += Array(repeating: UInt8(ascii: "a") + UInt8(j % 26), count: max(0, size - bytes.count))
            bytes = Array(bytes.prefix(size))
            requestBytes.append(bytes)
            guard let rule = services[peer % services.count].replyRule else {
                throw SetupError(
                    description: "\(services[peer % services.count]) has no reply rule: a chat scenario sets `chat`")
            }
            replyBytes.append(!scenario.serve ? bytes : scenario.answered(peer, k) ? rule.reply(to: bytes) : nil)
        }
        if scenario.trains {
            // Peer p's requests side by side: its train, which its socket cuts into datagrams
            // of its requests' length.
            let peers = scenario.peers
            let trains = (0..<peers).map { p in (0..<scenario.requestsPerPeer).flatMap { requestBytes[$0 * peers + p] }
            }
            for p in 0..<peers {
                let size = requestBytes[p].count
                guard (0..<scenario.requestsPerPeer).allSatisfy({ requestBytes[$0 * peers + p].count == size }) else {
                    throw SetupError(description: "trains: peer \(p)'s requests differ in length")
                }
                try DatagramSocket(adopting: .init(rawValue: clients[p])).segmentEverySend(size: size)
            }
            (trainBytes, trainOffset, trainLength) = Self.pack(trains)
        } else {
            (trainBytes, trainOffset, trainLength) = Self.pack([])
        }
        (requests, requestOffset, requestLength) = Self.pack(requestBytes)
        (replies, replyOffset, replyLength) = Self.pack(replyBytes)
        receiveBuffer = .allocate(byteCount: Self.receiveCapacity, alignment: 64)
        if scenario.chat != nil {
            try joinChat()
        }
    }

    // MARK: chat

    static let chatText = Array("a message of the round".utf8)
    static func chatNick(_ peer: Int) -> [UInt8] { Array("c\(peer)".utf8) }
    /// A speaker's event (speakers are peers 0 to 9: nicks of 2 bytes).
    static let chatEventLength = ChatWire.eventLength(nick: 2, text: chatText.count)
    /// The tag `peer` puts in all it sends, and finds in all it is sent.
    static func chatTag(_ peer: Int) -> UInt64 { 0x7461_6700_0000_0000 | UInt64(peer + 1) }
    /// The secret `peer` joins with; its id names it in events.
    static func chatSecret(_ peer: Int) -> ChatSecret { ChatSecret(high: UInt64(peer + 1), low: 0x5ec2_e700) }

    /// A round's SAYs (one per speaker) and the EVENTS every peer gets back (one per peer,
    /// alike but for each peer's tag), with the token, instance and sequences zero:
    /// `joinChat` and `prepareChatRound` write them in place.
    static func chatRound(_ kind: ChatRequests, peers: Int, speakers: Int) -> ([[UInt8]], [[UInt8]?]) {
        precondition(speakers <= 10 && speakers <= peers)
        switch kind {
        case .say: break
        case .lookAlikesRefused:
            precondition(speakers == 8 && peers == 8)
            let requests = (0..<8).map { p -> [UInt8] in
                let other = (p + 1) % 8
                return p < 4
                    ? ChatMessage.nick(token: 0, nick: Array("\u{0421}\(other)".utf8)).encoded(tag: chatTag(p))
                    : ChatMessage.join(
                        cookie: .none, secret: ChatSecret(high: UInt64(1000 + p), low: 0), token: 0,
                        room: Array("lobby".utf8), nick: Array("\u{FF23}\(other)".utf8)
                    ).encoded(tag: chatTag(p))
            }
            return (requests, (0..<peers).map { ChatMessage.refused(.nickTaken).encoded(tag: chatTag($0)) })
        case .rename:
            precondition(speakers == 1)
            let event = ChatEvent(
                sequence: 0, kind: .renamed, sender: chatSecret(0).id, clientSequence: 0, nick: chatNick(0),
                text: Array("C0".utf8))
            return (
                [ChatMessage.nick(token: 0, nick: Array("C0".utf8)).encoded(tag: chatTag(0))],
                (0..<peers).map { ChatMessage.events(instance: 0, [event]).encoded(tag: chatTag($0)) }
            )
        }
        let says = (0..<speakers).map {
            ChatMessage.say(token: 0, clientSequence: 0, text: chatText).encoded(tag: chatTag($0))
        }
        let events = (0..<speakers).map {
            ChatEvent(
                sequence: 0, kind: .message, sender: chatSecret($0).id, clientSequence: 0, nick: chatNick($0),
                text: chatText)
        }
        let replies = (0..<peers).map { ChatMessage.events(instance: 0, events).encoded(tag: chatTag($0)) }
        precondition(replies[0].count <= ChatWire.largestDatagram)
        return (says, replies)
    }

    /// Every peer joins the room, in turn: JOIN without a cookie, the CHALLENGE, JOIN with
    /// it, the WELCOME (its token, the relay's instance, the room's next sequence); then
    /// everything the joins sent is drained. Not measured.
    func joinChat() throws {
        var next: UInt32 = 0
        for peer in 0..<scenario.peers {
            var cookie = ChatCookie.none
            for attempt in 0..<2 {
                let join = ChatMessage.join(
                    cookie: cookie, secret: Self.chatSecret(peer), token: 0, room: Array("lobby".utf8),
                    nick: Self.chatNick(peer)
                ).encoded(tag: Self.chatTag(peer))
                for message in try chatExchange(peer, join) {
                    switch message {
                    case .challenge(let c)? where attempt == 0:
                        cookie = c
                        if scenario.chatRequests == .lookAlikesRefused && peer >= 4 {  // its JOIN's cookie
                            let at = requests + requestOffset[peer] + ChatWire.headerLength
                            at.storeBytes(of: c.epoch.bigEndian, as: UInt32.self)
                            (at + 4).storeBytes(of: c.mac.bigEndian, as: UInt64.self)
                        }
                    case let .welcome(token, instance, sequence, _)? where attempt == 1:
                        if peer < scenario.datagramsPerRound
                            && !(scenario.chatRequests == .lookAlikesRefused && peer >= 4)
                        {
                            // a speaker: its SAY's or NICK's token
                            (requests + requestOffset[peer] + ChatWire.headerLength).storeBytes(
                                of: token.bigEndian,
                                as: UInt64.self)
                        }
                        // EVENTS' instance
                        for p in 0..<scenario.peers where scenario.chatRequests != .lookAlikesRefused {
                            (replies + replyOffset[p] + ChatWire.headerLength).storeBytes(
                                of: instance.bigEndian, as: UInt64.self)
                        }
                        next = sequence + 1  // its own "joined" is the room's next event
                    case .events?:
                        break
                    default:
                        throw SetupError(
                            description:
                                "chat join of peer \(peer), step \(attempt + 1): \(String(describing: message))")
                    }
                }
            }
        }
        // The last "joined" announcements, to everyone.
        for peer in 0..<scenario.peers { _ = chatDrain(peer) }
        guard next > 0 else { throw SetupError(description: "chat: no WELCOME") }
        chatNext = next
        baseline = reports.map { $0.snapshot() }.reduce(WorkerReport(), +).counters
        drainTrace()
        tracedFates.update(repeating: 0, count: Self.fateSlots)
    }

    /// Sends `bytes` from `peer`, serves, and returns what `peer` got.
    func chatExchange(_ peer: Int, _ bytes: [UInt8]) throws -> [ChatMessage?] {
        let sent = bytes.withUnsafeBytes { send(clients[peer], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard sent == bytes.count, anyServerReadable() else {
            throw SetupError(description: "chat: sending a join failed")
        }
        _ = workers[0](nil)
        guard readable(clients[peer]) else { throw SetupError(description: "chat: no answer to a join") }
        return chatDrain(peer)
    }

    /// Everything queued for `peer`, decoded.
    func chatDrain(_ peer: Int) -> [ChatMessage?] {
        var got: [ChatMessage?] = []
        while true {
            let n = recv(clients[peer], receiveBuffer, Self.receiveCapacity, Int32(MSG_DONTWAIT))
            guard n >= 0 else { return got }
            let decoded = ChatMessage.decode(UnsafeRawBufferPointer(start: receiveBuffer, count: n))
            // Every datagram to a peer carries its tag.
            got.append(decoded?.tag == Self.chatTag(peer) ? decoded?.message : nil)
        }
    }

    /// Before a chat round: each SAY gets the speaker's next client sequence, and every
    /// peer's expected EVENTS the room sequences and client sequences they will have (the
    /// relay numbers them in the order it reads them, peer 0 first).
    @inline(__always)
    func prepareChatRound() {
        switch scenario.chatRequests {
        case .say: break
        case .lookAlikesRefused: return  // the same bytes every round
        case .rename:
            // Odd rounds c0 -> C0, even ones C0 -> c0: the NICK's first letter, and the
            // event's nick and text (after the header, 17 bytes of fields and a length); the
            // NICK's after its header, token and length.
            chatSaid += 1
            let (from, to) =
                chatSaid % 2 == 1 ? (UInt8(ascii: "c"), UInt8(ascii: "C")) : (UInt8(ascii: "C"), UInt8(ascii: "c"))
            (requests + requestOffset[0] + ChatWire.headerLength + 9).storeBytes(of: to, as: UInt8.self)
            for p in 0..<scenario.peers {
                let event = replies + replyOffset[p] + ChatWire.eventsHeaderLength
                event.storeBytes(of: chatNext.bigEndian, as: UInt32.self)
                (event + 18).storeBytes(of: from, as: UInt8.self)
                (event + 18 + 2 + 2).storeBytes(of: to, as: UInt8.self)
            }
            chatNext += 1
            return
        }
        chatSaid += 1
        let speakers = scenario.datagramsPerRound
        for j in 0..<speakers {
            (requests + requestOffset[j] + ChatWire.headerLength + 8).storeBytes(
                of: chatSaid.bigEndian, as: UInt32.self)
        }
        for p in 0..<scenario.peers {
            for i in 0..<speakers {
                let event = replies + replyOffset[p] + ChatWire.eventsHeaderLength + i * Self.chatEventLength
                event.storeBytes(of: (chatNext + UInt32(i)).bigEndian, as: UInt32.self)
                (event + 13).storeBytes(of: chatSaid.bigEndian, as: UInt32.self)
            }
        }
        chatNext += UInt32(speakers)
    }

    deinit {
        for p in 0..<scenario.peers { _ = Glibc.close(clients[p]) }
        servers.forEach { try? $0.close() }  // a benchmark's end: nothing to report it to
        if tap >= 0 { _ = Glibc.close(tap) }
        clients.deallocate()
        for pointer in [requests, replies, receiveBuffer, trainBytes] { pointer.deallocate() }
        for pointer in [requestOffset, requestLength, replyOffset, replyLength, trainOffset, trainLength] {
            pointer.deallocate()
        }
        tracedFates.deallocate()
    }

    /// Empties the trace's rings, as hellod's writer does, counting each record's fate.
    @inline(__always)
    func drainTrace() {
        guard let trace else { return }
        for ring in trace.rings {
            _ = ring.drain { record in
                switch record.fate {
                case .replied: tracedFates[0] += 1
                case .sendFailed: tracedFates[1] += 1
                case .served: tracedFates[2] += 1
                case .dropped(let reason): tracedFates[3 + record.worker * CounterBlock.capacity + reason.index] += 1
                }
            }
        }
    }

    /// Sends from `server` to 192.0.2.1 (`Network.stalledLink`: queued, never delivered)
    /// until the send buffer is full, so every reply of every round meets EAGAIN.
    static func fill(_ server: DatagramSocket) throws {
        let bytes = [UInt8](repeating: 0x2e, count: 16)
        for sent in 0..<10_000 {
            let n = withSockaddr(ipv4("192.0.2.1", 9)) { address, length in
                bytes.withUnsafeBytes {
                    sendto(server.descriptor.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), address, length)
                }
            }
            if n < 0 {
                guard errno == EAGAIN && sent > 0 else { throw NetworkError.call("filling the send buffer", errno) }
                return
            }
        }
        throw SetupError(description: "the send buffer never filled: datagrams to 192.0.2.1 are not held")
    }

    static func pack(_ datagrams: [[UInt8]?])
        -> (UnsafeMutableRawPointer, UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>)
    {
        let total = datagrams.reduce(0) { $0 + ($1?.count ?? 0) }
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 64)
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: datagrams.count)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: datagrams.count)
        var at = 0
        for (i, d) in datagrams.enumerated() {
            offsets[i] = at
            lengths[i] = d?.count ?? -1
            guard let d else { continue }
            d.withUnsafeBytes { (bytes + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            at += d.count
        }
        return (bytes, offsets, lengths)
    }

    /// One measured iteration: `rounds` rounds, each sent, served and drained in full.
    /// Returns false on a failed round (recorded in `failure`).
    @inline(never)
    func iteration() -> Bool {
        if scenario.allocatesPerIteration {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
            blackHole(p)
            p.deallocate()
        }
        for r in 0..<scenario.rounds {
            let result = round()
            if result != .none {
                failure = result
                failedAt = r
                return false
            }
            rounds += 1
        }
        return true
    }

    @inline(never)
    func round() -> RoundFailure {
        let count = scenario.datagramsPerRound
        let peers = scenario.peers
        if scenario.chat != nil {
            prepareChatRound()
        }
        for j in 0..<(scenario.trains ? peers : count) {
            let (bytes, length) =
                scenario.trains
                ? (trainBytes + trainOffset[j], trainLength[j]) : (requests + requestOffset[j], requestLength[j])
            let sent = send(clients[j % peers], bytes, length, Int32(MSG_DONTWAIT))
            guard sent == length else {
                failureDetail = sent < 0 ? Int(errno) : sent
                return .sendFailed
            }
        }
        if scenario.serve {
            clock += scenario.clockStep
            // Loopback delivers a send at once, so one serveBatch takes up to a whole batch;
            // should the kernel defer some, wait for them (never a spin forever).
            var served = 0
            while served < count {
                var n = 0
                for serveBatch in workers {
                    n += serveBatch(scenario.clockStep > 0 ? clock : nil)
                }
                if n == 0 && !anyServerReadable() {
                    failureDetail = served
                    return .serveTimedOut
                }
                served += n
            }
        }
        drainTrace()
        // Each client's replies come in the order it sent its requests; then nothing else.
        for peer in 0..<peers {
            let fd = clients[peer]
            for k in 0..<scenario.requestsPerPeer {
                let j = k * peers + peer
                guard replyLength[j] >= 0 else { continue }
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
            let extra = recv(fd, receiveBuffer, Self.receiveCapacity, Int32(MSG_DONTWAIT))
            if extra >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                failureDetail = peer
                return .unexpectedReply
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

    /// Waits up to a second for a server socket (of at most two) to become readable.
    @inline(__always)
    func anyServerReadable() -> Bool {
        var p = (
            pollfd(fd: servers[0].descriptor.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: servers.count > 1 ? servers[1].descriptor.rawValue : -1, events: Int16(POLLIN), revents: 0)
        )
        return withUnsafeMutablePointer(to: &p) {
            $0.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, nfds_t(servers.count), 1000) > 0 }
        }
    }

    var failureDescription: String {
        "round \(failedAt) of an iteration failed: \(failure) (detail \(failureDetail)); worker: \(summary)"
    }

    /// nil if the worker's counters are exactly the scenario's, times the rounds run; else
    /// what differs. (Not called while measuring: it may allocate.)
    func counterMismatch() -> String? {
        guard scenario.serve, let e = scenario.expected else { return nil }
        let r = reports.map { $0.snapshot() }.reduce(WorkerReport(), +)
        var wrong: [String] = []
        func expect(_ what: String, _ actual: UInt64, _ before: UInt64, _ perRound: UInt64) {
            if actual &- before != perRound * rounds {
                wrong.append("\(what) \(actual &- before), expected \(perRound * rounds)")
            }
        }
        let b = baseline
        expect("read", r.counters.read, b.read, UInt64(e.read))
        expect("replied", r.counters.replied, b.replied, UInt64(e.replied))
        expect("delivered", r.counters.deliveries, b.deliveries, UInt64(e.deliveries))
        expect("delivery failures", r.counters.deliveryFailures, b.deliveryFailures, 0)
        for (i, reason) in reasons.enumerated() {
            expect("dropped \(reason)", r.counters.value(named: reason), b.value(named: reason), expectedDrops[i])
        }
        if r.receiveErrors != 0 || r.lastReceiveErrno != 0 {
            wrong.append("receive errors \(r.receiveErrors) (last errno \(r.lastReceiveErrno)), expected none")
        }
        if let trace {
            // Each datagram read a record, its fate the counters': every drop under its reason
            // (send-failed as a failed reply), and the rest replied or served.
            let lost = trace.rings.reduce(0) { $0 + $1.lost }
            let records = (0..<Self.fateSlots).reduce(0) { $0 + tracedFates[$1] }
            expect("trace records", records, 0, UInt64(e.read))
            expect("trace records not written", lost, 0, 0)
            expect("traced replied or served", tracedFates[0] + tracedFates[2], 0, UInt64(e.replied))
            for (i, reason) in reasons.enumerated() {
                var traced = reason == CounterSchema.generic.name(of: .sendFailed) ? tracedFates[1] : 0
                for (w, report) in reports.enumerated() {
                    if let id = report.snapshot().counters.schema.id(named: reason) {
                        traced += tracedFates[3 + w * CounterBlock.capacity + id.index]
                    }
                }
                expect("traced \(reason)", traced, 0, expectedDrops[i])
            }
        }
        if r.segmentationFallbacks != 0 {
            wrong.append("segmentation fallbacks \(r.segmentationFallbacks), expected none")
        }
        if rounds > 0 && r.lastSendErrno != e.lastSendErrno {
            wrong.append("last send errno \(r.lastSendErrno), expected \(e.lastSendErrno)")
        }
        return wrong.isEmpty ? nil : "after \(rounds) rounds: " + wrong.joined(separator: "; ")
    }

    var summary: String {
        guard scenario.serve else { return "not serving (control)" }
        let r = reports.map { $0.snapshot() }.reduce(WorkerReport(), +)
        let drops = reasons.filter { r.counters.value(named: $0) > 0 }.map { "\($0) \(r.counters.value(named: $0))" }
        return "\(rounds) rounds: read \(r.counters.read), replied \(r.counters.replied), dropped "
            + (drops.isEmpty ? "0" : drops.joined(separator: ", "))
            + ", batches \(r.batches) (\(r.coalescedBatches) with coalesced receives), segmented sends \(r.segmentedSends)"
            + (r.lastSendErrno != 0 ? ", last send errno \(r.lastSendErrno)" : "")
    }
}

/// Builds a worker for a service chosen by name and hands back its `serveBatch`, the
/// worker kept alive by the closure (a `Worker` is generic over its service).
struct BenchWorkerBuilder: ServiceBuilder {
    let index: Int
    let socket: DatagramSocket
    let configuration: WorkerConfiguration
    let report: PublishedReport
    let trace: TraceControl?

    final class Box<Service: DatagramService & ~Copyable> {
        var worker: Worker<Service>
        init(_ worker: consuming Worker<Service>) { self.worker = worker }
    }

    func build<Service: DatagramService & ~Copyable>(_ service: consuming Service) -> Result<
        (UInt64?) -> Int, SocketError
    > {
        do {
            let box = Box(
                try Worker(
                    index: index, socket: socket, service: service, configuration: configuration,
                    publishingTo: report, handover: nil, trace: trace))
            return .success { now in now.map { box.worker.serveBatch(now: $0) } ?? box.worker.serveBatch() }
        } catch {
            return .failure(error)
        }
    }
}
