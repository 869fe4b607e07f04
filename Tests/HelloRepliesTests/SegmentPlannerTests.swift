import HelloDatagram
import HelloReplies
import HelloService
import Testing

/// Route `r` of the tests: a destination of `family`, from wherever routing says.
func testRoute(_ r: Int, family: IPAddress.Family = .v4) -> Endpoint {
    family == .v4
        ? .v4(0xc000_0201 + UInt32(r), port: 40000) : .v6(high: 0x2001_0db8_0000_0000, low: UInt64(r), port: 40000)
}

/// The sends an outbox of datagrams side by side becomes: `lengths[i]` bytes to route `routes[i]`.
func plannedSends(
    _ lengths: [Int], routes: [Int]? = nil, family: IPAddress.Family = .v4, maxSegments: Int = 64,
    plainThrough: Int = -1
) -> [PlannedSend] {
    let routes = routes ?? lengths.map { _ in 0 }
    var offset = 0
    let entries = lengths.enumerated().map { i, length in
        defer { offset += length }
        return Outgoing(offset: Int32(offset), length: Int32(length), destination: testRoute(routes[i], family: family))
    }
    return plannedSends(entries, maxSegments: maxSegments, plainThrough: plainThrough)
}

func plannedSends(_ entries: [Outgoing], maxSegments: Int = 64, plainThrough: Int = -1) -> [PlannedSend] {
    let planner = SegmentPlanner(maxSegments: maxSegments)
    var sends: [PlannedSend] = []
    entries.withUnsafeBufferPointer { entries in
        var e = 0
        while e < entries.count {
            let send = planner.send(from: e, of: entries, plainThrough: plainThrough)
            sends.append(send)
            e += send.count
        }
    }
    return sends
}

@Suite struct SegmentPlannerTests {
    @Test func aDatagramRepeatedToOthersIsNeverJoinedToItsNeighbours() {
        // A fan-out: one datagram's bytes, repeated to more peers (same offset).
        var outbox = Outbox(capacity: 8, largestDatagram: 10)
        outbox.next.initializeMemory(as: UInt8.self, repeating: 7, count: 10)
        outbox.commit(length: 10, to: testRoute(0), from: nil)
        // To the same peer first: a repeat of datagram 0 is not the bytes after it, so the
        // two are two sends, not one segmented send of 20 bytes.
        var repeated = 0
        for r in [0, 1, 2, 3] where outbox.repeatDatagram(0, to: testRoute(r), from: nil) { repeated += 1 }
        #expect(repeated == 4)
        #expect(outbox.bufferUsed == 10)
        #expect(plannedSends(Array(outbox.entries)) == (0..<5).map { PlannedSend(firstEntry: $0, count: 1, bytes: 10) })
        #expect(outbox.entries.allSatisfy { $0.offset == 0 && $0.length == 10 })
    }

    @Test func sameLengthRepliesToOnePeerAreOneSend() {
        #expect(plannedSends([5, 5, 5, 5]) == [PlannedSend(firstEntry: 0, count: 4, bytes: 20)])
    }

