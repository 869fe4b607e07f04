import HelloDatagram

/// What a service says of one datagram for the per-datagram trace (hellod `--trace`):
/// which request it is and, where the service knows, which room it concerns. Fixed size,
/// written in place: it travels in a trace record through a ring allocated at start.
public struct TraceNote: Sendable {
    /// The request's kind as the protocol names it (`JOIN`, `SAY`); empty: not said.
    public var request: StaticString = ""
    /// The room, as the datagram or the service's state names it: at most `roomCapacity`
    /// bytes, as received (the trace escapes them).
    public private(set) var roomLength: UInt8 = 0
    @usableFromInline var roomBytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    public static let roomCapacity = 32

    public init() {}

    /// Keeps the first `roomCapacity` bytes of `name`.
    public mutating func setRoom(_ name: UnsafeRawBufferPointer) {
        let count = min(name.count, Self.roomCapacity)
        withUnsafeMutableBytes(of: &roomBytes) { room in
            if count > 0 { room.baseAddress!.copyMemory(from: name.baseAddress!, byteCount: count) }
        }
        roomLength = UInt8(count)
    }

    /// The room's bytes (empty: none was said).
    public func withRoom<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: roomBytes) { body(UnsafeRawBufferPointer(rebasing: $0[..<Int(roomLength)])) }
    }
}
