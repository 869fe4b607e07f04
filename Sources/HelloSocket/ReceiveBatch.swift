import CShims
import Glibc
import HelloDatagram

/// Datagrams in: up to `capacity` a recvmmsg, into buffers allocated at start-up and only
/// re-pointed afterwards (after swift-nio's DatagramVectorReadManager). Knows addresses
/// and control messages, no protocol: each datagram goes out as a `Datagram`.
@usableFromInline package final class ReceiveBatch {
    package let capacity: Int
    package let maxDatagram: Int
    private let messages: MessageVector
    /// Every datagram's first `headSize` bytes land in `heads`, side by side; the rest of
    /// a longer one in its slot of `tails`. Both are reserved, not touched: a page no
    /// datagram reaches costs no memory, so small datagrams cost a few pages, not one
    /// 64 KiB slot's first page each.
    @usableFromInline let headSize: Int
    @usableFromInline let tailSize: Int
    @usableFromInline let heads: UnsafeMutableRawPointer
    @usableFromInline let tails: UnsafeMutableRawPointer?
    /// One thread owns a batch: no dynamic exclusivity check per datagram.
    @exclusivity(unchecked) private var grouping: PeerGrouping
    private let groupByPeer: Bool
    /// The socket hands trains over coalesced (UDP_GRO): each receive is looked at for
    /// them, and for cut ones, before its datagrams are handed out.
    @usableFromInline package let coalescing: Bool
    /// With `coalescing`, the full length of each cut receive of the last batch (recvmmsg's
    /// MSG_TRUNC says it), so that a cut train counts every segment it lost.
    private let fullLengths: UnsafeMutablePointer<Int>?
    /// The last receive held a coalesced one: `forEachDatagram` must hand its datagrams
    /// out, not `datagram(_:)`.
    @inlinable package var hasTrains: Bool { coalescing && foundTrains }
    /// Read through `hasTrains`: a socket without GRO never looks at it (read from another
    /// module, it cost a dynamic exclusivity check per batch despite the attribute).
    @exclusivity(unchecked) @usableFromInline package private(set) var foundTrains = false
    /// Keys the peer hash, so no sender can aim its addresses at one probe run.
    private let hashSeed = UInt64.random(in: 0...UInt64.max)

    /// Room for the control messages of one datagram: IP_PKTINFO and IPV6_PKTINFO.
    static let controlSize = 128
    /// Names, greetings and probes fit in the head; longer datagrams continue in the tail.
    static let largestHead = 512
    /// The longest a coalesced receive can be: one IPv6 packet's UDP payload (65535 bytes
    /// less the UDP header; IPv4's is shorter). With slots shorter than that, a train could
    /// be cut: coalescing takes a `maxDatagram` this large.
    package static let largestCoalesced = 65527

    /// A batch of up to `capacity` datagrams of up to `maxDatagram` bytes (a longer one is
    /// cut and marked truncated). With `groupByPeer`, `orderByPeer` puts each peer's
    /// datagrams side by side, so their replies can share a segmented send. With
    /// `packetInfo`, room for the PKTINFO control messages the socket was asked for. With
    /// `coalescing`, room for UDP_GRO's, and each receive is split into its segments.
    @usableFromInline package init(
        capacity: Int, maxDatagram: Int, groupByPeer: Bool = true, packetInfo: Bool = true, coalescing: Bool = false
    ) {
        self.capacity = capacity
        self.maxDatagram = maxDatagram
        self.groupByPeer = groupByPeer
        self.coalescing = coalescing
        fullLengths = coalescing ? .allocate(capacity: capacity) : nil
        fullLengths?.initialize(repeating: 0, count: capacity)
        headSize = min(maxDatagram, Self.largestHead)
        tailSize = maxDatagram - headSize
        messages = MessageVector(
            capacity: capacity, names: true, controlSize: packetInfo || coalescing ? Self.controlSize : 0,
            buffersPerMessage: tailSize > 0 ? 2 : 1)
        heads = .allocate(byteCount: capacity * max(headSize, 1), alignment: 64)
        tails = tailSize > 0 ? .allocate(byteCount: capacity * tailSize, alignment: 64) : nil
        for i in 0..<capacity {
            messages.setBuffer(i, heads + i * headSize, length: headSize)
            if let tails {
                messages.setSecondBuffer(i, tails + i * tailSize, length: tailSize)
            }
        }
        grouping = PeerGrouping(capacity: capacity)
    }

    deinit {
        heads.deallocate()
        tails?.deallocate()
        fullLengths?.deallocate()
    }

    /// Reads up to `limit` queued datagrams (at most `capacity`) without waiting: 0 when
    /// none is queued. `waiting`: waits for the first (`MessageVector.receive`).
    @inline(__always)
    @usableFromInline package func receive(
        from socket: DatagramSocket, waiting: Bool = false, upTo limit: Int = .max
    ) throws(SocketError) -> Int {
        let asked = min(limit, capacity)
        guard coalescing else { return try messages.receive(from: socket, count: asked, waiting: waiting) }
        foundTrains = false
        let count = try messages.receive(from: socket, count: asked, waiting: waiting, flags: Int32(MSG_TRUNC))
        foundTrains = findTrains(count)
        return count
    }

    /// Whether any of receives `0..<count` was coalesced. A datagram alone and whole
    /// carries no control message but PKTINFO: on a socket bound to one address, plain
    /// traffic costs two loads, an or and a test a datagram here.
    @inline(__always)
    private func findTrains(_ count: Int) -> Bool {
        var found = false
        var header = messages.headers
        for i in 0..<count {
            let special =
                header.pointee.msg_hdr.msg_controllen | Int(header.pointee.msg_hdr.msg_flags & Int32(MSG_TRUNC))
            if special != 0 && isTrain(i) { found = true }
            header += 1
        }
        return found
    }

    /// Whether receive `i`, which carries a control message or was cut, was coalesced. A
    /// cut one's full length (which MSG_TRUNC made recvmmsg return) is put aside, its
    /// length set back to what was read.
    @inline(never)
    private func isTrain(_ i: Int) -> Bool {
        if messages.isTruncated(i) {
            fullLengths![i] = Int(messages.headers[i].msg_len)
            messages.headers[i].msg_len = UInt32(min(fullLengths![i], maxDatagram))
        }
        return segmentSize(i) > 0
    }

    /// The segment size of receive `i` if it was coalesced, else 0.
    @inline(__always)
    private func segmentSize(_ i: Int) -> Int {
        guard messages.headers[i].msg_hdr.msg_controllen > 0 else { return 0 }
        // msg_hdr is hs_mmsghdr's first member.
        return Int(
            hs_read_gro_segment_size(UnsafeRawPointer(messages.headers + i).assumingMemoryBound(to: msghdr.self)))
    }

    /// Hands `body` each datagram of the last receive's `count`, in `order`: a coalesced
    /// receive's segments one by one, each its own `Datagram` with the receive's peer and
    /// arrival, the last maybe shorter. Of a cut train, the segment cut carries what was
    /// read and each one lost after it nothing, all marked truncated: each is counted.
    /// Returns how many datagrams that was.
    ///
    /// Inlinable, so that the caller's `body` is inlined into the loop over a train's
    /// segments: a segment costs its slice's arithmetic, not a closure call and a copy of
    /// its `Datagram`. What a receive needs once (its datagram, its segmentation) is not;
    /// a batch without a train (all but trains) costs one test more than a plain loop.
    @inlinable @inline(__always)
    package func forEachDatagram(count: Int, _ body: (Datagram) -> Void) -> Int {
        guard hasTrains else {
            for k in 0..<count { body(datagram(order(k))) }
            return count
        }
        var datagrams = 0
        for k in 0..<count {
            let i = order(k)
            var segment = datagram(i)
            guard let train = segmentation(i) else {
                body(segment)
                datagrams += 1
                continue
            }
            var offset = 0
            while offset < train.length {
                let end = min(offset + train.size, train.length)
                let readEnd = min(end, train.read)
                (segment.payload, segment.continuation) = bytes(i, from: min(offset, readEnd), to: readEnd)
                segment.truncated = end > train.read
                body(segment)
                datagrams += 1
                offset = end
            }
        }
        return datagrams
    }

    /// How receive `i` splits into segments.
    @usableFromInline package struct Segmentation {
        /// Each segment's length, the last one's at most.
        @usableFromInline let size: Int
        /// The bytes read, and the receive's full length (longer if it was cut).
        @usableFromInline let read: Int
        @usableFromInline let length: Int
    }

    /// Receive `i`'s segments, if it is a train of more than one; nil if it is one datagram.
    @usableFromInline package func segmentation(_ i: Int) -> Segmentation? {
        let size = segmentSize(i)
        let read = messages.length(i)
        let length = messages.isTruncated(i) ? fullLengths![i] : read
        guard size > 0 && size < length else { return nil }
        return Segmentation(size: size, read: read, length: length)
    }

    /// Bytes `start..<end` of receive `i`, as a payload and a continuation: where they
    /// straddle the head's end, the head's part and the tail's.
    @inlinable @inline(__always)
    func bytes(_ i: Int, from start: Int, to end: Int) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        let head = heads + i * headSize
        guard end > headSize, let tails else {
            return (UnsafeRawBufferPointer(start: head + start, count: end - start), none)
        }
        let tail = tails + i * tailSize
        guard start < headSize else {
            return (UnsafeRawBufferPointer(start: tail + (start - headSize), count: end - start), none)
        }
        return (
            UnsafeRawBufferPointer(start: head + start, count: headSize - start),
            UnsafeRawBufferPointer(start: tail, count: end - headSize)
        )
    }

    /// Datagram `i` of the last `receive`.
    @inline(__always)
    @usableFromInline package func datagram(_ i: Int) -> Datagram {
        let length = messages.length(i)
        let hasControl = messages.headers[i].msg_hdr.msg_controllen > 0
        return Datagram(
            payload: UnsafeRawBufferPointer(start: heads + i * headSize, count: min(length, headSize)),
            continuation: UnsafeRawBufferPointer(
                start: tails.map { $0 + i * tailSize }, count: max(length - headSize, 0)),
            truncated: messages.isTruncated(i),
            peer: Endpoint(sockaddr: messages.names! + i),
            arrival: hasControl ? Arrival(packetInfo(i)) : Arrival()
        )
    }

    /// What the control messages of datagram `i` said about its destination.
    @inline(__always)
    func packetInfo(_ i: Int) -> PacketInfo {
        var raw = hs_pktinfo()
        withUnsafePointer(to: messages.headers[i].msg_hdr) { hs_read_pktinfo($0, &raw) }
        var info = PacketInfo()
        if raw.has_ipv4 {
            info.hasIPv4 = true
            info.headerDestination = UInt32(bigEndian: raw.ipv4.ipi_addr.s_addr)
            info.localAddress = UInt32(bigEndian: raw.ipv4.ipi_spec_dst.s_addr)
        }
        if raw.has_ipv6 {
            let address = withUnsafeBytes(of: raw.ipv6.ipi6_addr) {
                IPAddress.v6(
                    high: UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)),
                    low: UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            info.ipv6Destination = address
            info.ipv6Interface = raw.ipv6.ipi6_ifindex
        }
        return info
    }

    /// The index of the `k`th datagram to handle, after `orderByPeer`.
    @inline(__always)
    @usableFromInline package func order(_ k: Int) -> Int { grouping.index(k) }

    /// Orders datagrams `0..<count`: grouped by peer (first-seen peer first), each peer's in
    /// arrival order, or just arrival order without `groupByPeer`. O(count).
    @inline(__always)
    @usableFromInline package func orderByPeer(count: Int) {
        guard groupByPeer else {
            grouping.arrivalOrder(count: count)
            return
        }
        let names = messages.names!
        let seed = hashSeed
        grouping.group(count: count, hash: { Self.hash(names + $0, seed: seed) }, sameKey: { samePeer($0, $1) })
    }

    /// A hash of the address and port of a kernel-written IPv4 or IPv6 sockaddr.
    @inline(__always)
    private static func hash(_ name: UnsafePointer<sockaddr_storage>, seed: UInt64) -> UInt64 {
        let raw = UnsafeRawPointer(name)
        var h = PeerGrouping.mix(seed ^ raw.load(as: UInt64.self))  // family, port, (IPv4 address)
        if name.pointee.ss_family == sa_family_t(AF_INET6) {
            h = PeerGrouping.mix(h ^ raw.load(fromByteOffset: 8, as: UInt64.self))
            h = PeerGrouping.mix(h ^ raw.load(fromByteOffset: 16, as: UInt64.self))
        }
        return h
    }

    /// Datagrams `a` and `b` came from the same address and port: the kernel wrote both
    /// names, so equal bytes are equal addresses. An IPv4 name (16 bytes) is two words, an
    /// IPv6 one (28) three and a half: compared in place, where memcmp cost a call a datagram.
    @inline(__always)
    private func samePeer(_ a: Int, _ b: Int) -> Bool {
        let length = Int(messages.headers[a].msg_hdr.msg_namelen)
        guard length == messages.headers[b].msg_hdr.msg_namelen else { return false }
        let (x, y) = (UnsafeRawPointer(messages.names! + a), UnsafeRawPointer(messages.names! + b))
        switch length {
        case MemoryLayout<sockaddr_in>.size:
            return x.load(as: UInt64.self) == y.load(as: UInt64.self)
                && x.load(fromByteOffset: 8, as: UInt64.self) == y.load(fromByteOffset: 8, as: UInt64.self)
        case MemoryLayout<sockaddr_in6>.size:
            return x.load(as: UInt64.self) == y.load(as: UInt64.self)
                && x.load(fromByteOffset: 8, as: UInt64.self) == y.load(fromByteOffset: 8, as: UInt64.self)
                && x.load(fromByteOffset: 16, as: UInt64.self) == y.load(fromByteOffset: 16, as: UInt64.self)
                && x.load(fromByteOffset: 24, as: UInt32.self) == y.load(fromByteOffset: 24, as: UInt32.self)
        default:
            return memcmp(x, y, length) == 0
        }
    }
}
