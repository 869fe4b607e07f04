import HelloService

/// The `hello` service, the classic tutorial server: "Michael" gets "Hello, Michael!", an
/// empty request "Hello, !".
public struct HelloReply: ReplyRule {
    public init() {}

    /// "Hello, " and one spare byte as a little-endian word: one unaligned store writes the
    /// prefix, and the request's first byte (or the "!") then overwrites the spare one.
    @usableFromInline static var helloWord: UInt64 { 0x21_20_2C_6F_6C_6C_65_48 }

    @inlinable
    public func replyLength(forRequestOf requestLength: Int) -> Int { requestLength + 8 }

    /// Inlinable, like the rest of the datagram path: a call per reply cost more than
    /// writing it.
    @inlinable @inline(__always) @discardableResult
    public func writeReply(
        to payload: UnsafeRawBufferPointer,
        continuation: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        at destination: UnsafeMutableRawPointer
    ) -> Int {
        destination.storeBytes(of: Self.helloWord.littleEndian, as: UInt64.self)
        var out = destination + 7
        out = copy(payload, to: out)
        out = copy(continuation, to: out)
        out.storeBytes(of: UInt8(ascii: "!"), as: UInt8.self)
        return replyLength(forRequestOf: payload.count + continuation.count)
    }

    public func request(inReply reply: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard reply.count >= 8, reply.last == UInt8(ascii: "!"),
            withUnsafeBytes(of: Self.helloWord.littleEndian, { reply.starts(with: $0.prefix(7)) })
        else { return nil }
        return UnsafeRawBufferPointer(rebasing: reply[7..<reply.count - 1])
    }
}

/// Copies `bytes` to `destination`; returns the address after them.
@inlinable @inline(__always)
func copy(_ bytes: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return destination }
    destination.copyMemory(from: base, byteCount: bytes.count)
    return destination + bytes.count
}
