import CShims
import Glibc

/// The arrays recvmmsg and sendmmsg work on, allocated once: `capacity` message headers,
/// one or two iovecs each, and optionally an address and a control buffer each. Afterwards they
/// are only re-pointed, never reallocated (after swift-nio's DatagramVectorReadManager).
package final class MessageVector {
    package let capacity: Int
    package let headers: UnsafeMutablePointer<hs_mmsghdr>
    package let iovecs: UnsafeMutablePointer<iovec>
    /// One address per message, or nil for connected sockets.
    package let names: UnsafeMutablePointer<sockaddr_storage>?
    /// `controlSize` bytes per message, aligned for cmsghdr, or nil.
    package let control: UnsafeMutableRawPointer?
    package let controlSize: Int
    /// iovecs per message: 2 scatters a datagram over two buffers.
    package let buffersPerMessage: Int
    /// Headers from the first on that the kernel may have written since they were last made
    /// ready for a receive (all of them, at first). One thread owns a vector: no dynamic
    /// exclusivity check.
    @exclusivity(unchecked) private var written: Int

    package init(capacity: Int, names: Bool, controlSize: Int = 0, buffersPerMessage: Int = 1) {
        precondition(capacity > 0 && (1...2).contains(buffersPerMessage))
        self.capacity = capacity
        self.buffersPerMessage = buffersPerMessage
        self.written = capacity
        self.headers = .allocate(capacity: capacity)
        self.iovecs = .allocate(capacity: capacity * buffersPerMessage)
        self.names = names ? .allocate(capacity: capacity) : nil
        self.controlSize = controlSize
        self.control = controlSize > 0 ? .allocate(byteCount: capacity * controlSize, alignment: 16) : nil
        headers.initialize(repeating: hs_mmsghdr(), count: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity * buffersPerMessage)
        self.names?.initialize(repeating: sockaddr_storage(), count: capacity)
        self.control?.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * controlSize)
        // The kernel writes a receive's lengths and flags, never these pointers: set once.
        for i in 0..<capacity {
            headers[i].msg_hdr.msg_iov = iovecs + i * buffersPerMessage
            headers[i].msg_hdr.msg_iovlen = buffersPerMessage
            headers[i].msg_hdr.msg_name = self.names.map { UnsafeMutableRawPointer($0 + i) }
            headers[i].msg_hdr.msg_control = controlBuffer(i)
        }
    }

    deinit {
        headers.deallocate()
        iovecs.deallocate()
        names?.deallocate()
        control?.deallocate()
    }

    @inline(__always)
    package func controlBuffer(_ i: Int) -> UnsafeMutableRawPointer? {
        control.map { $0 + i * controlSize }
    }

    /// Points message `i` at `length` bytes of `buffer` (its only or first buffer).
    @inline(__always)
    package func setBuffer(_ i: Int, _ buffer: UnsafeMutableRawPointer, length: Int) {
        iovecs[i * buffersPerMessage] = iovec(iov_base: buffer, iov_len: length)
    }

    /// Points message `i` (of two buffers a message) at `headLength` bytes of `head`, then
    /// `length` bytes of `buffer`.
    @inline(__always)
    package func setBuffers(
        _ i: Int, _ head: UnsafeMutableRawPointer, length headLength: Int,
        _ buffer: UnsafeMutableRawPointer, length: Int
    ) {
        let pair = iovecs + i * 2
        pair[0] = iovec(iov_base: head, iov_len: headLength)
        pair[1] = iovec(iov_base: buffer, iov_len: length)
    }

    /// Points message `i`'s second buffer at `length` bytes of `buffer`.
    @inline(__always)
    package func setSecondBuffer(_ i: Int, _ buffer: UnsafeMutableRawPointer, length: Int) {
        precondition(buffersPerMessage == 2)
        iovecs[i * 2 + 1] = iovec(iov_base: buffer, iov_len: length)
    }

    /// Reads up to `count` datagrams without waiting: 0 when none is queued. `waiting`:
    /// waits for the first (MSG_WAITFORONE), at most the socket's SO_RCVTIMEO, or until the
    /// thread is interrupted (0 then too). `flags` are recvmmsg's besides those (MSG_TRUNC:
    /// `length` is a cut datagram's full length).
    @inline(__always)
    package func receive(
        from socket: DatagramSocket, count: Int, waiting: Bool = false, flags: Int32 = 0
    ) throws(SocketError) -> Int {
        // Only the headers the last receive wrote need their lengths and flags back: the
        // kernel touches no other (a ping-pong's batch of 64 reads one datagram a call).
        for i in 0..<written {
            if names != nil {
                headers[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            }
            if control != nil {
                headers[i].msg_hdr.msg_controllen = controlSize
            }
            headers[i].msg_hdr.msg_flags = 0
        }
        let fd = socket.descriptor.rawValue
        written = capacity  // until the call says otherwise: a failure resets them all
        let n: Int32?
        if waiting {
            n = try waitingCall("recvmmsg") {
                hs_recvmmsg(fd, headers, UInt32(count), Int32(MSG_WAITFORONE) | flags, nil)
            }
        } else {
            n = try nonBlockingCall("recvmmsg") {
                hs_recvmmsg(fd, headers, UInt32(count), Int32(MSG_DONTWAIT) | flags, nil)
            }
        }
        written = Int(n ?? 0)
        return written
    }

    /// Sends messages `range` without waiting. Returns how many the kernel took (the first
    /// ones), or nil when the send buffer is full. A failure of the first message throws.
    @inline(__always)
    package func send(via socket: DatagramSocket, _ range: Range<Int>) throws(SocketError) -> Int? {
        let fd = socket.descriptor.rawValue
        let first = headers + range.lowerBound
        return try nonBlockingCall("sendmmsg") { hs_sendmmsg(fd, first, UInt32(range.count), Int32(MSG_DONTWAIT)) }.map(
            Int.init)
    }

    @inline(__always)
    package func length(_ i: Int) -> Int { Int(headers[i].msg_len) }

    @inline(__always)
    package func isTruncated(_ i: Int) -> Bool { headers[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 }
}
