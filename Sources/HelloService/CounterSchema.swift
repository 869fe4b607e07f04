/// How a counter moves: a counter only goes up; a gauge says what is in use now.
public enum CounterKind: Sendable, Equatable {
    case counter
    case gauge
}

/// What a counter is for, which says where the layers above a service report it.
public enum CounterRole: Sendable, Equatable {
    /// Every service's traffic (read, replied, deliveries...): the layers name these.
    case traffic
    /// A reason a datagram read got no reply: every datagram read is replied to or counted
    /// under exactly one.
    case drop
    /// The drop of a datagram read by one worker for state another owns, whose queue from
    /// this worker was full: the worker counts it, under the name its service gives it.
    case handoverFull
    /// A service's own figure (the chat's rooms, members...): a metric and a journal field
    /// of its own.
    case figure
}

/// One counter, as operators see it.
public struct CounterSpec: Sendable {
    /// Its name: a drop's in the status, stop and warning lines and the metrics file's
    /// `reason` label (`chat-rate-limited`); a figure's in the lines, and, after the
    /// service's name, its metric and journal field (`rooms`: `hellod_chat_rooms`).
    public let name: String
    public let kind: CounterKind
    /// The metrics file's HELP line (a figure's), or what the counter means (a drop's).
    public let help: String
    public let role: CounterRole

    public init(name: String, kind: CounterKind = .counter, help: String, role: CounterRole) {
        self.name = name
        self.kind = kind
        self.help = help
        self.role = role
    }

    public static func drop(_ name: String, _ help: String) -> CounterSpec {
        CounterSpec(name: name, help: help, role: .drop)
    }

    public static func figure(_ name: String, _ kind: CounterKind, _ help: String) -> CounterSpec {
        CounterSpec(name: name, kind: kind, help: help, role: .figure)
    }

    public var isDrop: Bool { role == .drop || role == .handoverFull }
}

/// Where a counter lives in a `Counters` block: its place in the schema.
public struct CounterID: Hashable, Sendable {
    public let index: Int

    @inlinable
    public init(_ index: Int) { self.index = index }
}

/// A service's own counters, declared once, as an enum whose cases (raw values 0, 1, ...)
/// follow the generic counters in the block.
public protocol ServiceCounter: CaseIterable, RawRepresentable where RawValue == Int {
    var spec: CounterSpec { get }
}

extension ServiceCounter {
    @inlinable
    public var id: CounterID { CounterID(GenericCounter.count + rawValue) }
}

/// The counters every service has, first in every schema, at fixed places.
public enum GenericCounter: Int, CaseIterable, Sendable {
    case read, replied, deliveries, deliveryFailures, queueOverflows
    case truncated, broadcastOrMulticast, privilegedSourcePort, ownPort, rateLimited, replyTooLarge, sendFailed

    /// A constant, so that a service's counter's place folds at compile time in its module.
    @inlinable public static var count: Int { 12 }

    var spec: CounterSpec {
        switch self {
        case .read: CounterSpec(name: "read", help: "Datagrams read from the socket.", role: .traffic)
        case .replied:
            CounterSpec(
                name: "replied", help: "Requests answered: their reply left through the kernel.", role: .traffic)
        // Datagrams sent beyond one reply per request, which `replied` does not count: chat's
        // events to the members of a room, history on join, the further datagrams of a long
        // answer, and the notices that tell a refused source why.
        case .deliveries:
            CounterSpec(name: "deliveries", help: "Datagrams sent beyond one reply per request.", role: .traffic)
        case .deliveryFailures:
            CounterSpec(name: "delivery_failures", help: "Deliveries the kernel refused.", role: .traffic)
        // Not a worker's to count: whoever reports reads them from the socket (SO_MEMINFO).
        // They were never read, so they are not in `read`.
        case .queueOverflows:
            CounterSpec(
                name: "queue_overflows", help: "Datagrams the kernel dropped on a full receive queue.", role: .traffic)
        case .truncated:
            .drop("truncated", "Larger than --max-datagram: the kernel cut it (MSG_TRUNC); a cut copy is no answer.")
        case .broadcastOrMulticast:
            .drop("broadcast-or-multicast", "Sent to a broadcast or multicast address: never answered.")
        case .privilegedSourcePort:
            .drop(
                "privileged-source-port",
                "From a source port below 1024 (or 0), where the services a reply could be bounced into live.")
        case .ownPort:
            .drop("own-port", "From a port hellod itself listens on: another hellod, maybe, and the start of a loop.")
        case .rateLimited:
            .drop("rate-limited", "Over the per-source rate limit (or the limiter's table was full of busy sources).")
        case .replyTooLarge: .drop("reply-too-large", "The reply would not fit in one UDP datagram to this peer.")
        case .sendFailed:
            .drop(
                "send-failed",
                "The kernel refused the reply (a full send buffer past the retries, an unreachable destination, a firewall rule)."
            )
        }
    }
}

