import Glibc
import HelloDatagram
import HelloSocket
import Testing

/// SendBatch over a real loopback socket: a datagram with a head of its own leaves as its
/// head and the bytes it shares, exactly, among one-part datagrams and a segmented run.
@Suite struct TwoPartSendTests {
    /// Sends `outbox` from a fresh loopback socket to `client`'s address; the outcome.
    func send(_ outbox: borrowing Outbox, segmentation: Bool = true) throws -> SendBatch.Outcome {
        let server = try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!)
        defer { try? server.close() }
        var options = SendBatch.Options()
        options.socketFamily = AF_INET
        options.segmentation = segmentation
        return SendBatch(capacity: outbox.capacity, options: options).send(outbox, via: server)
    }

    /// One-part datagrams, a run of same-length ones to one peer (one segmented send), and
    /// repeats of a datagram each with its own head, in one batch; `client` gets each
    /// datagram's bytes, in order.
    func mixedBatch(to destination: Endpoint) -> Outbox {
        var outbox = Outbox(capacity: 16, largestDatagram: 200)
        Self.append(&outbox, to: destination, Array("one part".utf8))
        // the original: entry 1, 100 bytes
        Self.append(&outbox, to: destination, [0x0a, 0x0b] + (0..<98).map { UInt8($0) })
        for k in 0..<2 {
            outbox.next.initializeMemory(as: UInt8.self, repeating: 0xe0 + UInt8(k), count: 10)
            let repeated = outbox.repeatDatagram(1, ownHead: 10, to: destination, from: nil)
            #expect(repeated)
        }
        for k in 0..<4 {
            Self.append(
                &outbox, to: destination,
                [UInt8](
                    repeating: 0x40 + UInt8(k),
                    count: 50))
        }  // a run: 50, 50, 50, 50
        Self.append(&outbox, to: destination, [UInt8](repeating: 0x50, count: 20))  // its shorter last segment
        outbox.next.initializeMemory(as: UInt8.self, repeating: 0xf0, count: 3)
        let repeated = outbox.repeatDatagram(1, ownHead: 3, to: destination, from: nil)
        #expect(repeated)
        Self.append(&outbox, to: destination, [0x7f])
        return outbox
    }

    static func append(_ outbox: inout Outbox, to destination: Endpoint, _ bytes: [UInt8]) {
        let appended = bytes.withUnsafeBytes { outbox.append($0, to: destination) }
        precondition(appended)
    }

    @Test(arguments: [true, false]) func aTwoPartDatagramArrivesAsHeadAndBodyExactly(segmentation: Bool) throws {
        let client = try TestClient(adopting: DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!))
        defer { client.close() }
        let outbox = mixedBatch(to: try client.socket.localAddress().endpoint)
        let expected = outbox.entries.map { outbox.datagram($0) }
        #expect(outbox.entries.filter { $0.headLength > 0 }.count == 3)
        let outcome = try send(outbox, segmentation: segmentation)
        #expect(outcome.sent == outbox.count && outcome.failed == 0)
        // The run of five (four of 50 bytes, one of 20) is one send when segmenting; nothing else is.
        #expect(outcome.segmentedSends == (segmentation ? 1 : 0))
        var received: [[UInt8]] = []
        while let datagram = try client.receive(timeout: 0.5) { received.append(datagram.bytes) }
        #expect(received == expected)
        // The repeats: their heads, then the original's bytes after its first 10 (or 3).
        let original = expected[1]
        #expect(received.count == expected.count)
        if received.count == expected.count {
            #expect(received[2] == [UInt8](repeating: 0xe0, count: 10) + original.dropFirst(10))
            #expect(received[3] == [UInt8](repeating: 0xe1, count: 10) + original.dropFirst(10))
            #expect(received[9] == [0xf0, 0xf0, 0xf0] + original.dropFirst(3))
        }
    }
}
