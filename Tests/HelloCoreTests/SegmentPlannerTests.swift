import HelloCore
import Testing

/// The sends a plan of replies side by side becomes: `lengths[i]` bytes to route `routes[i]`.
func plannedSends(_ lengths: [Int], routes: [Int]? = nil, maxSegments: Int = 64, limit: Int = 65507,
                  plainThrough: Int = -1) -> [PlannedSend] {
    let routes = routes ?? lengths.map { _ in 0 }
    var offset = 0
    let entries = lengths.enumerated().map { i, length in
        defer { offset += length }
        return Outgoing(request: Int32(i), offset: Int32(offset), length: Int32(length))
    }
    let planner = SegmentPlanner(maxSegments: maxSegments)
    var sends: [PlannedSend] = []
    entries.withUnsafeBufferPointer { entries in
        var e = 0
        while e < entries.count {
            let send = planner.send(from: e, of: entries, plainThrough: plainThrough, largestPayload: { _ in limit },
                                    sameRoute: { routes[$0] == routes[$1] })
            sends.append(send)
            e += send.count
        }
    }
    return sends
}

@Suite struct SegmentPlannerTests {
    @Test func sameLengthRepliesToOnePeerAreOneSend() {
        #expect(plannedSends([5, 5, 5, 5]) == [PlannedSend(firstEntry: 0, count: 4, bytes: 20)])
    }

    @Test func onlyTheLastSegmentMayBeShorter() {
        #expect(plannedSends([5, 5, 3, 5]) == [PlannedSend(firstEntry: 0, count: 3, bytes: 13),
                                               PlannedSend(firstEntry: 3, count: 1, bytes: 5)])
        #expect(plannedSends([3, 5]) == [PlannedSend(firstEntry: 0, count: 1, bytes: 3),
                                         PlannedSend(firstEntry: 1, count: 1, bytes: 5)])
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
        #expect(plannedSends([100, 100, 100], limit: 200).map(\.count) == [2, 1])
    }

    @Test func entriesAtOrBeforePlainThroughGoAlone() {
        #expect(plannedSends([5, 5, 5, 5, 5], plainThrough: 1).map(\.count) == [1, 1, 3])
    }

    @Test func repliesThatAreNotSideBySideAreSeparateSends() {
        let entries = [Outgoing(request: 0, offset: 0, length: 5), Outgoing(request: 1, offset: 6, length: 5)]
        let send = entries.withUnsafeBufferPointer {
            SegmentPlanner(maxSegments: 64).send(from: 0, of: $0, largestPayload: { _ in 65507 }, sameRoute: { _, _ in true })
        }
        #expect(send == PlannedSend(firstEntry: 0, count: 1, bytes: 5))
    }
}

@Suite struct PeerGroupingTests {
    func grouped(_ keys: [Int]) -> [Int] {
        var grouping = PeerGrouping(capacity: max(keys.count, 1))
        grouping.group(count: keys.count, hash: { UInt64(keys[$0]) }, sameKey: { keys[$0] == keys[$1] })
        return (0..<keys.count).map { grouping.order[$0] }
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
            grouping.group(count: 1024, hash: { UInt64($0) << shift }, sameKey: { a, b in
                comparisons += 1
                return a == b
            })
            #expect(comparisons < 4 * 1024)
            #expect((0..<1024).map { grouping.order[$0] } == Array(0..<1024))
        }
    }
}
