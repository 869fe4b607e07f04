import CShims
import Glibc
import HelloDatagram
import SystemPackage

/// Datagrams out: an outbox's datagrams by sendmmsg, runs of same-length datagrams to one
/// destination as one segmented (UDP GSO) send, each message with its destination and, on a
/// wildcard socket, the source address it must leave from. Everything is allocated at
/// start-up. A full send buffer gets a bounded wait, a refused segmented send goes again as
/// plain datagrams, and any other refusal loses only that message's datagrams. After an
/// EIO on a segmented send, this sender segments nothing any more.
@usableFromInline package final class SendBatch {
    package let capacity: Int
    package let options: Options

    @usableFromInline package struct Options: Sendable {
        /// The family of the socket (AF_INET, AF_INET6): on an IPv6 socket, IPv4
        /// destinations are written v4-mapped.
        package var socketFamily: Int32 = AF_INET6
        /// The socket is bound to a wildcard address: say which local address each datagram
        /// leaves from (its `source`), so a reply leaves from the address it was sent to.
        package var writeSourceAddress = false
        /// Join same-length datagrams to one destination in one UDP_SEGMENT send.
        package var segmentation = true
        package init() {}
    }

    private let messages: MessageVector
    /// For each message: the first outbox entry it carries and how many.
    private let firstEntry: UnsafeMutablePointer<Int32>
    private let entryCount: UnsafeMutablePointer<Int32>
    /// The runs of outbox entries (first, count) that the last `send` lost, written only on
    /// a refusal: the trace says which reply failed (`failed(entry:)`).
    private let lostRuns: UnsafeMutablePointer<(first: Int32, count: Int32)>
    @exclusivity(unchecked) private var lostRunCount = 0
    private let planner: SegmentPlanner
    /// Whether runs still become segmented sends: false from the start with
    /// `--no-gso`, and from the first EIO on a segmented send, which says the way out cannot
    /// segment (an IPsec route), for every peer: no send after it is tried segmented
    /// again (as wireguard-go does).
    @exclusivity(unchecked) package private(set) var segmenting: Bool

    /// Room for the control messages of one send: a PKTINFO and UDP_SEGMENT.
    static let controlSize = 128

    /// Sends of up to `capacity` datagrams (the outbox's capacity).
    @usableFromInline package init(capacity: Int, options: Options) {
        self.capacity = capacity
        self.options = options
        messages = MessageVector(capacity: capacity, names: true, controlSize: Self.controlSize, buffersPerMessage: 2)
        firstEntry = .allocate(capacity: capacity)
        entryCount = .allocate(capacity: capacity)
        lostRuns = .allocate(capacity: capacity)
        planner = SegmentPlanner(maxSegments: Int(HS_UDP_MAX_SEGMENTS))
        segmenting = options.segmentation
    }

    deinit {
        firstEntry.deallocate()
        entryCount.deallocate()
        lostRuns.deallocate()
    }

    @usableFromInline package struct Outcome: Sendable {
        /// Datagrams the kernel took.
        @usableFromInline package var sent = 0
        /// Datagrams it refused after the retries.
        @usableFromInline package var failed = 0
        /// Sends that carried several datagrams as UDP segments.
        @usableFromInline package var segmentedSends = 0
        /// Segmented sends the kernel refused, then sent again as plain datagrams.
        @usableFromInline package var segmentationFallbacks = 0
        /// This send's EIO turned segmentation off for good (see `segmenting`).
        @usableFromInline package var segmentationTurnedOff = false
        /// The last refusal, for the logs.
        @usableFromInline package var lastError: Errno?
    }

    /// How long a send may wait for room in a full send buffer, and how often, per batch:
    /// bounded, so a stuck peer path cannot stall the loop.
    static let sendWait: UInt64 = 10_000_000
    static let sendWaitsPerBatch = 3
    /// What the kernel says when it will not segment a send, as opposed to refusing the
    /// destination: EIO (the way out cannot segment: IPsec; before Linux 6.11 also a device
    /// without checksum offload), EINVAL and EMSGSIZE (that send's size: segments too large
    /// for the path MTU).
    static let segmentationRefusals: [Errno] = [.ioError, .invalidArgument, .messageTooLong]

    /// Sends every datagram of `outbox` (those to go through socket number `only`, if
    /// given: `Outgoing.socket`), in order. Never waits longer than the bounded retries.
    @usableFromInline package func send(_ outbox: borrowing Outbox, via socket: DatagramSocket, only: UInt16? = nil)
        -> Outcome
    {
        precondition(outbox.count <= capacity)
        var outcome = Outcome()
        lostRunCount = 0
        var count = buildMessages(outbox, from: 0, plainThrough: -1, slot: 0, only: only)
        var next = 0
        var waits = 0
        while next < count {
            do {
                if let taken = try messages.send(via: socket, next..<count) {
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
                    for m in next..<count { lose(m, &outcome) }
                    next = count
                }
            } catch {
                if entryCount[next] > 1 && Self.segmentationRefusals.contains(error.errno) {
                    // The kernel refused this segmented send: send its datagrams again one
                    // by one. EIO is about the path, not this send: stop segmenting.
                    outcome.segmentationFallbacks += 1
                    if error.errno == .ioError {
                        segmenting = false
                        outcome.segmentationTurnedOff = true
                    }
                    let first = Int(firstEntry[next])
                    count = buildMessages(
                        outbox, from: first, plainThrough: first + Int(entryCount[next]) - 1, slot: next,
                        only: only)
                } else {
                    // The destination is refused (a firewall, no route): every datagram this
                    // message carries is lost; the rest of the batch still goes.
                    outcome.lastError = error.errno
                    lose(next, &outcome)
                    next += 1
                }
            }
        }
        return outcome
    }

    /// Counts message `m`'s datagrams as failed, and remembers which they were.
    private func lose(_ m: Int, _ outcome: inout Outcome) {
        outcome.failed += Int(entryCount[m])
        lostRuns[lostRunCount] = (firstEntry[m], entryCount[m])
        lostRunCount += 1
    }

    /// Whether the last `send` lost outbox entry `entry` (the kernel refused it).
    @usableFromInline package func failed(entry: Int) -> Bool {
        (0..<lostRunCount).contains { lostRuns[$0].first <= entry && entry < lostRuns[$0].first + lostRuns[$0].count }
    }

    /// Fills messages from `slot` on with the outbox's entries from `entry` on, and returns
    /// the message count. The planner decides which entries share a segmented send; none
    /// at or before `plainThrough` does, and none to another socket than `only`.
    private func buildMessages(
        _ outbox: borrowing Outbox, from entry: Int, plainThrough: Int, slot: Int,
        only: UInt16?
    ) -> Int {
        let entries = outbox.entries
        let names = messages.names!
        var e = entry
        var m = slot
        while e < entries.count {
            // Read in place: an entry is larger than what one message needs of it.
            let first = entries.baseAddress! + e
            if let only, first.pointee.socket != only {
                e += 1
                continue
            }
            let offset = first.pointee.offset, length = first.pointee.length, headLength = first.pointee.headLength
            let bytes = UnsafeMutableRawPointer(
                mutating: outbox.bytes(of: first.pointee).baseAddress ?? UnsafeRawPointer(names))
            let header = messages.headers + m  // written in place, field by field
            // How many entries this message carries (several: a segmented send), and its bytes.
            var (count, total) = (1, Int(length))
            if headLength == 0 {
                // Only a datagram that the next one follows in the buffer can start a
                // segmented send: the planner is not asked about the rest (a fan-out's).
                if segmenting && e + 1 < entries.count && entries[e + 1].offset == offset + length {
                    let send = planner.send(from: e, of: entries, plainThrough: plainThrough)
                    (count, total) = (send.count, send.bytes)
                }
                messages.setBuffer(m, bytes, length: total)
                header.pointee.msg_hdr.msg_iovlen = 1
            } else {  // a head of its own, then the bytes it shares: never segmented
                messages.setBuffers(
                    m, UnsafeMutableRawPointer(mutating: outbox.head(of: first.pointee).baseAddress!),
                    length: Int(headLength), bytes, length: total)
                header.pointee.msg_hdr.msg_iovlen = 2
            }
            header.pointee.msg_hdr.msg_name = UnsafeMutableRawPointer(names + m)
            header.pointee.msg_hdr.msg_namelen = first.pointee.destination.write(
                to: names + m, socketFamily: options.socketFamily)
            let control = messages.controlBuffer(m)!
            var used = 0
            if options.writeSourceAddress, let source = first.pointee.source {
                used = Self.writeSource(source, control)
            }
            if count > 1 {
                used = hs_put_segment_size(control, used, Self.controlSize, UInt16(length))
            }
            header.pointee.msg_hdr.msg_control = used > 0 ? control : nil
            header.pointee.msg_hdr.msg_controllen = used
            header.pointee.msg_hdr.msg_flags = 0
            firstEntry[m] = Int32(e)
            entryCount[m] = Int32(count)
            m += 1
            e += count
        }
        return m
    }

    /// Writes the control message that makes a datagram leave from `source`; returns the
    /// bytes used. IPv4 sources go as IP_PKTINFO, also to v4-mapped peers of a dual-stack
    /// socket.
    @inline(__always)
    private static func writeSource(_ source: LocalSource, _ control: UnsafeMutableRawPointer) -> Int {
        let address = source.address
        if address.family == .v4 {
            return hs_put_source4(control, 0, controlSize, in_addr(s_addr: address.v4.bigEndian))
        }
        var local = in6_addr()
        withUnsafeMutableBytes(of: &local) {
            $0.storeBytes(of: address.high.bigEndian, as: UInt64.self)
            $0.storeBytes(of: address.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return hs_put_source6(control, 0, controlSize, local, source.interface)
    }
}
