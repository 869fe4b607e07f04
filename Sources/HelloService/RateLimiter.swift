import HelloDatagram

/// A per-source rate limit in a fixed table: no growth with the number of sources, no
/// allocation per datagram.
///
/// Each source prefix (IPv4 /32 and IPv6 /64 by default, as DNS servers' response rate
/// limiting does), or each address and port (`Scope.endpoint`), has a token bucket, kept
/// as one number: the "theoretical arrival time" of the generic cell rate algorithm. A
/// datagram is allowed when that time is less than `burst` intervals ahead of now, and
/// moves it one interval on.
///
/// The table is set-associative with two choices: a source lives in one of the `ways`
/// slots of either of two sets its hash picks (with one set, chance alone overfills some
/// sets long before the table is full; with two, the table fills evenly). A slot whose
/// bucket has refilled holds nothing worth keeping, so it is reused; when every candidate
/// slot is busy, the new source is refused (counted as rate limited) rather than taking a
/// busy source's slot and with it that source's limit. Under a flood from more sources
/// than the table holds, limits stay exact and the excess is dropped.
public struct RateLimiter: ~Copyable {
    public struct Configuration: Sendable, Equatable {
        /// Datagrams per second per source prefix.
        public var rate: UInt64
        /// How many may come at once after a quiet spell.
        public var burst: UInt64
        public var ipv4PrefixLength: Int
        public var ipv6PrefixLength: Int
        /// Slots in the table (rounded up to a power of two).
        public var tableSize: Int
        /// What one limit covers: a source prefix, or one address and port (the prefix
        /// lengths then unused).
        public var scope: Scope

        public init(
            rate: UInt64 = 1000, burst: UInt64 = 200, ipv4PrefixLength: Int = 32, ipv6PrefixLength: Int = 64,
            tableSize: Int = 4096, scope: Scope = .sourcePrefix
        ) {
            self.rate = rate
            self.burst = burst
            self.ipv4PrefixLength = ipv4PrefixLength
            self.ipv6PrefixLength = ipv6PrefixLength
            self.tableSize = tableSize
            self.scope = scope
        }
    }

    public enum Scope: Sendable, Equatable {
        /// Every port of every address in the prefix shares one limit: what a source
        /// prefix may cost, whatever ports it uses.
        case sourcePrefix
        /// Each address and port has its own: other ports of an address (forged ones
        /// included) cannot spend this one's.
        case endpoint
    }

    public let configuration: Configuration
    private let cellRate: CellRate
    private let keys: UnsafeMutablePointer<UInt64>
    private let arrivals: UnsafeMutablePointer<UInt64>
    private let setMask: Int
    private let seed: UInt64
    static let ways = 8

    public init(_ configuration: Configuration, seed: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        precondition(configuration.rate > 0 && configuration.burst > 0)
        self.configuration = configuration
        cellRate = CellRate(rate: configuration.rate, burst: configuration.burst)
        let slots = max(
            1 << (Int.bitWidth - (max(configuration.tableSize, Self.ways) - 1).leadingZeroBitCount), Self.ways)
        setMask = slots / Self.ways - 1
        keys = .allocate(capacity: slots)
        keys.initialize(repeating: 0, count: slots)
        arrivals = .allocate(capacity: slots)
        arrivals.initialize(repeating: 0, count: slots)
        self.seed = seed
    }

    deinit {
        keys.deallocate()
        arrivals.deallocate()
    }

    public var slotCount: Int { (setMask + 1) * Self.ways }

    /// Whether a datagram from `peer` at `now` (monotonic nanoseconds) is within its limit.
    public mutating func allow(_ peer: Endpoint, now: UInt64) -> Bool {
        let key = self.key(peer)
        let first = (Int(truncatingIfNeeded: key >> 40) & setMask) * Self.ways
        let second = (Int(truncatingIfNeeded: key >> 8) & setMask) * Self.ways
        var (reusable, free) = (-1, 0)
        if let slot = find(key, in: first, now: now, reusable: &reusable, free: &free) {
            return admit(slot, now: now)
        }
        if second != first {
            var (other, otherFree) = (-1, 0)
            if let slot = find(key, in: second, now: now, reusable: &other, free: &otherFree) {
                return admit(slot, now: now)
            }
            if otherFree > free {
                reusable = other  // the emptier set: that is what keeps every set from filling
            }
        }
        guard reusable >= 0 else { return false }  // every candidate busy: refuse, keep their limits
        keys[reusable] = key
        arrivals[reusable] = now
        return admit(reusable, now: now)
    }

