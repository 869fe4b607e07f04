// The benchmarks' own sockets and network namespaces, in plain Glibc: nothing here uses
// hellod's API.

import Glibc

/// Where a benchmark's sockets live.
enum Network: Sendable {
    /// The machine's own network namespace, on loopback.
    case host
    /// A fresh network namespace with only `lo` up: no route leaves it, so a reply to
    /// `PeerKind.testNet`'s 192.0.2.1 fails with ENETUNREACH, and every port is free.
    case isolated
    /// `isolated`, plus a tap device `hbstall0` with 192.0.2.100/24 whose neighbours never
    /// resolve (nothing answers ARP, and the retry interval is an hour): a datagram to
    /// 192.0.2.x waits in the neighbour queue, still charged to its sender's send buffer.
    case stalledLink
}

/// Who a client socket is.
enum PeerKind: Sendable {
    /// 127.0.0.1, an ephemeral port.
    case loopback
    /// 127.0.0.1, port 1000 + the peer's number (needs root, so `Network.isolated`).
    case privilegedPort
    /// 127.0.0.1, an ephemeral port that the worker's policy lists as one of its own.
    case ownPort
    /// 192.0.2.1 (TEST-NET-1, never local), an ephemeral port, bound with IP_TRANSPARENT
    /// (needs root, so a private namespace): what happens to its replies is the network's.
    case testNet
    /// 192.0.2.100 (`Network.stalledLink`'s tap), SO_BROADCAST, sending to 192.0.2.255 at
    /// the server's port: the kernel loops a broadcast back to the host, and hellod sees a
    /// datagram whose destination was the subnet's broadcast address.
    case broadcast
}

enum NetworkError: Error, CustomStringConvertible {
    case call(String, Int32)

    var description: String {
        switch self {
        case .call(let what, let code): return "\(what): \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}

@discardableResult
func check(_ result: Int32, _ what: @autoclosure () -> String) throws -> Int32 {
    guard result >= 0 else { throw NetworkError.call(what(), errno) }
    return result
}

func ipv4(_ ip: String, _ port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    precondition(inet_pton(AF_INET, ip, &address.sin_addr) == 1, "not an IPv4 address: \(ip)")
    return address
}

func withSockaddr<T>(_ address: sockaddr_in, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    withUnsafePointer(to: address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

func localPort(_ fd: Int32) -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}

/// A UDP client socket bound as `kind` says, connected to `server` (nil: to itself).
func clientSocket(_ kind: PeerKind, peer: Int, server: sockaddr_in?, receiveBuffer: Int32) throws -> Int32 {
    let fd = try check(socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0), "socket")
    do {
        var size = receiveBuffer
        try check(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)), "SO_RCVBUF")
        let local: sockaddr_in
        switch kind {
        case .loopback, .ownPort: local = ipv4("127.0.0.1", 0)
        case .privilegedPort: local = ipv4("127.0.0.1", UInt16(1000 + peer))
        case .testNet:
            var on: Int32 = 1
            try check(
                setsockopt(fd, Int32(IPPROTO_IP), IP_TRANSPARENT, &on, socklen_t(MemoryLayout<Int32>.size)),
                "IP_TRANSPARENT (needs root)")
            local = ipv4("192.0.2.1", 0)
        case .broadcast:
            var on: Int32 = 1
            try check(
                setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, socklen_t(MemoryLayout<Int32>.size)), "SO_BROADCAST")
            local = ipv4("192.0.2.100", 0)
        }
        try check(withSockaddr(local) { bind(fd, $0, $1) }, "bind client \(kind) \(peer)")
        var target = server ?? ipv4("127.0.0.1", 0)
        if server == nil { target.sin_port = localPort(fd).bigEndian }
        if kind == .broadcast, let server { target = ipv4("192.0.2.255", UInt16(bigEndian: server.sin_port)) }
        try check(withSockaddr(target) { connect(fd, $0, $1) }, "connect client \(peer)")
    } catch {
        close(fd)
        throw error
    }
    return fd
}

