import Glibc
import SystemPackage

/// A failed system call: which call, and the errno it returned (swift-system's `Errno`,
/// so callers can `catch` a named case such as `.addressInUse`).
public struct SocketError: Error, Equatable, CustomStringConvertible {
    public let call: String
    public let errno: Errno

    public init(call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(errno.description)" }
}

/// Every system call of the socket layer goes through one of these two (after swift-nio's
/// `syscall(blocking:)`): EINTR is retried, EBADF and EFAULT are bugs of ours and stop the
/// process, and any other errno is thrown, typed, naming the call. Typed throws: no
/// allocation on failure.
///
/// `systemCall` is for calls that cannot say "not now": EAGAIN is an error like any other.
/// `inherited`: the descriptor is one the process was given (stderr), which may have been
/// closed before it started: EBADF is then an error, not a bug.
@inline(__always)
func systemCall<Result: BinaryInteger>(
    _ call: StaticString, inherited: Bool = false,
    _ body: () -> Result
) throws(SocketError) -> Result {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw failure(call, code, badDescriptorIsBug: !inherited)
    }
}

/// `nonBlockingCall` is for reads and writes with MSG_DONTWAIT: EAGAIN/EWOULDBLOCK (no
/// data, or no room, right now) is `nil`.
@inline(__always)
func nonBlockingCall<Result: BinaryInteger>(_ call: StaticString, _ body: () -> Result) throws(SocketError) -> Result? {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Glibc.errno
        switch code {
        case EINTR: continue
        case EAGAIN, EWOULDBLOCK: return nil
        default: throw failure(call, code)
        }
    }
}

/// `waitingCall` is for a wait that may block (a receive, a poll): besides EAGAIN (a
/// receive's SO_RCVTIMEO ran out), EINTR is `nil` too, not retried: the thread was
/// interrupted to look at its stop flag, or for its wake interval.
@inline(__always)
func waitingCall<Result: BinaryInteger>(_ call: StaticString, _ body: () -> Result) throws(SocketError) -> Result? {
    let result = body()
    if result >= 0 { return result }
    let code = Glibc.errno
    switch code {
    case EINTR, EAGAIN, EWOULDBLOCK: return nil
    default: throw failure(call, code)
    }
}

@inline(never)
private func failure(_ call: StaticString, _ code: Int32, badDescriptorIsBug: Bool = true) -> SocketError {
    if (code == EBADF && badDescriptorIsBug) || code == EFAULT {
        preconditionFailure("\(call) failed with \(Errno(rawValue: code)): a bug in hellod")
    }
    return SocketError(call: call.description, errno: Errno(rawValue: code))
}

/// A monotonic clock in nanoseconds (vDSO: no system call).
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
