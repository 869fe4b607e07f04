import HelloDatagram
import HelloReplies
import HelloService
import Testing

/// Two-part datagrams: a repeat with a head of its own (`repeatDatagram(_:ownHead:...)`),
/// its bytes after the head shared with the original's, and what the planner makes of it.
@Suite struct TwoPartDatagramTests {
    /// An outbox holding one 24-byte datagram (a 4-byte head, 20 bytes of body) to route 0,
    /// and `heads.count` repeats of it to routes 1, 2, ..., each with its own 4-byte head.
    func fanOut(_ heads: [[UInt8]], capacity: Int = 8) -> Outbox {
        var outbox = Outbox(capacity: capacity, largestDatagram: 100)
        let original: [UInt8] = [0xa0, 0xa1, 0xa2, 0xa3] + (1...20).map { UInt8($0) }
        original.withUnsafeBytes { _ = outbox.append($0, to: testRoute(0)) }
        for (r, head) in heads.enumerated() {
            head.withUnsafeBytes { outbox.next.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            let repeated = outbox.repeatDatagram(0, ownHead: head.count, to: testRoute(r + 1), from: nil)
            #expect(repeated)
        }
        return outbox
    }

    @Test func eachRepeatHasItsOwnHeadAndSharesTheRest() {
        let heads: [[UInt8]] = [[0xb1, 0xb1, 0xb1, 0xb1], [0xc2, 0xc2, 0xc2, 0xc2], [0xd3, 0xd3, 0xd3, 0xd3]]
        let outbox = fanOut(heads)
        let body = (1...20).map { UInt8($0) }
        #expect(outbox.count == 4)
        // The body once, and a head for each repeat: nothing else copied.
        #expect(outbox.bufferUsed == 24 + 3 * 4)
        let first = outbox[0]
        #expect(first.headLength == 0 && first.datagramLength == 24)
        #expect(outbox.datagram(first) == [0xa0, 0xa1, 0xa2, 0xa3] + body)
        for (k, head) in heads.enumerated() {
            let entry = outbox[k + 1]
            #expect(entry.destination == testRoute(k + 1))
            #expect(entry.headLength == 4 && entry.headOffset == Int32(24 + 4 * k))
            #expect(entry.offset == first.offset + 4 && entry.length == 20)  // the original's bytes, not a copy
            #expect(entry.datagramLength == 24)
            #expect(Array(outbox.head(of: entry)) == head)
            #expect(Array(outbox.bytes(of: entry)) == body)
            #expect(outbox.datagram(entry) == head + body)
        }
        // The original is untouched by its repeats' heads.
        #expect(outbox.datagram(outbox[0]) == [0xa0, 0xa1, 0xa2, 0xa3] + body)
    }

    /// A repeat needs an entry and room for its head; without either, nothing changes.
    @Test func aRepeatWithoutRoomAddsNothing() {
        var outbox = Outbox(capacity: 2, largestDatagram: 12)  // 24 bytes
        let datagram = [UInt8](repeating: 7, count: 22)
        datagram.withUnsafeBytes { _ = outbox.append($0, to: testRoute(0)) }
        var repeated = outbox.repeatDatagram(0, ownHead: 4, to: testRoute(1), from: nil)
        #expect(!repeated)  // 2 bytes of room left
        #expect(outbox.count == 1 && outbox.bufferUsed == 22)
        repeated = outbox.repeatDatagram(0, ownHead: 2, to: testRoute(1), from: nil)
        #expect(repeated)
        #expect(outbox.count == 2 && outbox.bufferUsed == 24)
        repeated = outbox.repeatDatagram(0, ownHead: 1, to: testRoute(2), from: nil)
        #expect(!repeated)  // no entry left
        #expect(outbox.count == 2 && outbox.bufferUsed == 24)
    }

    /// The kernel's segmentation takes one buffer: an entry with a head of its own is two,
    /// so it is never joined to a send, neither as its first nor as a follower, even where
    /// its bytes after the head would otherwise line up.
    @Test func theSegmentPlannerNeverJoinsAnEntryWithAHead() {
        // Three entries of 10 bytes side by side to one route: one segmented send...
        let plain = (0..<3).map { Outgoing(offset: Int32(10 * $0), length: 10, destination: testRoute(0)) }
        #expect(plannedSends(plain) == [PlannedSend(firstEntry: 0, count: 3, bytes: 30)])
        // ...but with a head on the middle one, three sends: it neither follows nor leads.
        var headed = plain
        (headed[1].headOffset, headed[1].headLength) = (40, 4)
        #expect(plannedSends(headed) == (0..<3).map { PlannedSend(firstEntry: $0, count: 1, bytes: 10) })
        // A head on the first: it leads nothing; the two after it are joined.
        headed = plain
        (headed[0].headOffset, headed[0].headLength) = (40, 4)
        #expect(
            plannedSends(headed) == [
                PlannedSend(firstEntry: 0, count: 1, bytes: 10),
                PlannedSend(firstEntry: 1, count: 2, bytes: 20),
            ])
        // A head on the last: it follows nothing.
        headed = plain
        (headed[2].headOffset, headed[2].headLength) = (40, 4)
        #expect(
            plannedSends(headed) == [
                PlannedSend(firstEntry: 0, count: 2, bytes: 20),
                PlannedSend(firstEntry: 2, count: 1, bytes: 10),
            ])
    }
}
