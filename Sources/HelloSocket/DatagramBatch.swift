import CShims
import Glibc
import HelloCore
import SystemPackage

/// One server socket's batch: up to `capacity` datagrams in by recvmmsg, their replies out
/// by sendmmsg. Everything is allocated at start-up; serving a batch only re-points it.
///
///     kernel -> receive() -> request(i) -> ReplyEngine writes a ReplyPlan -> send(plan) -> kernel
public final class DatagramBatch {
    public let capacity: Int
    public let maxDatagram: Int
    public let options: Options

    public struct Options: Sendable {
        /// The socket is bound to a wildcard address: ask each datagram which local address
        /// it came to and send its reply from there.
        public var replyFromLocalAddress = false
        /// Coalesce same-length replies to one peer into one UDP_SEGMENT send.
        public var segmentation = true
        public init() {}
    }

    private let incoming: MessageVector
    /// Every datagram's first `headSize` bytes land in `heads`, side by side; the rest of
    /// a longer one in its slot of `tails`. Both are reserved, not touched: a page no
    /// datagram reaches costs no memory, so small datagrams cost a few pages, not one
    /// 64 KiB slot's first page each.
    private let headSize: Int
    private let heads: UnsafeMutableRawPointer
    private let tails: UnsafeMutableRawPointer?
    private let locals: UnsafeMutablePointer<hs_received_control>
    private let outgoing: MessageVector
    /// For each outgoing message: the first plan entry it carries and how many.
    private let firstEntry: UnsafeMutablePointer<Int32>
    private let entryCount: UnsafeMutablePointer<Int32>
    /// The order to answer the last batch in (see `orderByPeer`).
    public let order: UnsafeMutablePointer<Int>
    private var grouping: PeerGrouping
    /// Keys the peer hash, so no sender can aim its addresses at one probe run.
    private let hashSeed = UInt64.random(in: 0...UInt64.max)
    private let planner: SegmentPlanner

    /// Room for the control messages of one datagram: IP_PKTINFO and IPV6_PKTINFO in, a
    /// PKTINFO and UDP_SEGMENT out.
    static let controlSize = 128
    /// Names, greetings and probes fit in the head; longer datagrams continue in the tail.
    static let largestHead = 512

    public init(capacity: Int, maxDatagram: Int, options: Options) {
        self.capacity = capacity
        self.maxDatagram = maxDatagram
        self.options = options
        headSize = min(maxDatagram, Self.largestHead)
        let tailSize = maxDatagram - headSize
        incoming = MessageVector(capacity: capacity, names: true,
                                 controlSize: options.replyFromLocalAddress ? Self.controlSize : 0,
                                 buffersPerMessage: tailSize > 0 ? 2 : 1)
        heads = .allocate(byteCount: capacity * max(headSize, 1), alignment: 64)
        tails = tailSize > 0 ? .allocate(byteCount: capacity * tailSize, alignment: 64) : nil
        locals = .allocate(capacity: capacity)
        locals.initialize(repeating: hs_received_control(), count: capacity)
        outgoing = MessageVector(capacity: capacity, names: false, controlSize: Self.controlSize)
        firstEntry = .allocate(capacity: capacity)
        entryCount = .allocate(capacity: capacity)
        for i in 0..<capacity {
            incoming.setBuffer(i, heads + i * headSize, length: headSize)
            if let tails {
                incoming.setSecondBuffer(i, tails + i * tailSize, length: tailSize)
            }
        }
        grouping = PeerGrouping(capacity: capacity)
        order = grouping.order
        planner = SegmentPlanner(maxSegments: options.segmentation ? Int(HS_UDP_MAX_SEGMENTS) : 1)
    }

    deinit {
        heads.deallocate()
        tails?.deallocate()
        locals.deallocate()
        firstEntry.deallocate()
        entryCount.deallocate()
    }

    // MARK: Receiving

