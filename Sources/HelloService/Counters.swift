/// Counter values in fixed storage, indexed by a schema's `CounterID`s: counting never
/// allocates.
public struct CounterBlock: Sendable {
    /// Room for 40 counters; `CounterSchema` refuses a schema that outgrows it.
    public static let capacity = 40
    @usableFromInline
    var values:
        (
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
        ) = (
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        )

    public init() {}

    @inlinable
    public subscript(index: Int) -> UInt64 {
        get {
            withUnsafeBytes(of: values) { $0.load(fromByteOffset: index * 8, as: UInt64.self) }
        }
        set {
            withUnsafeMutableBytes(of: &values) {
                $0.storeBytes(of: newValue, toByteOffset: index * 8, as: UInt64.self)
            }
        }
    }
}

/// What one worker's service has done since it started: its schema's counters, plain
/// integers owned by one thread; the server publishes a copy after every batch for whoever
/// reports status.
public struct Counters: Sendable, Equatable {
    public let schema: CounterSchema
    @usableFromInline var block = CounterBlock()

    public init(schema: CounterSchema = .generic) {
        self.schema = schema
    }

    @inlinable
    public subscript(id: CounterID) -> UInt64 {
        get { block[id.index] }
        set { block[id.index] = newValue }
    }

    /// The schema's values, in place (mutating: read through a borrow, the block was
    /// copied whole first).
    @inlinable
    public mutating func withValues<R>(_ body: (UnsafeBufferPointer<UInt64>) -> R) -> R {
        let count = schema.count
        return withUnsafeBytes(of: &block.values) {
            body(UnsafeBufferPointer(start: $0.assumingMemoryBound(to: UInt64.self).baseAddress, count: count))
        }
    }

    /// The value of the counter of that name, 0 where the schema has none.
    public func value(named name: String) -> UInt64 {
        schema.id(named: name).map { self[$0] } ?? 0
    }

    /// Datagrams read from the socket.
    @inlinable public var read: UInt64 {
        get { self[.read] }
        set { self[.read] = newValue }
    }
    /// Requests answered: their reply left through the kernel.
    @inlinable public var replied: UInt64 {
        get { self[.replied] }
        set { self[.replied] = newValue }
    }
    /// Datagrams the kernel dropped on this worker's socket since hellod started (a full
    /// receive queue, mostly; read with SO_MEMINFO). They were never read, so they are not
    /// in `read`: what was sent = read + these, once the queue is empty.
    @inlinable public var queueOverflows: UInt64 {
        get { self[.queueOverflows] }
        set { self[.queueOverflows] = newValue }
    }
    /// Datagrams sent beyond one reply per request, which `replied` does not count: chat's
    /// events to the members of a room, history on join, the further datagrams of a
    /// long answer, and the notices that tell a refused source why.
    @inlinable public var deliveries: UInt64 {
        get { self[.deliveries] }
        set { self[.deliveries] = newValue }
    }
    /// Those the kernel refused.
    @inlinable public var deliveryFailures: UInt64 {
        get { self[.deliveryFailures] }
        set { self[.deliveryFailures] = newValue }
    }

    /// The drop counts, by reason.
    public var drops: DropCounts { DropCounts(self) }

    /// Every datagram read is replied or dropped for a named reason; a request whose reply
    /// is still in a batch being sent is the only other state, and it lasts one batch.
    public var isBalanced: Bool {
        read == replied + drops.total
    }

    /// The sum, counter by counter (by name, where the schemas differ: a total over
    /// services).
    public static func + (a: Counters, b: Counters) -> Counters {
        // The common case by place: one schema, or the generic one (a prefix of every schema).
        if a.schema === b.schema || b.schema === CounterSchema.generic || a.schema === CounterSchema.generic {
            var sum = a.schema.count >= b.schema.count ? a : b
            for i in 0..<min(a.schema.count, b.schema.count) { sum.block[i] = a.block[i] + b.block[i] }
            return sum
        }
        var sum = Counters(schema: a.schema.union(b.schema))
        for (i, spec) in sum.schema.specs.enumerated() {
            let id = CounterID(i)
            sum[id] =
                (sum.schema === a.schema ? a[id] : a.value(named: spec.name))
                + (sum.schema === b.schema ? b[id] : b.value(named: spec.name))
        }
        return sum
    }

    public static func == (a: Counters, b: Counters) -> Bool {
        a.schema === b.schema && (0..<a.schema.count).allSatisfy { a.block[$0] == b.block[$0] }
    }
}

/// A service's drop counts, by reason: a view of its counters.
public struct DropCounts: Sendable, Equatable {
    public let counters: Counters

    public init(_ counters: Counters) { self.counters = counters }

    public subscript(reason: CounterID) -> UInt64 { counters[reason] }

    public var reasons: [CounterID] { counters.schema.drops }

    public var total: UInt64 {
        counters.schema.drops.reduce(0) { $0 + counters[$1] }
    }

    /// Each reason's count now less its count in `earlier` (by name).
    public func since(_ earlier: DropCounts) -> [(name: String, count: UInt64)] {
        reasons.map {
            (counters.schema.name(of: $0), counters[$0] - earlier.counters.value(named: counters.schema.name(of: $0)))
        }
    }

    public static func == (a: DropCounts, b: DropCounts) -> Bool {
        a.counters.schema === b.counters.schema && a.reasons.allSatisfy { a[$0] == b[$0] }
    }
}
