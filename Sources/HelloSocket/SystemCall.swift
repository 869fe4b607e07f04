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

/// Every system call of the socket layer goes through here (after swift-nio's
/// `syscall(blocking:)`): EINTR is retried, EAGAIN/EWOULDBLOCK becomes `nil` (no data, or
/// no room, right now), EBADF and EFAULT are bugs of ours and stop the process, and any
/// other errno is thrown, typed, naming the call. Typed throws: no allocation on failure.
@inline(__always)
func systemCall<Result: BinaryInteger>(
    _ call: StaticString, _ body: () -> Result
) throws(SocketError) -> Result? {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Glibc.errno
        switch code {
        case EINTR:
            continue
        case EAGAIN, EWOULDBLOCK:
            return nil
        case EBADF, EFAULT:
            preconditionFailure("\(call) failed with \(Errno(rawValue: code)): a bug in hellod")
        default:
            throw SocketError(call: call.description, errno: Errno(rawValue: code))
        }
    }
}

/// A monotonic clock in nanoseconds (vDSO: no system call).
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
