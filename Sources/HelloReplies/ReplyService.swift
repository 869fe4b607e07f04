import HelloDatagram
import HelloService

/// A pure function from a request's bytes to its one reply's bytes.
///
/// Bytes are bytes: nothing is decoded, so a request that is not UTF-8 is answered byte
/// for byte.
public protocol ReplyRule: Sendable {
    /// How many bytes the reply to a request of `requestLength` bytes takes.
    func replyLength(forRequestOf requestLength: Int) -> Int
    /// Writes the reply to the request `payload` + `continuation` at `destination`, which
    /// has room for `replyLength(forRequestOf:)` bytes, and returns that length.
    @discardableResult
    func writeReply(
        to payload: UnsafeRawBufferPointer, continuation: UnsafeRawBufferPointer,
        at destination: UnsafeMutableRawPointer
    ) -> Int
    /// The request a reply answers, if `reply` has this rule's form: for clients that
    /// check replies (hello bench).
    func request(inReply reply: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer?
}

extension ReplyRule {
    /// The reply as an array: for clients, tests and anything off the hot path.
    public func reply(to request: some Collection<UInt8>) -> [UInt8] {
        let bytes = Array(request)
        return [UInt8](unsafeUninitializedCapacity: replyLength(forRequestOf: bytes.count)) { buffer, count in
            count = bytes.withUnsafeBytes {
                writeReply(
                    to: $0, continuation: UnsafeRawBufferPointer(start: nil, count: 0),
                    at: UnsafeMutableRawPointer(buffer.baseAddress!))
            }
        }
    }
}

/// A service that answers each admitted request with one datagram, its rule's reply, sent
/// back to where the request came from, from the address it was sent to.
public struct ReplyService<Rule: ReplyRule>: DatagramService, ~Copyable {
    public let rule: Rule
    public let outboxCapacity: Int
    public let largestDatagram: Int
    public internal(set) var counters: Counters {
        get { tally }
        set { tally = newValue }
    }
    @inlinable public mutating func withCounters<R>(_ body: (inout Counters) -> R) -> R { body(&tally) }
    @usableFromInline var tally = Counters()
    @usableFromInline var admission: Admission

    /// A service for batches of `settings.batchSize` requests of up to
    /// `settings.maxDatagram` bytes: the outbox holds every reply of a full batch.
    public init(_ rule: Rule, _ settings: ServiceSettings) {
        self.rule = rule
        self.outboxCapacity = settings.batchSize
        self.largestDatagram = min(rule.replyLength(forRequestOf: settings.maxDatagram), 65527)
        self.admission = Admission(settings.policy)
    }

    /// The checks, in order; the first that fails names the drop: truncated, broadcast or
    /// multicast, privileged source port, own port, rate limited, reply too large. (Send
    /// failed comes from `recordSent`.)
    @inlinable @inline(__always)
    public mutating func handle(_ datagram: Datagram, now: UInt64, into outbox: inout Outbox) -> Bool {
        let length = rule.replyLength(forRequestOf: datagram.length)
        let fits = length <= datagram.peer.largestPayload && length <= largestDatagram
        if fits && !outbox.hasRoom(for: length) {
            return false
        }
        tally.read += 1
        if let reason = admission.refusal(of: datagram, now: now) {
            tally[reason] += 1
        } else if !fits {
            tally[.replyTooLarge] += 1
        } else {
            rule.writeReply(to: datagram.payload, continuation: datagram.continuation, at: outbox.next)
            outbox.commit(length: length, to: datagram.peer, from: datagram.arrival.replySource)
        }
        return true
    }

    public mutating func recordSent(_ sent: Int, failed: Int) {
        tally.replied += UInt64(sent)
        tally[.sendFailed] += UInt64(failed)
    }
}
