import CShims
import Glibc
import SystemPackage

/// A UDP socket: a descriptor and the operations hellod needs on it. A tiny value, like
/// swift-system's `FileDescriptor`: copying it does not duplicate the socket, and closing
/// it is explicit.
public struct DatagramSocket: Sendable, Hashable {
    public let descriptor: FileDescriptor

    /// A socket someone else opened (systemd, under socket activation).
    public init(adopting descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    /// A new UDP socket for `address`'s family. An IPv6 wildcard is dual-stack: it also
    /// serves IPv4 peers, as `::ffff:a.b.c.d`.
    public static func open(family: Int32) throws(SocketError) -> DatagramSocket {
        let fd = try systemCall("socket") {
            socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let sock = DatagramSocket(adopting: FileDescriptor(rawValue: fd))
        if family == AF_INET6 {
            try sock.setOption(Int32(IPPROTO_IPV6), HS_IPV6_V6ONLY, 0, "setsockopt(IPV6_V6ONLY)")
        }
        return sock
    }

    /// A socket bound to `address`; with `reusePort`, several sockets share it and the
    /// kernel spreads flows over them (SO_REUSEPORT).
    public static func bound(to address: SocketAddress, reusePort: Bool = false) throws(SocketError) -> DatagramSocket {
        let sock = try open(family: address.family)
        do {
            if reusePort {
                try sock.setOption(SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)")
            }
            try address.withSockaddr { sa, len throws(SocketError) in
                _ = try systemCall("bind") { bind(sock.descriptor.rawValue, sa, len) }
            }
        } catch {
            try? sock.close()  // the bind's failure is the one to report
            throw error
        }
        return sock
    }

    /// Closes the descriptor. Not retried on EINTR: Linux has closed it by then.
    public func close() throws(SocketError) {
        if Glibc.close(descriptor.rawValue) < 0 && errno != EINTR {
            throw SocketError(call: "close", errno: Errno(rawValue: errno))
        }
    }

    public func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ call: StaticString) throws(SocketError) {
        var v = value
        _ = try systemCall(call) {
            setsockopt(descriptor.rawValue, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Asks the kernel to say, with each datagram, where it went (IP_PKTINFO,
    /// IPV6_RECVPKTINFO): the header's destination tells a broadcast or multicast apart,
    /// and on a wildcard socket, the local address is the one a reply must leave from.
    public func receivePacketInfo() throws(SocketError) {
        try setOption(Int32(IPPROTO_IP), HS_IP_PKTINFO, 1, "setsockopt(IP_PKTINFO)")
        if try localAddress().family == AF_INET6 {
            try setOption(Int32(IPPROTO_IPV6), HS_IPV6_RECVPKTINFO, 1, "setsockopt(IPV6_RECVPKTINFO)")
        }
    }

    /// Whether the kernel hands a train of datagrams from one peer over as one receive
    /// (UDP_GRO), its segment size in a control message: one socket buffer, not dozens.
    /// Set either way: a socket from systemd keeps what an earlier run set, and a receive
    /// that does not expect trains would take one for a single datagram.
    public func receiveCoalesced(_ on: Bool) throws(SocketError) {
        try setOption(HS_SOL_UDP, HS_UDP_GRO, on ? 1 : 0, "setsockopt(UDP_GRO)")
    }

    /// Whether every datagram this socket sends to an IPv4 peer leaves whole: the
    /// don't-fragment bit set, the IP ID 0, and what ICMP says of a path's MTU ignored
    /// (IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, as QUIC stacks do); a send longer than the
    /// interface's MTU then fails (EMSGSIZE) rather than leaving in fragments. For
    /// datagrams that fit any path (`Endpoint.largestPayloadOnAnyPath`): a forged
    /// "fragmentation needed" cannot make them leave in fragments, and no send draws an ID
    /// from the host's shared generator (a hash and an atomic add). false: a socket left
    /// sending whole (one from systemd keeps what an earlier run set) goes back to path MTU
    /// discovery (IP_PMTUDISC_WANT, a new socket's mode unless the host turned it off with
    /// net.ipv4.ip_no_pmtu_disc; a new socket to ask is not to be had under systemd's
    /// RestrictAddressFamilies); any other mode is left as it is. (IPv6 never fragments a
    /// datagram that fits any path, and has no ID to draw.)
    public func sendWhole(_ whole: Bool) throws(SocketError) {
        var mode: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try systemCall("getsockopt(IP_MTU_DISCOVER)") {
            getsockopt(descriptor.rawValue, Int32(IPPROTO_IP), HS_IP_MTU_DISCOVER, &mode, &length)
        }
        let wanted = whole ? HS_IP_PMTUDISC_PROBE : mode == HS_IP_PMTUDISC_PROBE ? HS_IP_PMTUDISC_WANT : mode
        if wanted != mode {
            try setOption(Int32(IPPROTO_IP), HS_IP_MTU_DISCOVER, wanted, "setsockopt(IP_MTU_DISCOVER)")
        }
    }

    /// Cuts every send longer than `size` bytes into datagrams of `size` (UDP_SEGMENT on the
    /// socket; the last may be shorter): a GSO sender's trains, for `hello bench --gso`.
    public func segmentEverySend(size: Int) throws(SocketError) {
        try setOption(Int32(IPPROTO_UDP), HS_UDP_SEGMENT, Int32(clamping: size), "setsockopt(UDP_SEGMENT)")
    }

    /// How many datagrams the kernel has dropped for this socket since it was created,
    /// mostly on a full receive queue (SO_MEMINFO). Unlike SO_RXQ_OVFL, which UDP reports
    /// only with datagrams queued after the drops (if at all), this reads the count itself.
    public func kernelDrops() throws(SocketError) -> UInt32 {
        var drops: UInt32 = 0
        let status = hs_socket_drops(descriptor.rawValue, &drops)
        guard status == 0 else { throw SocketError(call: "getsockopt(SO_MEMINFO)", errno: Errno(rawValue: -status)) }
        return drops
    }

    /// Makes a receive that waits (`MessageVector.receive(waiting: true)`) give up after
    /// `nanoseconds` (SO_RCVTIMEO; nil: wait as long as it takes), and clears O_NONBLOCK,
    /// which a socket from systemd carries: such a receive must block. Every other call
    /// passes MSG_DONTWAIT, so nothing else waits.
    @usableFromInline package func setReceiveTimeout(_ nanoseconds: UInt64?) throws(SocketError) {
        let flags = try systemCall("fcntl") { fcntl(descriptor.rawValue, F_GETFL) }
        _ = try systemCall("fcntl") { fcntl(descriptor.rawValue, F_SETFL, flags & ~O_NONBLOCK) }
        let n = nanoseconds ?? 0
        var timeout = timeval(tv_sec: Int(n / 1_000_000_000), tv_usec: Int(n % 1_000_000_000 / 1000))
        if nanoseconds != nil && timeout.tv_sec == 0 && timeout.tv_usec == 0 { timeout.tv_usec = 1 }  // 0 is "never"
        _ = try systemCall("setsockopt(SO_RCVTIMEO)") {
            setsockopt(descriptor.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    public func setReceiveBufferSize(_ bytes: Int) throws(SocketError) {
        try setOption(SOL_SOCKET, SO_RCVBUF, Int32(clamping: bytes), "setsockopt(SO_RCVBUF)")
    }

    public func setSendBufferSize(_ bytes: Int) throws(SocketError) {
        try setOption(SOL_SOCKET, SO_SNDBUF, Int32(clamping: bytes), "setsockopt(SO_SNDBUF)")
    }

    /// The address the socket is bound to.
    public func localAddress() throws(SocketError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try systemCall("getsockname") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor.rawValue, $0, &length) }
            }
        }
        return SocketAddress(storage, length: length)
    }

    /// Fixes the peer: `send` goes there, and only its datagrams are received.
    public func connect(to address: SocketAddress) throws(SocketError) {
        try address.withSockaddr { sa, len throws(SocketError) in
            _ = try systemCall("connect") { Glibc.connect(descriptor.rawValue, sa, len) }
        }
    }

    /// Sends one datagram to the connected peer. Returns false if the send buffer is full.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Bool {
        try nonBlockingCall("send") {
            Glibc.send(descriptor.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT))
        } != nil
    }

    /// Receives one datagram into `buffer`, waiting at most `timeout` nanoseconds.
    /// Returns its length, or nil when the time ran out.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: UInt64) throws(SocketError) -> Int? {
        let deadline = monotonicNanoseconds() + timeout
        while true {
            if let n = try nonBlockingCall(
                "recv", { recv(descriptor.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) })
            {
                return n
            }
            let now = monotonicNanoseconds()
            guard now < deadline else { return nil }
            _ = try wait(for: Int16(POLLIN), timeout: deadline - now)
        }
    }

    /// Waits until the socket is ready for `events` (POLLIN, POLLOUT), or `wakeup` or
    /// `handover` (eventfds or pipes, if any) becomes readable, or `timeout` nanoseconds
    /// pass (nil: forever), or a signal interrupts the wait (a worker's `IntervalInterrupt`,
    /// a stop). Returns the socket's ready events (0 on timeout, wakeup or signal).
    @discardableResult
    public func wait(
        for events: Int16, timeout: UInt64?, wakeup: FileDescriptor? = nil,
        handover: FileDescriptor? = nil
    ) throws(SocketError) -> Int16 {
        // poll skips a negative descriptor.
        var fds = (
            pollfd(fd: descriptor.rawValue, events: events, revents: 0),
            pollfd(fd: wakeup?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
            pollfd(fd: handover?.rawValue ?? -1, events: Int16(POLLIN), revents: 0)
        )
        let count: nfds_t = handover != nil ? 3 : wakeup != nil ? 2 : 1
        // ppoll, to the nanosecond: poll's milliseconds would round a short wait up a lot.
        let nanoseconds = timeout ?? 0
        var limit = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        let ready = try withUnsafeMutableBytes(of: &fds) { raw throws(SocketError) in
            try withUnsafePointer(to: &limit) { limit throws(SocketError) in
                try waitingCall("poll") {
                    hs_ppoll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), count, timeout == nil ? nil : limit)
                } ?? 0
            }
        }
        return ready == 0 ? 0 : fds.0.revents
    }
}
