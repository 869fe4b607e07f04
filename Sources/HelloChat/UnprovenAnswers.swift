import Atomics
import HelloDatagram
import HelloService

/// The chat relay's budget of answers to sources it has not proven (CHALLENGE, NOT A
/// MEMBER): each address and port has its own limit, and the relay has one cap over all
/// of them.
///
/// Per endpoint, not per source prefix: anyone can forge a datagram from the victim's
/// address, and with a shared budget a forger using other ports of that address would
/// spend it, so that the victim never learns its cookie or that its token is gone. With
/// its own port's budget, only a forger using that exact address and port competes with
/// it, and such a forger cannot be told apart from it anyway.
///
/// No answer is longer than its request, so this bounds reflection (what a forger can
/// make the relay send to a victim, byte for byte no more than it sent), not
/// amplification; the cap is what bounds it toward all the ports of one address.
struct UnprovenAnswers: ~Copyable {
    var perEndpoint: RateLimiter
    let relayCap: RelayRate

    /// Keyed by endpoint whatever `perEndpoint.scope` says: that is its point.
    init(perEndpoint: RateLimiter.Configuration, relayCap: RelayRate, seed: UInt64) {
        var configuration = perEndpoint
        configuration.scope = .endpoint
        self.perEndpoint = RateLimiter(configuration, seed: seed)
        self.relayCap = relayCap
    }

    /// Whether `peer` may be answered at `now`: within its own limit first (a flooding
    /// endpoint, over it, spends nothing of the cap), then within the relay's cap.
    mutating func allow(_ peer: Endpoint, now: UInt64) -> Bool {
        perEndpoint.allow(peer, now: now) && relayCap.admit(now: now)
    }
}

/// A rate shared by every chat worker of one relay (`--workers N`, several chat sockets):
/// one theoretical arrival time (GCRA, as `CellRate`), moved on by compare-and-exchange.
/// Shared, not split N ways: a forger can aim all it sends at one worker (a token's first
/// byte names it), and would then need only 1/N of the cap to spend that worker's share.
public final class RelayRate: Sendable {
    public let rate: UInt64
    public let burst: UInt64
    let rule: CellRate
    let arrival = ManagedAtomic<UInt64>(0)

    public init(rate: UInt64, burst: UInt64) {
        self.rate = max(rate, 1)
        self.burst = max(burst, 1)
        rule = CellRate(rate: self.rate, burst: self.burst)
    }

    /// Whether one more at `now` (monotonic nanoseconds) is within the rate; if so, it
    /// is counted.
    @inline(__always)
    func admit(now: UInt64) -> Bool {
        var current = arrival.load(ordering: .relaxed)
        while true {
            var moved = current
            guard rule.admit(&moved, now: now) else { return false }
            let (exchanged, found) = arrival.weakCompareExchange(expected: current, desired: moved, ordering: .relaxed)
            if exchanged { return true }
            current = found
        }
    }
}