    /// Reads up to `capacity` queued datagrams without waiting: 0 when none is queued.
    @inline(__always)
    public func receive(from socket: DatagramSocket) throws(SocketError) -> Int {
        try incoming.receive(from: socket, count: capacity)
    }

    /// Datagram `i` of the last `receive`, as the reply rules see it.
    @inline(__always)
    public func request(_ i: Int) -> Request {
        let length = incoming.length(i)
        let tailSize = maxDatagram - headSize
        return Request(
            payload: UnsafeRawBufferPointer(start: heads + i * headSize, count: min(length, headSize)),
            continuation: UnsafeRawBufferPointer(start: tails.map { $0 + i * tailSize }, count: max(length - headSize, 0)),
            truncated: incoming.isTruncated(i),
            peer: PeerAddress(sockaddr: incoming.names! + i)
        )
    }

    /// Reads which local address each of datagrams `0..<count` came to (PKTINFO), for
    /// replies from a wildcard socket.
    @inline(__always)
    public func readLocalAddresses(count: Int) {
        guard incoming.control != nil else { return }
        for i in 0..<count {
            withUnsafePointer(to: incoming.headers[i].msg_hdr) { hs_parse_control($0, locals + i) }
        }
    }

    /// Fills `order` for datagrams `0..<count`: arrival order without segmentation; else
    /// grouped by peer (first-seen peer first), each peer's datagrams in arrival order, so
    /// each peer's replies sit side by side in the plan. O(count).
    @inline(__always)
    public func orderByPeer(count: Int) {
        guard options.segmentation else {
            grouping.arrivalOrder(count: count)
            return
        }
        let names = incoming.names!
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

    /// Datagrams `a` and `b` came from the same address and port.
    @inline(__always)
    private func samePeer(_ a: Int, _ b: Int) -> Bool {
        let names = incoming.names!
        return hs_sockaddr_equal(names + a, incoming.headers[a].msg_hdr.msg_namelen,
                                 names + b, incoming.headers[b].msg_hdr.msg_namelen)
    }

    // MARK: Sending

    public struct SendOutcome: Sendable {
        /// Replies the kernel took.
        public var sent = 0
        /// Replies it refused after the retries.
        public var failed = 0
        /// Sends that carried several replies as UDP segments.
        public var segmentedSends = 0
        /// Segmented sends the kernel refused, then sent again as plain datagrams.
        public var segmentationFallbacks = 0
        /// The last refusal, for the logs.
        public var lastError: Errno?
    }

    /// How long a send may wait for room in a full send buffer, and how often, per batch:
    /// bounded, so a stuck peer path cannot stall the loop.
    static let sendWait: UInt64 = 10_000_000
    /// What the kernel says when it will not segment a send, as opposed to refusing the
    /// destination: EIO (no checksum offload, IPsec), EINVAL and EMSGSIZE (segments too
    /// large for the path MTU).
    static let segmentationRefusals: [Errno] = [.ioError, .invalidArgument, .messageTooLong]
    static let sendWaitsPerBatch = 3

    /// Sends every reply of `plan`, in order. Never waits longer than the bounded retries.
    public func send(_ plan: borrowing ReplyPlan, via socket: DatagramSocket) -> SendOutcome {
        var outcome = SendOutcome()
        var messages = buildMessages(plan, from: 0, plainThrough: -1, slot: 0)
        var next = 0
        var waits = 0
        while next < messages {
            do {
                if let taken = try outgoing.send(via: socket, next..<messages) {
                    for m in next..<next + taken {
                        outcome.sent += Int(entryCount[m])
                        if entryCount[m] > 1 { outcome.segmentedSends += 1 }
                    }
                    next += taken
                } else if waits < Self.sendWaitsPerBatch {
                    // A full send buffer: wait for room, a bounded number of times.
                    waits += 1
                    _ = try? socket.wait(for: Int16(POLLOUT), timeout: Self.sendWait)
                } else {
                    outcome.lastError = .resourceTemporarilyUnavailable
                    for m in next..<messages { outcome.failed += Int(entryCount[m]) }
                    next = messages
                }
            } catch {
                if entryCount[next] > 1 && Self.segmentationRefusals.contains(error.errno) {
                    // The kernel refused this segmented send (device without checksum
                    // offload, IPsec, path MTU): send its replies again one by one.
                    outcome.segmentationFallbacks += 1
                    let first = Int(firstEntry[next])
                    messages = buildMessages(plan, from: first, plainThrough: first + Int(entryCount[next]) - 1, slot: next)
                } else {
                    // The destination is refused (a firewall, no route): every reply this
                    // message carries is lost; the rest of the batch still goes.
                    outcome.lastError = error.errno
                    outcome.failed += Int(entryCount[next])
                    next += 1
                }
            }
        }
        return outcome
    }

    /// Fills outgoing messages from `slot` on with the plan's entries from `entry` on, and
    /// returns the message count. `planner` decides which entries share a segmented send;
    /// none at or before `plainThrough` does.
    private func buildMessages(_ plan: borrowing ReplyPlan, from entry: Int, plainThrough: Int, slot: Int) -> Int {
        let entries = plan.entries
        let names = incoming.names!
        var e = entry
        var m = slot
        while e < entries.count {
            let send = planner.send(from: e, of: entries, plainThrough: plainThrough,
                                    largestPayload: { PeerAddress(sockaddr: names + $0).largestPayload },
                                    sameRoute: { sameRoute($0, $1) })
            let first = entries[e]
            let request = Int(first.request)
            outgoing.setBuffer(m, plan.buffer + Int(first.offset), length: send.bytes)
            var header = outgoing.headers[m].msg_hdr
            header.msg_name = UnsafeMutableRawPointer(names + request)
            header.msg_namelen = incoming.headers[request].msg_hdr.msg_namelen
            let control = outgoing.controlBuffer(m)!
            var used = 0
            if options.replyFromLocalAddress {
                used = writeSource(of: request, control)
            }
            if send.count > 1 {
                used = hs_put_segment_size(control, used, outgoing.controlSize, UInt16(first.length))
            }
            header.msg_control = used > 0 ? control : nil
            header.msg_controllen = used
            header.msg_flags = 0
            outgoing.headers[m].msg_hdr = header
            firstEntry[m] = Int32(e)
            entryCount[m] = Int32(send.count)
            m += 1
            e += send.count
        }
        return m
    }

    /// Writes the control message that makes request `i`'s reply leave from the address it
    /// came to; returns the bytes used.
    @inline(__always)
    private func writeSource(of i: Int, _ control: UnsafeMutableRawPointer) -> Int {
        let local = locals[i]
        let toIPv4 = PeerAddress(sockaddr: incoming.names! + i).family == .v4
        if toIPv4 && local.has_local4 {
            return hs_put_source4(control, 0, outgoing.controlSize, local.local4)
        }
        if local.has_local6 {
            // The interface matters only for link-local addresses (fe80::/10).
            let linkLocal = local.local6.__in6_u.__u6_addr8.0 == 0xfe && local.local6.__in6_u.__u6_addr8.1 & 0xc0 == 0x80
            return hs_put_source6(control, 0, outgoing.controlSize, local.local6, linkLocal ? local.ifindex6 : 0)
        }
        return 0
    }

    /// Replies to requests `a` and `b` can share a segmented send: same peer, same source.
    @inline(__always)
    private func sameRoute(_ a: Int, _ b: Int) -> Bool {
        if a == b { return true }
        guard samePeer(a, b) else { return false }
        guard options.replyFromLocalAddress else { return true }
        let x = locals[a], y = locals[b]
        return x.has_local4 == y.has_local4 && x.local4.s_addr == y.local4.s_addr
            && x.has_local6 == y.has_local6
            && withUnsafeBytes(of: x.local6) { p in withUnsafeBytes(of: y.local6) { q in p.elementsEqual(q) } }
    }
}
