import HelloDatagram

/// Who gets an answer: the checks that keep hellod from becoming a reflector, an
/// amplifier or one end of a loop (echo <-> chargen, CVE-1999-0103; "Loop DoS",
/// CVE-2024-2169; "fraggle"). All on by default.
public struct AdmissionPolicy: Sendable, Equatable {
    /// Answer source ports below 1024 (and 0). Off by default: echo, chargen, DNS, NTP and
    /// the other services a reply could be bounced into live there.
    public var allowPrivilegedSourcePorts = false
    /// Answer datagrams from a port hellod itself listens on. Off by default: two hellods
    /// on 9999 would otherwise answer each other forever.
    public var allowOwnPorts = false
    /// The ports hellod listens on.
    public var ownPorts: [UInt16] = []
    /// The per-source rate limit, or nil for none.
    public var rateLimit: RateLimiter.Configuration? = RateLimiter.Configuration()
    /// Rate-limit loopback peers too. Off by default, so local benchmarks run unthrottled.
    public var limitLoopback = false

    public init() {}

    /// No optional checks: every unicast datagram that fits is answered.
    public static var open: AdmissionPolicy {
        var policy = AdmissionPolicy()
        policy.allowPrivilegedSourcePorts = true
        policy.allowOwnPorts = true
        policy.rateLimit = nil
        return policy
    }
}

/// The checks of a policy, applied to one datagram after another; every service runs its
/// datagrams through them first. The one check no option turns off: a datagram sent to a
/// broadcast or multicast address is never answered, since one forged datagram there
/// would make every responder on the link answer the victim.
public struct Admission: ~Copyable {
    public let policy: AdmissionPolicy
    @usableFromInline var limiter: RateLimiter?

    public init(_ policy: AdmissionPolicy) {
        self.policy = policy
        self.limiter = policy.rateLimit.map { RateLimiter($0) }
    }

    /// Why `datagram`, read at `now` (monotonic nanoseconds), gets no answer, or nil. The
    /// first check that fails names the drop; a datagram let through counts against its
    /// source's rate limit.
    @inlinable @inline(__always)
    public mutating func refusal(of datagram: Datagram, now: UInt64) -> CounterID? {
        if datagram.truncated {
            return .truncated
        }
        if datagram.arrival.destination != .unicast {
            return .broadcastOrMulticast
        }
        let port = datagram.peer.port
        if port < 1024 && !policy.allowPrivilegedSourcePorts {
            return .privilegedSourcePort
        }
        if !policy.allowOwnPorts && policy.ownPorts.contains(port) {
            return .ownPort
        }
        if limiter != nil && (policy.limitLoopback || !datagram.peer.address.isLoopback)
            && !limiter!.allow(datagram.peer, now: now)
        {
            return .rateLimited
        }
        return nil
    }
}
