/// Who gets an answer: the checks that keep hellod from becoming a reflector or one end of
/// a loop (echo <-> chargen, CVE-1999-0103; "Loop DoS", CVE-2024-2169). All on by default.
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

    /// No checks at all: every datagram that fits is answered.
    public static var open: AdmissionPolicy {
        var policy = AdmissionPolicy()
        policy.allowPrivilegedSourcePorts = true
        policy.allowOwnPorts = true
        policy.rateLimit = nil
        return policy
    }
}
