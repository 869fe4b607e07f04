import HelloService

/// The `echo` service (RFC 862): every request comes back unchanged, an empty one as an
/// empty datagram.
public struct EchoReply: ReplyRule {
    public init() {}

    @inlinable
    public func replyLength(forRequestOf requestLength: Int) -> Int { requestLength }

    @inlinable @inline(__always) @discardableResult
    public func writeReply(
        to payload: UnsafeRawBufferPointer,
        continuation: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        at destination: UnsafeMutableRawPointer
    ) -> Int {
        copy(continuation, to: copy(payload, to: destination))
        return payload.count + continuation.count
    }

    public func request(inReply reply: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? { reply }
}