    /// The slot holding `key` in the set at `base`, if any; else notes the set's first
    /// reusable slot and how many it has.
    @inline(__always)
    private func find(_ key: UInt64, in base: Int, now: UInt64, reusable: inout Int, free: inout Int) -> Int? {
        for slot in base..<base + Self.ways {
            if keys[slot] == key {
                return slot
            }
            if arrivals[slot] <= now {  // empty, or its bucket has refilled: nothing to lose
                if reusable < 0 { reusable = slot }
                free += 1
            }
        }
        return nil
    }

    @inline(__always)
    private func admit(_ slot: Int, now: UInt64) -> Bool {
        cellRate.admit(&arrivals[slot], now: now)
    }

    /// The source prefix (or the endpoint: the whole address, then the port), hashed with
    /// a per-process seed (so no one can aim collisions); never 0, which marks an empty
    /// slot. The seed goes in first and each part of the prefix through a bijective mix of
    /// its own: without the seed no one can pick two prefixes (an IPv4 address and an IPv6
    /// one, or two IPv6 /128s) that share a key.
    @inline(__always)
    func key(_ peer: Endpoint) -> UInt64 {
        let byEndpoint = configuration.scope == .endpoint
        let prefix = SourcePrefix(
            peer, ipv4Length: byEndpoint ? 32 : configuration.ipv4PrefixLength,
            ipv6Length: byEndpoint ? 128 : configuration.ipv6PrefixLength)
        var h =
            prefix.isV4
            ? PeerGrouping.mix(seed ^ 4) ^ prefix.low
            : PeerGrouping.mix(PeerGrouping.mix(seed ^ 6) ^ prefix.high) ^ prefix.low
        if byEndpoint {
            h = PeerGrouping.mix(h) ^ UInt64(peer.port)
        }
        h = PeerGrouping.mix(h)
        return h == 0 ? 1 : h
    }
}

/// A source prefix (docs/PROTOCOL.md, "Limits"): the address cut to the prefix length of
/// its family (IPv4 /32 and IPv6 /64 by default).
package struct SourcePrefix: Hashable {
    package var high: UInt64
    package var low: UInt64
    package var isV4: Bool

    @inline(__always)
    package init(_ peer: Endpoint, ipv4Length: Int, ipv6Length: Int) {
        isV4 = peer.address.family == .v4
        (high, low) = peer.address.prefixBits(isV4 ? ipv4Length : ipv6Length)
    }
}

/// The generic cell rate algorithm's rule for one bucket, kept as one number: its
/// "theoretical arrival time". A datagram is allowed when that time is less than `burst`
/// intervals ahead of now, and moves it one interval on. The rate limiter keeps one per
/// source prefix, the chat relay one per member and one per room (whose cells are
/// deliveries: a message costs one per member).
public struct CellRate: Sendable {
    /// Nanoseconds between datagrams at the rate.
    @usableFromInline package let interval: UInt64
    /// How far ahead of now the arrival time may run.
    @usableFromInline package let tolerance: UInt64

    @inlinable public init(rate: UInt64, burst: UInt64) {
        precondition(rate > 0 && burst > 0)
        interval = max(1_000_000_000 / rate, 1)
        tolerance = interval * (burst - 1)
    }

    /// Whether a datagram at `now` is within the rate; if so, `arrival` moves on.
    @inline(__always)
    @inlinable public func admit(_ arrival: inout UInt64, now: UInt64) -> Bool {
        let next = max(arrival, now)
        guard next - now <= tolerance else { return false }
        arrival = next + interval
        return true
    }

    /// Whether `cost` cells at once at `now` are within the rate: all or none, so the
    /// last of them must be (a cost over the burst never is); if so, `arrival` moves on
    /// `cost` intervals.
    @inline(__always)
    @inlinable public func admit(_ arrival: inout UInt64, now: UInt64, cost: UInt64) -> Bool {
        let next = max(arrival, now)
        guard cost > 0 else { return true }
        guard next - now + (cost - 1) * interval <= tolerance else { return false }
        arrival = next + cost * interval
        return true
    }
}
