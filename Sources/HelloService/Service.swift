import HelloDatagram

/// What a socket answers. The worker drives a service batch by batch: it hands it every
/// datagram read, sends what the service wrote into the outbox, and tells it what became of
/// that. A service makes no system calls and allocates nothing after `init`: its tables and
/// the outbox are sized at start.
///
/// Every call gets the current monotonic time in nanoseconds; a service with timers asks
/// for ticks (`tickInterval`) and gets them even when no traffic comes, so it needs no
/// thread of its own.
public protocol DatagramService: ~Copyable {
    /// The most datagrams, and the largest one, it may write between two sends: the worker
    /// allocates the outbox from these.
    var outboxCapacity: Int { get }
    var largestDatagram: Int { get }
    /// How often it wants `tick`, traffic or not (nanoseconds; nil: never).
    var tickInterval: UInt64? { get }
    /// What it has done, for the worker to publish.
    var counters: Counters { get }
    /// Lends `body` its counters in place: the worker publishes them after every batch
    /// (in a small chat room, every message), and a `Counters` is 336 bytes, which the
    /// optimizer copied twice from a property read. `body` reads them; it changes nothing.
    /// By default, a copy of `counters`.
    mutating func withCounters<R>(_ body: (inout Counters) -> R) -> R
    /// Whether the worker should poll its socket for a while after traffic (`--spin-us`)
    /// before sleeping, and wait for a partly full batch to fill (`--coalesce-us`). That
    /// pays where a request costs little to serve, so that waking the thread would be most
    /// of a round trip (hello, echo); not where one datagram costs many sends (a chat
    /// message, one per member), beside which a wake-up is small and the polling, or a
    /// sleep of its own, would cost more CPU than it saves. By default, true.
    var pollsAfterTraffic: Bool { get }
    /// When what it holds back to send together falls due (monotonic nanoseconds; nil:
    /// nothing is held): the worker then calls `endBatch`, traffic or not.
    var sendDue: UInt64? { get }

    /// Handles `datagram`, read at `now`: writes 0...N datagrams into `outbox`, or counts
    /// why not. Returns false, having changed nothing, when `outbox` lacks room for what it
    /// would write: the worker then sends the outbox and hands the same datagram again.
    mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool

    /// Time passes: timers fire, and may write into `outbox`.
    mutating func tick(now: UInt64, into outbox: inout Outbox)

    /// The outbox was sent: the kernel took `sent` of its datagrams and refused `failed`.
    mutating func recordSent(_ sent: Int, failed: Int)

    /// Every datagram of a batch was handled (or a tick ran): writes what it gathered over
    /// the batch, such as the events of a chat room, several to one member in one
    /// datagram. Returns false when `outbox` is full and more is to come: the worker then
    /// sends the outbox and calls again. By default, nothing.
    mutating func endBatch(now: UInt64, into outbox: inout Outbox) -> Bool

    /// Where several workers share one service's state, each part owned by one of them:
    /// which worker must handle `datagram` (nil: this one may). By default, nil.
    func owner(of datagram: Datagram) -> Int?

    /// For the trace, and only while it is on: what `datagram` asks (its request's kind,
    /// the room it concerns), as the service knows it before handling it. Changes nothing.
    /// By default, nothing.
    func describe(_ datagram: Datagram, into note: inout TraceNote)
}

extension DatagramService where Self: ~Copyable {
    /// 100 ms: a service with timers fires them at most this late. (A tick costs an idle
    /// worker ten wake-ups a second, nothing measurable.)
    public var tickInterval: UInt64? { 100_000_000 }
    public var pollsAfterTraffic: Bool { true }
    public var sendDue: UInt64? { nil }
    public mutating func withCounters<R>(_ body: (inout Counters) -> R) -> R {
        var copy = counters
        return body(&copy)
    }
    public mutating func tick(now: UInt64, into outbox: inout Outbox) {}
    public mutating func endBatch(now: UInt64, into outbox: inout Outbox) -> Bool { true }
    public func owner(of datagram: Datagram) -> Int? { nil }
    public func describe(_ datagram: Datagram, into note: inout TraceNote) {}
}

/// What every service is built from: the batch the worker reads, the largest datagram it
/// reads whole, and who gets an answer.
public struct ServiceSettings: Sendable {
    public var batchSize: Int
    public var maxDatagram: Int
    public var policy: AdmissionPolicy

    public init(batchSize: Int = 64, maxDatagram: Int = 65527, policy: AdmissionPolicy = AdmissionPolicy()) {
        self.batchSize = batchSize
        self.maxDatagram = maxDatagram
        self.policy = policy
    }
}

/// Builds a service by name for someone who needs its concrete type (the worker is generic
/// over it, so the datagram path has no dynamic dispatch).
public protocol ServiceBuilder {
    associatedtype Result
    func build<Service: DatagramService & ~Copyable>(_ service: consuming Service) -> Result
}
