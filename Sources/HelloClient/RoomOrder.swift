import HelloChatWire

/// A room's events put back in the room's order: the next sequence to show, and the events
/// that came early (after a gap), held until the gap is filled or given up. Whatever a relay
/// sends, it holds at most `holdLimit` events, and every count of missed events it gives is
/// one a relay could mean (at most `largestBacklog`).
package struct RoomOrder {
    /// What to show, in order.
    package enum Line: Equatable {
        case event(ChatEvent)
        /// A gap given up: this many events will not come.
        case missed(UInt32)
        /// The relay's sequence jumped further than any relay's backlog reaches: the count
        /// of what was missed is no count at all.
        case jumped
    }

    /// Events held ahead of the next to show, at most; also the longest gap repaired with
    /// RESEND (a longer one is counted as missed at once).
    package static let holdLimit: UInt32 = 256
    /// The most events a relay's backlog holds (hellod's --chat-backlog at most): a sequence
    /// that far behind the next is an old duplicate, and one further ahead a jump.
    package static let largestBacklog: UInt32 = 65536

    package private(set) var expected: UInt32?
    private var held: [UInt32: ChatEvent] = [:]

    package init() {}

    /// The first missing sequence and how many are missing before the first held event.
    package var gap: (first: UInt32, count: UInt32)? {
        guard let expected, let first = firstHeld else { return nil }
        return (expected, first &- expected)
    }

    /// `e`, and the events it lets through, in order (none if it is a duplicate or early).
    package mutating func accept(_ e: ChatEvent) -> [Line] {
        guard let expected else {
            self.expected = e.sequence
            held[e.sequence] = e
            return showInOrder()
        }
        // Distances in u32 arithmetic: the sequence wraps.
        let ahead = e.sequence &- expected
        if ahead < Self.holdLimit {
            if held[e.sequence] == nil { held[e.sequence] = e }
            return showInOrder()
        }
        if ahead >= 0 &- Self.largestBacklog { return [] }  // behind: shown already, or older
        // Too far ahead to hold what comes between: what is held goes first, then the jump.
        var lines: [Line] = []
        while !held.isEmpty { lines += skipGap() }
        let missed = e.sequence &- (self.expected ?? expected)  // past the gaps skipped just now
        lines.append(missed <= Self.largestBacklog ? .missed(missed) : .jumped)
        self.expected = e.sequence
        held[e.sequence] = e
        return lines + showInOrder()
    }

    /// The first gap given up (the relay's backlog no longer has it): what came after it.
    package mutating func skipGap() -> [Line] {
        guard let gap else { return [] }
        expected = gap.first &+ gap.count
        return [.missed(gap.count)] + showInOrder()
    }

    private var firstHeld: UInt32? {
        guard let expected else { return nil }
        return held.keys.min { $0 &- expected < $1 &- expected }
    }

    private mutating func showInOrder() -> [Line] {
        var lines: [Line] = []
        while let next = expected, let e = held.removeValue(forKey: next) {
            lines.append(.event(e))
            expected = next &+ 1
        }
        return lines
    }
}
