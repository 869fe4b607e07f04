/// One received datagram, as the socket layer hands it to a service.
public struct Datagram {
    /// The bytes read: `payload`, then `continuation`. The socket layer reads the first
    /// bytes of every datagram into small buffers side by side (so small datagrams touch few
    /// pages) and the rest, if any, into a large one: only datagrams longer than that first
    /// part have a continuation.
    public var payload: UnsafeRawBufferPointer
    public var continuation: UnsafeRawBufferPointer
    /// The datagram was larger than the receive buffer and the kernel cut it (MSG_TRUNC).
    public var truncated: Bool
    /// Where it came from.
    public var peer: Endpoint
    /// Where it went: the kind of destination, and the address to answer from.
    public var arrival: Arrival

    public init(
        payload: UnsafeRawBufferPointer,
        continuation: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        truncated: Bool = false, peer: Endpoint, arrival: Arrival = Arrival()
    ) {
        self.payload = payload
        self.continuation = continuation
        self.truncated = truncated
        self.peer = peer
        self.arrival = arrival
    }

    /// How many bytes were read.
    @inlinable @inline(__always) public var length: Int { payload.count + continuation.count }
}
