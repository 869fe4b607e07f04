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

/// The rings that carry datagrams from one chat worker to the owner of their room.
struct HandoverTests {
    /// Pushes datagram `n`: its bytes say n, its source port is n, it came through socket n % 3.
    static func push(_ ring: HandoverRing, _ n: Int, length: Int = 8) -> Bool {
        var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: n), count: length)
        withUnsafeBytes(of: UInt64(n).bigEndian) { for i in 0..<min(8, length) { bytes[i] = $0[i] } }
        var arrival = Arrival(replySource: LocalSource(.v4(0x7f00_0001)))
        arrival.socket = UInt16(n % 3)
        return bytes.withUnsafeBytes {
            ring.push(
                Datagram(
                    payload: $0, truncated: n % 5 == 0, peer: .v4(0x7f00_0002, port: UInt16(truncatingIfNeeded: n)),
                    arrival: arrival))
        }
    }

    /// Takes the oldest datagram and returns its number, checking that all it carries came
    /// through; nil if the ring is empty.
    static func pop(_ ring: HandoverRing, length: Int = 8) -> Int? {
        guard let datagram = ring.first() else { return nil }
        defer { ring.removeFirst() }
        #expect(datagram.length == length)
        #expect(datagram.continuation.isEmpty)
        let n =
            length >= 8
            ? Int(UInt64(bigEndian: datagram.payload.loadUnaligned(as: UInt64.self))) : Int(datagram.payload[0])
        #expect(datagram.peer == .v4(0x7f00_0002, port: UInt16(truncatingIfNeeded: n)))
        #expect(datagram.arrival.socket == UInt16(n % 3))
        #expect(datagram.arrival.replySource == LocalSource(.v4(0x7f00_0001)))
        #expect(datagram.truncated == (n % 5 == 0))
        return n
    }

    @Test func datagramsComeOutInOrderWithEverythingTheyCarried() {
        let ring = HandoverRing(capacity: 8, slotBytes: 1232)
        #expect(ring.isEmpty)
        for n in 0..<5 { #expect(Self.push(ring, n)) }
        #expect(!ring.isEmpty)
        #expect((0..<5).map { _ in Self.pop(ring) } == [0, 1, 2, 3, 4])
        #expect(Self.pop(ring) == nil)
        #expect(ring.isEmpty)
    }

    @Test func aFullRingRefusesAndKeepsWhatItHolds() {
        let ring = HandoverRing(capacity: 3, slotBytes: 64)  // rounded up to 4
        #expect(ring.capacity == 4)
        for n in 0..<4 { #expect(Self.push(ring, n)) }
        #expect(!Self.push(ring, 99))
        #expect(Self.pop(ring) == 0)
        #expect(Self.push(ring, 4))  // room again for one
        #expect(!Self.push(ring, 99))
        #expect((0..<4).map { _ in Self.pop(ring) } == [1, 2, 3, 4])
    }

    @Test func slotsAreReusedRoundAndRound() {
        let ring = HandoverRing(capacity: 4, slotBytes: 1232)
        var next = 0
        var expected = 0
        for round in 0..<100 {
            for _ in 0..<(round % 4 + 1) {
                #expect(Self.push(ring, next, length: 8 + next % 1200))
                next += 1
            }
            while let datagram = ring.first() {
                #expect(datagram.length == 8 + expected % 1200)
                _ = Self.pop(ring, length: 8 + expected % 1200)
                expected += 1
            }
        }
        #expect(expected == next && next > 200)
    }

    @Test func twoThreadsPassEveryDatagramOnceInOrder() throws {
        let ring = HandoverRing(capacity: 16, slotBytes: 64)
        let total = 20_000
        let deadline = monotonicNanoseconds() + 20_000_000_000
        let producer = PosixThread.spawn(name: "test-producer") {
            var n = 0
            while n < total && monotonicNanoseconds() < deadline {
                if Self.push(ring, n) { n += 1 } else { sched_yield() }
            }
        }
        var received = 0
        var inOrder = true
        while received < total && monotonicNanoseconds() < deadline {
            if let n = Self.pop(ring) {
                inOrder = inOrder && n == received
                received += 1
            } else {
                sched_yield()
            }
        }
        producer.join()
        #expect(received == total)
        #expect(inOrder)
    }

    @Test func aSleepingOwnerIsWokenAndAnAwakeOneIsNot() throws {
        let sockets = try (0..<2).map { _ in try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!) }
        defer { sockets.forEach { try? $0.close() } }
        let group = HandoverGroup(sockets: sockets, slots: 4, slotBytes: 64)
        #expect(group.ringBytes == 2 * 4 * 64)
        func woken(_ worker: Int) -> Bool {
            var fd = pollfd(fd: group.wakeup(of: worker).rawValue, events: Int16(POLLIN), revents: 0)
            return poll(&fd, 1, 0) == 1
        }
        // Awake: a handover does not write its eventfd.
        #expect(Self.push(group.ring(from: 0, to: 1), 1))
        group.wakeIfSleeping(1)
        #expect(!woken(1))
        // About to sleep with something queued: it must not.
        #expect(!group.prepareToSleep(1))
        #expect(Self.pop(group.ring(from: 0, to: 1)) == 1)
        // Asleep: the next handover wakes it, and waking clears the eventfd.
        #expect(group.prepareToSleep(1))
        #expect(Self.push(group.ring(from: 0, to: 1), 2))
        group.wakeIfSleeping(1)
        #expect(woken(1))
        #expect(!woken(0))
        group.woke(1)
        #expect(!woken(1))
    }
}

