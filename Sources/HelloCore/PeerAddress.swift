/// The address and port a datagram came from, in a form the reply rules can reason about
/// without touching a `sockaddr`: IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, how IPv4
/// peers appear on a dual-stack socket) are IPv4 here.
public struct PeerAddress: Hashable, Sendable {
    public enum Family: Sendable { case v4, v6 }

    public let family: Family
    public let port: UInt16
    /// IPv4: 0. IPv6: the first 64 bits, most significant first.
    public let high: UInt64
    /// IPv4: the address in the low 32 bits. IPv6: the last 64 bits.
    public let low: UInt64

    public static func v4(_ address: UInt32, port: UInt16) -> PeerAddress {
        PeerAddress(family: .v4, port: port, high: 0, low: UInt64(address))
    }

    /// An IPv6 address from its two halves; a v4-mapped one becomes IPv4.
    public static func v6(high: UInt64, low: UInt64, port: UInt16) -> PeerAddress {
        if high == 0 && low >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: low), port: port)
        }
        return PeerAddress(family: .v6, port: port, high: high, low: low)
    }

    /// The largest UDP payload this peer can be sent: 65535 minus the IP and UDP headers
    /// (20 + 8 over IPv4, 8 over IPv6, whose 40-byte header is not in its length field).
    public var largestPayload: Int {
        family == .v4 ? 65507 : 65527
    }

    public var isLoopback: Bool {
        switch family {
        case .v4: return low >> 24 == 127
        case .v6: return high == 0 && low == 1
        }
    }
}

extension PeerAddress: CustomStringConvertible {
    public var description: String {
        switch family {
        case .v4:
            let a = UInt32(truncatingIfNeeded: low)
            return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff):\(port)"
        case .v6:
            // Plain hextets without "::" compression: unambiguous, enough for logs and tests.
            let groups = (0..<8).map { i -> String in
                let half = i < 4 ? high : low
                return String(UInt16(truncatingIfNeeded: half >> (48 - 16 * UInt64(i % 4))), radix: 16)
            }
            return "[\(groups.joined(separator: ":"))]:\(port)"
        }
    }
}
