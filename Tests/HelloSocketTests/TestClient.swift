import Glibc
import HelloSocket
import Testing

/// A plain UDP socket for tests: sendto and recvfrom, one datagram at a time.
struct TestClient {
    let socket: DatagramSocket

    init(family: Int32 = AF_INET) throws {
        socket = try DatagramSocket.open(family: family)
    }

    /// Plain sends and receives on a socket someone else owns (and closes).
    init(adopting socket: DatagramSocket) {
        self.socket = socket
    }

    func send(_ bytes: [UInt8], to address: SocketAddress) throws {
        let sent = try address.withSockaddr { sa, len in
            bytes.withUnsafeBytes { sendto(socket.descriptor.rawValue, $0.baseAddress, $0.count, 0, sa, len) }
        }
        precondition(sent == bytes.count)
    }

    /// Sends `segments` in one UDP_SEGMENT send: each leaves as its own datagram (all but
    /// the last the same length), and a UDP_GRO socket on loopback reads them in one receive.
    func sendTrain(_ segments: [[UInt8]], to address: SocketAddress) throws {
        try segmenting(segments[0].count)
        defer { try? segmenting(0) }
        try send(segments.flatMap { $0 }, to: address)
    }

    /// Cuts every send into datagrams of `size` bytes from now on (UDP_SEGMENT; 0: off), as
    /// a peer that turns GSO on does.
    func segmenting(_ size: Int) throws {
        try socket.segmentEverySend(size: size)
    }

    /// The next datagram and where it came from, or nil after `timeout` seconds.
    func receive(timeout: Double = 2) throws -> (bytes: [UInt8], from: SocketAddress)? {
        guard try socket.wait(for: Int16(POLLIN), timeout: UInt64(timeout * 1e9)) != 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { bytes in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(socket.descriptor.rawValue, bytes.baseAddress, bytes.count, 0, $0, &length)
                }
            }
        }
        guard n >= 0 else { return nil }
        return (Array(buffer[..<n]), SocketAddress(storage, length: length))
    }

    func close() {
        do {
            try socket.close()
        } catch {
            Issue.record("closing a test client: \(error)")
        }
    }
}