extension CounterID {
    @inlinable public static var read: CounterID { CounterID(0) }
    @inlinable public static var replied: CounterID { CounterID(1) }
    @inlinable public static var deliveries: CounterID { CounterID(2) }
    @inlinable public static var deliveryFailures: CounterID { CounterID(3) }
    @inlinable public static var queueOverflows: CounterID { CounterID(4) }
    @inlinable public static var truncated: CounterID { CounterID(5) }
    @inlinable public static var broadcastOrMulticast: CounterID { CounterID(6) }
    @inlinable public static var privilegedSourcePort: CounterID { CounterID(7) }
    @inlinable public static var ownPort: CounterID { CounterID(8) }
    @inlinable public static var rateLimited: CounterID { CounterID(9) }
    @inlinable public static var replyTooLarge: CounterID { CounterID(10) }
    @inlinable public static var sendFailed: CounterID { CounterID(11) }
}

/// A service's counters: the generic ones, then its own. The layers above a service (the
/// worker's published report, the status, stop and SIGHUP lines, the journal fields, the
/// metrics file) iterate it, and name no service's counter.
public final class CounterSchema: Sendable {
    public let specs: [CounterSpec]
    /// How many counters: the generic ones and the service's.
    public let count: Int
    /// The drop reasons, in the order the lines list them.
    public let drops: [CounterID]
    /// The service's own figures, in the order the metrics file lists them.
    public let figures: [CounterID]
    /// What the service's part of the status, stop and SIGHUP lines adds after its drops
    /// (the chat: rooms, members, messages, deliveries), each as `, NAME VALUE`; with the
    /// figures, its journal fields.
    public let summary: [CounterID]
    /// Where a sharded service's refused handovers are counted (nil: it has no handover).
    public let handoverFull: CounterID?
    /// A debug line on what changed since the last status (nil: nothing worth a line).
    public let progressNote: (@Sendable (_ now: Counters, _ seen: Counters) -> String?)?
    private let indexByName: [String: Int]

    /// The generic counters alone: a service with none of its own (hello, echo).
    public static let generic = CounterSchema(own: [])

    public convenience init<Own: ServiceCounter>(
        _ own: Own.Type, summary: [CounterID] = [],
        progressNote: (@Sendable (_ now: Counters, _ seen: Counters) -> String?)? = nil
    ) {
        precondition(Own.allCases.map(\.rawValue) == Array(0..<Own.allCases.count), "raw values 0, 1, ... in order")
        self.init(own: Own.allCases.map(\.spec), summary: summary, progressNote: progressNote)
    }

    init(
        own: [CounterSpec], summary: [CounterID] = [],
        progressNote: (@Sendable (_ now: Counters, _ seen: Counters) -> String?)? = nil
    ) {
        assert(GenericCounter.allCases.count == GenericCounter.count)
        let specs = GenericCounter.allCases.map(\.spec) + own
        precondition(specs.count <= CounterBlock.capacity, "a schema outgrew the counter block: make the block larger")
        self.specs = specs
        count = specs.count
        drops = specs.indices.filter { specs[$0].isDrop }.map(CounterID.init)
        figures = specs.indices.filter { specs[$0].role == .figure }.map(CounterID.init)
        handoverFull = specs.indices.first { specs[$0].role == .handoverFull }.map(CounterID.init)
        self.summary = summary
        self.progressNote = progressNote
        indexByName = Dictionary(specs.enumerated().map { ($1.name, $0) }) { first, _ in first }
        precondition(indexByName.count == specs.count, "two counters of one name")
    }

    public func spec(_ id: CounterID) -> CounterSpec { specs[id.index] }
    public func name(of id: CounterID) -> String { specs[id.index].name }
    public func id(named name: String) -> CounterID? { indexByName[name].map(CounterID.init) }

    /// The schema that holds both's counters: either of them when it holds the other's, else
    /// a new one (a total over services of different counters: never on the datagram path).
    func union(_ other: CounterSchema) -> CounterSchema {
        if other === self || other.specs.allSatisfy({ indexByName[$0.name] != nil }) { return self }
        if specs.allSatisfy({ other.indexByName[$0.name] != nil }) { return other }
        let extra = other.specs.filter { indexByName[$0.name] == nil }
        return CounterSchema(own: Array(specs[GenericCounter.count...]) + extra, summary: summary)
    }
}