    @Test func onlyTheLastSegmentMayBeShorter() {
        #expect(
            plannedSends([5, 5, 3, 5]) == [
                PlannedSend(firstEntry: 0, count: 3, bytes: 13),
                PlannedSend(firstEntry: 3, count: 1, bytes: 5),
            ])
        #expect(
            plannedSends([3, 5]) == [
                PlannedSend(firstEntry: 0, count: 1, bytes: 3),
                PlannedSend(firstEntry: 1, count: 1, bytes: 5),
            ])
    }

    @Test func anotherRouteStartsAnotherSend() {
        #expect(plannedSends([5, 5, 5], routes: [0, 1, 1]).map(\.count) == [1, 2])
    }

    @Test func emptyRepliesGoAlone() {
        #expect(plannedSends([0, 0, 5, 0]).map(\.count) == [1, 1, 1, 1])
    }

    @Test func atMostMaxSegmentsAndOneDatagramsWorth() {
        #expect(plannedSends(Array(repeating: 1, count: 130)).map(\.count) == [64, 64, 2])
        #expect(plannedSends(Array(repeating: 1, count: 5), maxSegments: 1).map(\.count) == [1, 1, 1, 1, 1])
        // 43 x 1500 = 64500 fits in one IPv4 datagram; a 44th would not.
        #expect(plannedSends(Array(repeating: 1500, count: 50)).map(\.count) == [43, 7])
        // The limit is the destination's: 44 x 1489 = 65516 fits over IPv6 (65527), not IPv4 (65507).
        #expect(plannedSends(Array(repeating: 1489, count: 50), family: .v4).map(\.count) == [43, 7])
        #expect(plannedSends(Array(repeating: 1489, count: 50), family: .v6).map(\.count) == [44, 6])
    }

    @Test func anotherSourceAddressStartsAnotherSend() {
        let peer = testRoute(0)
        let a = LocalSource(.v4(0x7f00_0001)), b = LocalSource(.v4(0x7f00_0002))
        let sources: [LocalSource?] = [a, a, b, b, nil, nil, a]
        let entries = sources.enumerated().map { i, source in
            Outgoing(offset: Int32(5 * i), length: 5, destination: peer, source: source)
        }
        #expect(plannedSends(entries).map(\.count) == [2, 2, 2, 1])
        let linkLocal = sources.indices.map { i in
            Outgoing(
                offset: Int32(5 * i), length: 5, destination: peer,
                source: LocalSource(.v6(high: 0xfe80 << 48, low: 1), interface: i < 3 ? 2 : 3))
        }
        #expect(plannedSends(linkLocal).map(\.count) == [3, 4])  // the same address on another interface
    }

    @Test func entriesAtOrBeforePlainThroughGoAlone() {
        #expect(plannedSends([5, 5, 5, 5, 5], plainThrough: 1).map(\.count) == [1, 1, 3])
    }

    @Test func repliesThatAreNotSideBySideAreSeparateSends() {
        let peer = testRoute(0)
        let entries = [
            Outgoing(offset: 0, length: 5, destination: peer), Outgoing(offset: 6, length: 5, destination: peer),
        ]
        #expect(
            plannedSends(entries) == [
                PlannedSend(firstEntry: 0, count: 1, bytes: 5), PlannedSend(firstEntry: 1, count: 1, bytes: 5),
            ])
    }
}

@Suite struct PeerGroupingTests {
    func grouped(_ keys: [Int]) -> [Int] {
        var grouping = PeerGrouping(capacity: max(keys.count, 1))
        grouping.group(count: keys.count, hash: { UInt64(keys[$0]) }, sameKey: { keys[$0] == keys[$1] })
        return (0..<keys.count).map { grouping.index($0) }
    }

    @Test func interleavedPeersAreGroupedFirstSeenFirst() {
        #expect(grouped([7, 3, 7, 9, 3, 7]) == [0, 2, 5, 1, 4, 3])
        #expect(grouped([1, 2]) == [0, 1])
        #expect(grouped([]) == [])
    }

    /// Regression: DatagramBatch took the probe slot from a hash's low bits after a
    /// multiply whose constant lost its high half to operator precedence (`x &* C >> 32`
    /// is `x &* (C >> 32)`), so IPv4 peers with the same port and first octet (1024 of
    /// 10.x.y.z:5000) all probed from one slot: half a million address comparisons for one
    /// batch. The grouping now mixes every bit of the hash into the slot.
    @Test func hashesThatDifferOnlyInHighOrLowBitsStillSpread() {
        var grouping = PeerGrouping(capacity: 1024)
        for shift: UInt64 in [0, 32, 48] {
            var comparisons = 0
            grouping.group(
                count: 1024, hash: { UInt64($0) << shift },
                sameKey: { a, b in
                    comparisons += 1
                    return a == b
                })
            #expect(comparisons < 4 * 1024)
            #expect((0..<1024).map { grouping.index($0) } == Array(0..<1024))
        }
    }
}
