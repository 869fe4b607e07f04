import CShims
import Glibc
import HelloDatagram

/// An IPv4 or IPv6 socket address, stored the way the kernel takes it.
public struct SocketAddress: Sendable {
    public private(set) var storage = sockaddr_storage()
    public private(set) var length: socklen_t = 0

    /// An address the kernel wrote (recvmmsg, getsockname).
    public init(_ storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// A numeric IPv4 or IPv6 address (`127.0.0.1`, `::1`, `::`), or nil.
    public init?(ip: String, port: UInt16) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, ip, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            self.init(sin)
        } else if inet_pton(AF_INET6, ip, &v6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = v6
            self.init(sin6)
        } else {
            return nil
        }
    }

    init(_ sin: sockaddr_in) {
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin, as: sockaddr_in.self) }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    init(_ sin6: sockaddr_in6) {
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    }

    /// The dual-stack wildcard `[::]:port`: IPv6 and, through v4-mapped addresses, IPv4.
    public static func anyIPv6(port: UInt16) -> SocketAddress {
        SocketAddress(ip: "::", port: port)!
    }

    /// Parses `HOST:PORT` with a numeric host: `127.0.0.1:9999`, `[::1]:9999`,
    /// `0.0.0.0:9999`, `[::]:9999`; a bare `PORT` or `:PORT` means `[::]:PORT`.
    public init?(parsing text: String) {
        func port(_ digits: Substring) -> UInt16? {
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII) else { return nil }
            return UInt16(digits)
        }
        if let p = port(text[...]) ?? (text.hasPrefix(":") ? port(text.dropFirst()) : nil) {
            self = .anyIPv6(port: p)
        } else if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let p = port(rest.dropFirst()),
                let address = SocketAddress(ip: String(host), port: p), address.family == AF_INET6
            else { return nil }
            self = address
        } else if let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":"),
            let p = port(text[text.index(after: colon)...]),
            let address = SocketAddress(ip: String(text[..<colon]), port: p)
        {
            self = address
        } else {
            return nil
        }
    }

    /// Every address `host` resolves to (numeric or a name, through getaddrinfo).
    public static func resolve(host: String, port: UInt16) throws(ResolutionError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0 else {
            throw ResolutionError(host: host, code: status)
        }
        defer { freeaddrinfo(list) }
        var found: [SocketAddress] = []
        var entry = list
        while let info = entry?.pointee {
            if let addr = info.ai_addr, info.ai_family == AF_INET || info.ai_family == AF_INET6 {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) {
                    $0.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(info.ai_addrlen)))
                }
                found.append(SocketAddress(storage, length: info.ai_addrlen))
            }
            entry = info.ai_next
        }
        return found
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        switch family {
        case AF_INET, AF_INET6:
            // sin_port and sin6_port sit at the same offset, in network byte order.
            return withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
        default:
            return 0
        }
    }

    /// The address and port as a plain value.
    public var endpoint: Endpoint {
        withUnsafePointer(to: storage) { Endpoint(sockaddr: $0) }
    }

    /// `endpoint` as the kernel takes it on a socket of `family`: on an IPv6 socket, an
    /// IPv4 endpoint is written v4-mapped (`::ffff:a.b.c.d`).
    public init(_ endpoint: Endpoint, socketFamily family: Int32) {
        self.length = withUnsafeMutablePointer(to: &storage) { endpoint.write(to: $0, socketFamily: family) }
    }

    /// `0.0.0.0` or `::`: the socket accepts datagrams for every local address, so a reply
    /// must say which address it leaves from.
    public var isWildcard: Bool {
        switch family {
        case AF_INET:
            return withUnsafePointer(to: storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr == 0 }
            }
        case AF_INET6:
            return withUnsafeBytes(of: storage) { bytes in
                (8..<24).allSatisfy { bytes[$0] == 0 }  // sin6_addr
            }
        default:
            return false
        }
    }

    /// The address as text: `127.0.0.1`, `::1`.
    public var host: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withUnsafePointer(to: storage) { ss in
            switch Int32(ss.pointee.ss_family) {
            case AF_INET:
                ss.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    var a = $0.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
                }
            case AF_INET6:
                ss.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    var a = $0.pointee.sin6_addr
                    _ = inet_ntop(AF_INET6, &a, &text, socklen_t(text.count))
                }
            default:
                break
            }
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(SocketError) -> R)
        throws(SocketError) -> R
    {
        try withUnsafePointer(to: storage) { ss throws(SocketError) in
            try ss.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SocketError) in try body(sa, length) }
        }
    }
}

extension SocketAddress: CustomStringConvertible {
    /// `127.0.0.1:9999` or `[::1]:9999`.
    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

extension SocketAddress: Equatable {
    /// Two addresses the kernel wrote are equal when their first `length` bytes are.
    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.length == b.length
            && withUnsafeBytes(of: a.storage) { x in
                withUnsafeBytes(of: b.storage) { y in memcmp(x.baseAddress!, y.baseAddress!, Int(a.length)) == 0 }
            }
    }
}

/// A name that gave no address: getaddrinfo(3)'s own error code (EAI_*, not an errno), or 0
/// when it gave addresses of neither IPv4 nor IPv6.
public struct ResolutionError: Error, Equatable, CustomStringConvertible {
    public let host: String
    public let code: Int32

    public init(host: String, code: Int32) {
        self.host = host
        self.code = code
    }

    public var description: String {
        "cannot resolve \(host): \(code == 0 ? "no IPv4 or IPv6 address" : String(cString: gai_strerror(code)))"
    }
}

extension Endpoint {
    /// Reads a kernel-written IPv4 or IPv6 `sockaddr` (anything else reads as `0.0.0.0:0`).
    @inline(__always)
    public init(sockaddr ss: UnsafePointer<sockaddr_storage>) {
        let raw = UnsafeRawPointer(ss)
        switch Int32(ss.pointee.ss_family) {
        case AF_INET:
            let sin = raw.load(as: sockaddr_in.self)
            self = .v4(UInt32(bigEndian: sin.sin_addr.s_addr), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let port = UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            let high = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let low = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            self = .v6(high: high, low: low, port: port)
        default:
            self = .v4(0, port: 0)
        }
    }

    /// Writes this endpoint as a `sockaddr` for a socket of `family` and returns its
    /// length: IPv4 on an IPv6 socket goes v4-mapped.
    @inline(__always)
    package func write(to ss: UnsafeMutablePointer<sockaddr_storage>, socketFamily family: Int32) -> socklen_t {
        let raw = UnsafeMutableRawPointer(ss)
        if address.family == .v4 && family == AF_INET {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = address.v4.bigEndian
            raw.storeBytes(of: sin, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        raw.storeBytes(of: sin6, as: sockaddr_in6.self)
        let high = address.family == .v4 ? 0 : address.high
        let low = address.family == .v4 ? 0xffff_0000_0000 | UInt64(address.v4) : address.low
        raw.storeBytes(of: high.bigEndian, toByteOffset: 8, as: UInt64.self)
        raw.storeBytes(of: low.bigEndian, toByteOffset: 16, as: UInt64.self)
        return socklen_t(MemoryLayout<sockaddr_in6>.size)
    }
}
