/// What the kernel said about where a received datagram went (IP_PKTINFO, IPV6_PKTINFO),
/// as read, before any policy. The socket layer fills it; `arrival` decides.
package struct PacketInfo: Sendable, Equatable {
    /// IP_PKTINFO was present.
    package var hasIPv4 = false
    /// `ipi_addr`: the IPv4 header's destination, filled when the datagram is read.
    package var headerDestination: UInt32 = 0
    /// `ipi_spec_dst`: the local address the kernel would answer from, filled when the
    /// datagram is queued, so 0.0.0.0 for one queued before IP_PKTINFO was set.
    package var localAddress: UInt32 = 0
    /// IPV6_PKTINFO was present: the header's destination (IPv4 ones v4-mapped, so IPv4
    /// here) and the interface it came in on.
    package var ipv6Destination: IPAddress?
    package var ipv6Interface: UInt32 = 0

    package init() {}

    /// No control message: a socket that did not ask, or a kernel that did not say.
    package static let none = PacketInfo()
}

/// The local address a reply leaves from, and for a link-local one, the interface.
public struct LocalSource: Hashable, Sendable {
    public let address: IPAddress
    public let interface: UInt32

    public init(_ address: IPAddress, interface: UInt32 = 0) {
        self.address = address
        self.interface = interface
    }
}

/// Where a datagram was sent: to one host, or to many at once.
public enum DestinationKind: Sendable, Equatable {
    case unicast
    /// 255.255.255.255 or a subnet's broadcast address.
    case broadcast
    /// 224.0.0.0/4 or ff00::/8.
    case multicast
}

/// The PKTINFO policy: what kind of destination a datagram had, and which local address
/// a reply should leave from.
public struct Arrival: Sendable, Equatable {
    public var destination: DestinationKind
    /// nil: let routing pick (a socket bound to one address has only that one).
    public var replySource: LocalSource?
    /// Which of its service's sockets it came through, the one to answer through: 0 but
    /// where several sockets share one service's state (chat with `--workers N` or several
    /// addresses), where the worker numbers them.
    public var socket: UInt16 = 0

    public init(destination: DestinationKind = .unicast, replySource: LocalSource? = nil) {
        self.destination = destination
        self.replySource = replySource
    }

    /// Decides from what the kernel said.
    ///
    /// The header's destination tells multicast and the limited broadcast by address alone.
    /// A subnet's (directed) broadcast needs the netmask, which a sandboxed daemon cannot
    /// read; but Linux answers it for us: for a datagram to one of its own unicast
    /// addresses, `ipi_spec_dst` is that very address (fib_compute_spec_dst), while for a
    /// broadcast it is some other local address. So a destination that differs from the
    /// local address was a broadcast.
    package init(_ info: PacketInfo) {
        self.init()
        if info.hasIPv4 {
            let header = IPAddress.v4(info.headerDestination)
            if header.isMulticast {
                destination = .multicast
            } else if header.isLimitedBroadcast
                || (info.localAddress != 0 && info.localAddress != info.headerDestination)
            {
                destination = .broadcast
            } else {
                // 0.0.0.0 there: queued before IP_PKTINFO was set (the datagram that started
                // hellod, without PassPacketInfo=yes); the header's destination is the address.
                replySource = LocalSource(.v4(info.localAddress != 0 ? info.localAddress : info.headerDestination))
            }
        } else if let header = info.ipv6Destination {
            if header.isMulticast {
                destination = .multicast
            } else if header.isLimitedBroadcast {
                destination = .broadcast
            } else if !header.isUnspecified {
                // The interface matters only for link-local addresses (fe80::/10).
                replySource = LocalSource(header, interface: header.isLinkLocal ? info.ipv6Interface : 0)
            }
        }
    }
}
