import HelloDatagram
import Testing

/// The PKTINFO policy: what the kernel said about a datagram's destination, and what
/// hellod makes of it (answer or not, and from which address).
@Suite struct ArrivalTests {
    /// IP_PKTINFO as the kernel fills it: `ipi_addr` (the header's destination) and
    /// `ipi_spec_dst` (the local address it would answer from).
    func ipv4(header: UInt32, local: UInt32) -> Arrival {
        var info = PacketInfo()
        info.hasIPv4 = true
        info.headerDestination = header
        info.localAddress = local
        return Arrival(info)
    }

    /// IPV6_PKTINFO: the header's destination and the interface it came in on.
    func ipv6(_ destination: IPAddress, interface: UInt32 = 0) -> Arrival {
        var info = PacketInfo()
        info.ipv6Destination = destination
        info.ipv6Interface = interface
        return Arrival(info)
    }

    let host: UInt32 = 0xc000_0201  // 192.0.2.1

    @Test func unicastIsAnsweredFromItsDestination() {
        #expect(ipv4(header: host, local: host) == Arrival(destination: .unicast, replySource: LocalSource(.v4(host))))
        #expect(ipv4(header: 0x7f00_0002, local: 0x7f00_0002).replySource == LocalSource(.v4(0x7f00_0002)))
    }

    @Test func aDirectedBroadcastIsToldByItsLocalAddress() {
        // 192.0.2.255: the kernel would answer from 192.0.2.1, not from the destination.
        #expect(ipv4(header: 0xc000_02ff, local: host) == Arrival(destination: .broadcast, replySource: nil))
        // Any destination the local address differs from, whatever it looks like.
        #expect(ipv4(header: 0x0a00_0007, local: host).destination == .broadcast)
    }

    @Test func theLimitedBroadcast() {
        #expect(ipv4(header: 0xffff_ffff, local: host) == Arrival(destination: .broadcast, replySource: nil))
        #expect(ipv4(header: 0xffff_ffff, local: 0) == Arrival(destination: .broadcast, replySource: nil))
    }

    @Test func ipv4Multicast() {
        for group: UInt32 in [0xe000_00fb, 0xefff_fffa, 0xe000_0001] {  // 224.0.0.251, 239.255.255.250, 224.0.0.1
            #expect(ipv4(header: group, local: host) == Arrival(destination: .multicast, replySource: nil))
            #expect(ipv4(header: group, local: group).destination == .multicast)
            #expect(ipv4(header: group, local: 0).destination == .multicast)
        }
        // Either side of 224.0.0.0/4: unicast.
        #expect(ipv4(header: 0xdfff_fffe, local: 0xdfff_fffe).destination == .unicast)
        #expect(ipv4(header: 0xf000_0001, local: 0xf000_0001).destination == .unicast)
    }

    @Test func aDatagramQueuedBeforePacketInfoWasAskedIsAnsweredFromTheHeadersDestination() {
        // spec_dst 0.0.0.0: filled when queued, and it was queued before IP_PKTINFO was set.
        #expect(
            ipv4(header: 0x7f00_0002, local: 0)
                == Arrival(destination: .unicast, replySource: LocalSource(.v4(0x7f00_0002))))
    }

    @Test func ipv6UnicastKeepsTheInterfaceOnlyForLinkLocal() {
        let global = IPAddress.v6(high: 0x2001_0db8_0000_0000, low: 1)
        #expect(
            ipv6(global, interface: 3) == Arrival(destination: .unicast, replySource: LocalSource(global, interface: 0))
        )
        let linkLocal = IPAddress.v6(high: 0xfe80 << 48, low: 0x0211_22ff_fe33_4455)
        #expect(
            ipv6(linkLocal, interface: 3)
                == Arrival(destination: .unicast, replySource: LocalSource(linkLocal, interface: 3)))
        let edge = IPAddress.v6(high: 0xfebf_ffff_ffff_ffff, low: 1)  // the last of fe80::/10
        #expect(ipv6(edge, interface: 4).replySource == LocalSource(edge, interface: 4))
        let siteLocal = IPAddress.v6(high: 0xfec0 << 48, low: 1)
        #expect(ipv6(siteLocal, interface: 4).replySource == LocalSource(siteLocal, interface: 0))
        let loopback = IPAddress.v6(high: 0, low: 1)
        #expect(ipv6(loopback, interface: 1).replySource == LocalSource(loopback, interface: 0))
    }

    @Test func ipv6Multicast() {
        let allNodes = IPAddress.v6(high: 0xff02 << 48, low: 1)  // ff02::1
        #expect(ipv6(allNodes, interface: 2) == Arrival(destination: .multicast, replySource: nil))
        #expect(ipv6(.v6(high: 0xff05 << 48, low: 0x1_0003), interface: 2).destination == .multicast)
    }

    @Test func aV4MappedDestinationIsIPv4() {
        // An IPv4 datagram on a dual-stack socket, told by IPV6_PKTINFO alone.
        let mapped = IPAddress.v6(high: 0, low: 0xffff_0000_0000 | UInt64(host))
        #expect(
            ipv6(mapped, interface: 2)
                == Arrival(destination: .unicast, replySource: LocalSource(.v4(host), interface: 0)))
        #expect(
            ipv6(.v6(high: 0, low: 0xffff_ffff_ffff), interface: 2)
                == Arrival(destination: .broadcast, replySource: nil))
        #expect(
            ipv6(.v6(high: 0, low: 0xffff_e000_00fb), interface: 2)
                == Arrival(destination: .multicast, replySource: nil))
    }

    @Test func ipv4PacketInfoDecidesWhenBothAreThere() {
        // A dual-stack socket with both options: IP_PKTINFO can tell a directed broadcast.
        var info = PacketInfo()
        info.hasIPv4 = true
        info.headerDestination = 0xc000_02ff
        info.localAddress = host
        info.ipv6Destination = .v6(high: 0, low: 0xffff_c000_02ff)
        info.ipv6Interface = 2
        #expect(Arrival(info) == Arrival(destination: .broadcast, replySource: nil))
    }

    @Test func withoutPacketInfoRoutingPicks() {
        #expect(Arrival(PacketInfo.none) == Arrival(destination: .unicast, replySource: nil))
        #expect(Arrival(PacketInfo()) == Arrival())
        #expect(ipv6(.v6(high: 0, low: 0), interface: 2) == Arrival(destination: .unicast, replySource: nil))
    }
}
