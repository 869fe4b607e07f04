/// An IPv4 or IPv6 address as a plain value, without a `sockaddr`: what services, rate
/// limits and tests reason about. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, how IPv4
/// peers appear on a dual-stack socket) are IPv4 here.
public struct IPAddress: Hashable, Sendable {
    public enum Family: Sendable { case v4, v6 }

    public let family: Family
    /// IPv4: 0. IPv6: the first 64 bits, most significant first.
    public let high: UInt64
    /// IPv4: the address in the low 32 bits. IPv6: the last 64 bits.
    public let low: UInt64

    public static func v4(_ address: UInt32) -> IPAddress {
        IPAddress(family: .v4, high: 0, low: UInt64(address))
    }

    /// An IPv6 address from its two halves; a v4-mapped one becomes IPv4.
    public static func v6(high: UInt64, low: UInt64) -> IPAddress {
        if high == 0 && low >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: low))
        }
        return IPAddress(family: .v6, high: high, low: low)
    }

    /// The IPv4 address, host byte order (0 for IPv6).
    @inlinable public var v4: UInt32 { UInt32(truncatingIfNeeded: low) }

    public var isLoopback: Bool {
        switch family {
        case .v4: return low >> 24 == 127
        case .v6: return high == 0 && low == 1
        }
    }

    /// 224.0.0.0/4 or ff00::/8.
    public var isMulticast: Bool {
        switch family {
        case .v4: return v4 >> 28 == 0xe
        case .v6: return high >> 56 == 0xff
        }
    }

    /// 255.255.255.255, the limited broadcast.
    public var isLimitedBroadcast: Bool { family == .v4 && v4 == 0xffff_ffff }

    /// 0.0.0.0 or `::`.
    public var isUnspecified: Bool { high == 0 && low == 0 }

    /// fe80::/10: meaningful only with an interface.
    public var isLinkLocal: Bool { family == .v6 && high >> 54 == 0x3fa }

    /// Its first `length` bits, the rest zero, as its two halves (IPv4's in `low`): what a
    /// prefix of that length keeps. A length past the family's keeps every bit; 0 or less,
    /// none.
    @inlinable @inline(__always)
    public func prefixBits(_ length: Int) -> (high: UInt64, low: UInt64) {
        switch family {
        case .v4:
            let mask: UInt64 =
                length >= 32 ? 0xffff_ffff : length <= 0 ? 0 : (0xffff_ffff << UInt64(32 - length)) & 0xffff_ffff
            return (0, low & mask)
        case .v6:
            let highMask: UInt64 = length >= 64 ? ~0 : length <= 0 ? 0 : ~0 << UInt64(64 - length)
            let lowMask: UInt64 = length >= 128 ? ~0 : length <= 64 ? 0 : ~0 << UInt64(128 - length)
            return (high & highMask, low & lowMask)
        }
    }
}

extension IPAddress: CustomStringConvertible {
    public var description: String {
        switch family {
        case .v4:
            return "\(v4 >> 24).\(v4 >> 16 & 0xff).\(v4 >> 8 & 0xff).\(v4 & 0xff)"
        case .v6:
            // Plain hextets without "::" compression: unambiguous, enough for logs and tests.
            let groups = (0..<8).map { i -> String in
                let half = i < 4 ? high : low
                return String(UInt16(truncatingIfNeeded: half >> (48 - 16 * UInt64(i % 4))), radix: 16)
            }
            return groups.joined(separator: ":")
        }
    }
}

/// An address and a UDP port: where a datagram came from, or where one goes.
public struct Endpoint: Hashable, Sendable {
    public let address: IPAddress
    public let port: UInt16

    public init(_ address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public static func v4(_ address: UInt32, port: UInt16) -> Endpoint {
        Endpoint(.v4(address), port: port)
    }

    public static func v6(high: UInt64, low: UInt64, port: UInt16) -> Endpoint {
        Endpoint(.v6(high: high, low: low), port: port)
    }

    public var family: IPAddress.Family { address.family }

    /// The largest UDP payload this peer can be sent: 65535 minus the IP and UDP headers
    /// (20 + 8 over IPv4, 8 over IPv6, whose 40-byte header is not in its length field).
    public var largestPayload: Int {
        family == .v4 ? 65507 : 65527
    }

    /// The largest UDP payload that crosses any IPv6 path without fragmenting: its
    /// smallest MTU (1280) minus the IPv6 and UDP headers. IPv4 paths this narrow are
    /// rarer still.
    public static let largestPayloadOnAnyPath = 1232
}

extension Endpoint: CustomStringConvertible {
    /// `127.0.0.1:9999` or `[0:0:0:0:0:0:0:1]:9999`.
    public var description: String {
        family == .v4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

/// Addresses sharing their first `length` bits with `address`: `192.0.2.0/24`,
/// `2001:db8::/32`; a lone address is the prefix of its full length.
public struct IPPrefix: Hashable, Sendable {
    public let address: IPAddress
    public let length: Int

    /// nil if `length` is longer than the family's addresses.
    public init?(_ address: IPAddress, length: Int) {
        guard length >= 0 && length <= (address.family == .v4 ? 32 : 128) else { return nil }
        self.address = address
        self.length = length
    }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == address.family && other.prefixBits(length) == address.prefixBits(length)
    }
}

extension IPPrefix: CustomStringConvertible {
    public var description: String { "\(address)/\(length)" }
}
