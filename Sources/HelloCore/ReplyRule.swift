/// What hellod answers to a request.
public enum ReplyMode: String, Sendable, CaseIterable {
    /// `Hello, ` + the request's bytes + `!`, as the classic tutorial server answers.
    case hello
    /// The request's bytes, unchanged (RFC 862).
    case echo
}

/// The reply rule: a pure function from a request's bytes to a reply's bytes.
///
/// Bytes are bytes: nothing is decoded, so a request that is not UTF-8 is answered byte
/// for byte, and an empty request gets `Hello, !` (or an empty datagram in echo mode).
public struct ReplyRule: Sendable {
    public let mode: ReplyMode

    public init(mode: ReplyMode) {
        self.mode = mode
    }

    /// "Hello, " and one spare byte as a little-endian word: one unaligned store writes the
    /// prefix, and the request's first byte (or the "!") then overwrites the spare one.
    static let helloWord: UInt64 = 0x20_2C_6F_6C_6C_65_48 | UInt64(UInt8(ascii: "!")) << 56

    /// How many bytes the reply to a request of `requestLength` bytes takes.
    @inlinable
    public func replyLength(forRequestOf requestLength: Int) -> Int {
        switch mode {
        case .hello: return requestLength + 8
        case .echo: return requestLength
        }
    }

    /// Writes the reply to the request `payload` + `continuation` at `destination`, which
    /// has room for `replyLength(forRequestOf:)` bytes, and returns that length.
    @discardableResult
    public func writeReply(to payload: UnsafeRawBufferPointer,
                           continuation: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                           at destination: UnsafeMutableRawPointer) -> Int {
        let length = payload.count + continuation.count
        var out = destination
        if mode == .hello {
            destination.storeBytes(of: Self.helloWord.littleEndian, as: UInt64.self)
            out += 7
        }
        if let bytes = payload.baseAddress, payload.count > 0 {
            out.copyMemory(from: bytes, byteCount: payload.count)
            out += payload.count
        }
        if let bytes = continuation.baseAddress, continuation.count > 0 {
            out.copyMemory(from: bytes, byteCount: continuation.count)
            out += continuation.count
        }
        if mode == .hello {
            out.storeBytes(of: UInt8(ascii: "!"), as: UInt8.self)
        }
        return replyLength(forRequestOf: length)
    }

    /// The request a reply answers, if `reply` has this rule's form: what is inside
    /// `Hello, ...!` in hello mode, the reply itself in echo mode. For clients that check
    /// replies (hello bench).
    public func request(inReply reply: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        switch mode {
        case .echo:
            return reply
        case .hello:
            let framing = replyLength(forRequestOf: 0)
            guard reply.count >= framing, reply.last == UInt8(ascii: "!"),
                  withUnsafeBytes(of: Self.helloWord.littleEndian, { reply.starts(with: $0.prefix(7)) }) else { return nil }
            return UnsafeRawBufferPointer(rebasing: reply[7..<reply.count - 1])
        }
    }

    /// The reply as an array: for clients, tests and anything off the hot path.
    public func reply(to request: some Collection<UInt8>) -> [UInt8] {
        let bytes = Array(request)
        return [UInt8](unsafeUninitializedCapacity: replyLength(forRequestOf: bytes.count)) { buffer, count in
            count = bytes.withUnsafeBytes { writeReply(to: $0, at: UnsafeMutableRawPointer(buffer.baseAddress!)) }
        }
    }
}