/// A private network namespace for this thread while a rig makes its sockets (which stay
/// in it for their lifetime), then back to the one the thread was in.
final class PrivateNetwork {
    private static let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET: Glibc's module lacks it
    private typealias Unshare = @convention(c) (Int32) -> Int32
    private typealias Setns = @convention(c) (Int32, Int32) -> Int32
    private let original: Int32
    /// The tap device's descriptor (`Network.stalledLink`), kept open: closing it removes it.
    private(set) var tap: Int32 = -1

    /// Enters a fresh namespace as `network` says; nil for `.host`.
    static func enter(_ network: Network) throws -> PrivateNetwork? {
        network == .host ? nil : try PrivateNetwork(network)
    }

    private init(_ network: Network) throws {
        original = try check(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), "open /proc/thread-self/ns/net")
        guard let symbol = dlsym(nil, "unshare") else { throw NetworkError.call("dlsym(unshare)", ENOSYS) }
        do {
            try check(unsafeBitCast(symbol, to: Unshare.self)(Self.cloneNewNet), "unshare(CLONE_NEWNET) (needs root)")
        } catch {
            close(original)
            throw error
        }
        try Self.up("lo")
        if network == .stalledLink {
            tap = try Self.stalledLink()
        }
    }

    /// Back to the namespace the thread came from.
    func leave() {
        guard let symbol = dlsym(nil, "setns"),
            unsafeBitCast(symbol, to: Setns.self)(original, Self.cloneNewNet) == 0
        else {
            fail("setns", "cannot return to the original network namespace")
        }
        close(original)
    }

    private static func request(_ name: String) -> ifreq {
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (i, byte) in name.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        return request
    }

    private static func withControlSocket<T>(_ body: (Int32) throws -> T) throws -> T {
        let fd = try check(socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0), "socket")
        defer { close(fd) }
        return try body(fd)
    }

    private static func up(_ name: String) throws {
        try withControlSocket { fd in
            var r = request(name)
            try check(ioctl(fd, UInt(SIOCGIFFLAGS), &r), "SIOCGIFFLAGS \(name)")
            r.ifr_ifru.ifru_flags |= Int16(IFF_UP)
            try check(ioctl(fd, UInt(SIOCSIFFLAGS), &r), "SIOCSIFFLAGS \(name) up")
        }
    }

    private static func stalledLink() throws -> Int32 {
        let name = "hbstall0"
        let tun = try check(open("/dev/net/tun", O_RDWR | O_CLOEXEC), "open /dev/net/tun")
        do {
            var r = request(name)
            r.ifr_ifru.ifru_flags = 0x0002 | 0x1000  // IFF_TAP | IFF_NO_PI (linux/if_tun.h)
            try check(ioctl(tun, 0x4004_54ca, &r), "TUNSETIFF \(name)")  // _IOW('T', 202, int)
            try withControlSocket { fd in
                for (call, value) in [(SIOCSIFADDR, "192.0.2.100"), (SIOCSIFNETMASK, "255.255.255.0")] {
                    var r = request(name)
                    withUnsafeMutableBytes(of: &r.ifr_ifru) { $0.storeBytes(of: ipv4(value, 0), as: sockaddr_in.self) }
                    try check(ioctl(fd, UInt(call), &r), "ioctl \(call) \(name) \(value)")
                }
            }
            try up(name)
            // Ask once, then wait an hour before asking again: the neighbour stays INCOMPLETE
            // (and its queue full of our replies) for the whole run.
            let path = "/proc/sys/net/ipv4/neigh/\(name)/retrans_time_ms"
            let fd = try check(open(path, O_WRONLY | O_CLOEXEC), "open \(path)")
            defer { close(fd) }
            let value = "3600000\n"
            try check(Int32(value.withCString { write(fd, $0, strlen($0)) }), "write \(path)")
        } catch {
            close(tun)
            throw error
        }
        return tun
    }
}