/// Two chat workers sharing the rooms, each on its own socket (127.0.0.1 and ::1), driven
/// by hand: one batch at a time, no threads.
struct ChatWorkersTests {
    static func service(worker: Int) -> ChatService {
        var chat = ChatSettings()
        chat.secret = (1, 2)
        chat.workers = 2
        chat.worker = worker
        return ChatService(WorkerConfiguration(spinLimit: 0).serviceSettings(policy: AdmissionPolicy()), chat: chat)
    }

    @Test func whatAFullRingRefusesIsCountedAndTheTotalsBalance() throws {
        let sockets = try ["127.0.0.1:0", "[::1]:0"].map { try DatagramSocket.bound(to: SocketAddress(parsing: $0)!) }
        defer { sockets.forEach { try? $0.close() } }
        let group = HandoverGroup(sockets: sockets, slots: 4, slotBytes: ChatWire.largestDatagram)
        let reports = [PublishedReport(), PublishedReport()]
        let configuration = WorkerConfiguration(spinLimit: 0)
        var first = try Worker(
            index: 0, socket: sockets[0], service: Self.service(worker: 0),
            configuration: configuration, publishingTo: reports[0], handover: (group, 0))
        var second = try Worker(
            index: 1, socket: sockets[1], service: Self.service(worker: 1),
            configuration: configuration, publishingTo: reports[1], handover: (group, 1))
        let client = try TestClient()
        defer { client.close() }
        // Ten SAYs to the first socket with a token that names the second worker (and that
        // it never issued): four fill the ring, six are refused.
        let token: UInt64 = 0x01de_adbe_efde_adbe
        for n in 0..<10 {
            try client.send(
                ChatMessage.say(token: token, clientSequence: UInt32(n), text: [0x61]).encoded(tag: UInt64(n + 1)),
                to: try sockets[0].localAddress())
        }
        usleep(20_000)
        #expect(first.serveBatch() == 10)
        #expect(reports[0].snapshot().counters.read == 10)
        #expect(reports[0].snapshot().counters.drops[.chatHandoverFull] == 6)
        // The owner serves the four: NOT A MEMBER to each, through the socket they came in by.
        #expect(second.serveBatch() == 4)
        var answers = 0
        var tags: Set<UInt64> = []
        while let reply = try client.receive(timeout: 0.5) {
            let decoded = ChatMessage.decode(reply.bytes)
            #expect(decoded?.message == .notAMember(token: token))
            if let tag = decoded?.tag { tags.insert(tag) }  // each the tag of the SAY it answers
            #expect(reply.from == (try sockets[0].localAddress()))
            answers += 1
        }
        #expect(answers == 4)
        #expect(tags.count == 4 && tags.isSubset(of: Set((1...10).map { UInt64($0) })))
        let total = reports[0].snapshot().counters + reports[1].snapshot().counters
        #expect(total.read == 10 && total.drops[.chatHandoverFull] == 6 && total.drops[.chatNotMember] == 4)
        #expect(total.isBalanced)
        #expect(reports[1].snapshot().counters.read == 0)
    }
}
