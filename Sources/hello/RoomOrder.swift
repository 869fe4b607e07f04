import HelloChatWire
import HelloService

/// A room's events put back in the room's order: the next sequence to show, and the events
/// that came early (after a gap), held until the gap is filled or given up. Whatever a relay
/// sends, it holds at most `holdLimit` events, and every count of missed events it gives is
/// one a relay could mean (at most `largestBacklog`).
struct RoomOrder {
    /// What to show, in order.
    enum Line: Equatable {
        case event(ChatEvent)
        /// A gap given up: this many events will not come.
        case missed(UInt32)
        /// The relay's sequence jumped further than any relay's backlog reaches: the count
        /// of what was missed is no count at all.
        case jumped
    }

    /// Events held ahead of the next to show, at most; also the longest gap repaired with
    /// RESEND (a longer one is counted as missed at once).
    static let holdLimit: UInt32 = 256
    /// The most events a relay's backlog holds (hellod's --chat-backlog at most): a sequence
    /// that far behind the next is an old duplicate, and one further ahead a jump.
    static let largestBacklog: UInt32 = 65536

    private(set) var expected: UInt32?
    private var held: [UInt32: ChatEvent] = [:]

    /// The first missing sequence and how many are missing before the first held event.
    var gap: (first: UInt32, count: UInt32)? {
        guard let expected, let first = firstHeld else { return nil }
        return (expected, first &- expected)
    }

    /// `e`, and the events it lets through, in order (none if it is a duplicate or early).
    mutating func accept(_ e: ChatEvent) -> [Line] {
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
        let missed = e.sequence &- self.expected!
        lines.append(missed <= Self.largestBacklog ? .missed(missed) : .jumped)
        self.expected = e.sequence
        held[e.sequence] = e
        return lines + showInOrder()
    }

    /// The first gap given up (the relay's backlog no longer has it): what came after it.
    mutating func skipGap() -> [Line] {
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

/// The last `capacity` keys seen: a set that forgets the oldest, so that what it remembers
/// stays bounded.
struct RecentKeys<Key: Hashable> {
    let capacity: Int
    private var keys: Set<Key> = []
    private var order: [Key] = []
    private var oldest = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Whether `key` was new (it is remembered from now on).
    mutating func insert(_ key: Key) -> Bool {
        guard keys.insert(key).inserted else { return false }
        if order.count < capacity {
            order.append(key)
        } else {
            keys.remove(order[oldest])
            order[oldest] = key
            oldest = (oldest + 1) % capacity
        }
        return true
    }
}
