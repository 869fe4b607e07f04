/// One send of an outbox's datagrams: `count` consecutive entries from `firstEntry`, `bytes` in
/// all. With more than one entry it is a segmented (UDP GSO) send, the kernel cutting the
/// bytes into datagrams of the first entry's length.
package struct PlannedSend: Sendable, Equatable {
    package var firstEntry: Int
    package var count: Int
    package var bytes: Int

    @inlinable
    package init(firstEntry: Int, count: Int, bytes: Int) {
        self.firstEntry = firstEntry
        self.count = count
        self.bytes = bytes
    }
}

/// Which consecutive datagrams of an outbox leave as one segmented send.
///
/// The kernel takes one buffer and a segment size, so the datagrams joined must sit side
/// by side, go the same way (destination and source address), all be the segment's length but for a
/// shorter last one, and fit in one UDP datagram together. An empty reply cannot be a
/// segment. Pure and allocation-free: the socket layer only fills headers from the result.
package struct SegmentPlanner: Sendable {
    /// The most segments in one send (the kernel's UDP_MAX_SEGMENTS); 1: no segmentation.
    package let maxSegments: Int

    package init(maxSegments: Int) {
        precondition(maxSegments >= 1)
        self.maxSegments = maxSegments
    }

    /// The send that starts at entry `first` (one of `entries`); the next one starts at
    /// `first + count`. `plainThrough`: entries up to this index go alone (the kernel
    /// refused them as segments once); -1 for none.
    @inlinable @inline(__always)
    package func send(from first: Int, of entries: UnsafeBufferPointer<Outgoing>, plainThrough: Int = -1) -> PlannedSend
    {
        let head = entries[first]
        let segment = Int(head.length)
        var count = 1
        var bytes = segment
        guard maxSegments > 1, first > plainThrough, segment > 0, head.headLength == 0 else {
            return PlannedSend(firstEntry: first, count: 1, bytes: bytes)
        }
        let limit = head.destination.largestPayload
        while first + count < entries.count, count < maxSegments {
            let next = entries[first + count]
            let length = Int(next.length)
            // Side by side first: the cheapest test, and the one a fan-out's repeated
            // datagrams (`Outbox.repeatDatagram`) fail.
            guard Int(next.offset) == Int(head.offset) + bytes, next.headLength == 0, length <= segment, length > 0,
                bytes + length <= limit, next.sharesRoute(with: head)
            else { break }
            count += 1
            bytes += length
            if length < segment { break }  // only the last segment may be shorter
        }
        return PlannedSend(firstEntry: first, count: count, bytes: bytes)
    }
}
