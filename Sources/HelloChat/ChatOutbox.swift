import HelloChatWire
import HelloDatagram
import HelloService

extension Outbox {
    /// Writes one datagram with `body` where the next one goes and commits it to
    /// `destination`, if it fits in `limit` bytes and the outbox's room; else writes
    /// nothing (the bytes scribbled past `next` are not part of the outbox) and returns false.
    @inlinable
    public mutating func write(
        limit: Int = ChatWire.largestDatagram, to destination: Endpoint, from source: LocalSource?,
        through socket: UInt16 = 0, _ body: (inout ChatWriter) -> Void
    ) -> Bool {
        guard count < capacity else { return false }
        var writer = ChatWriter(next, capacity: min(limit, bufferCapacity - bufferUsed))
        body(&writer)
        guard !writer.overflowed else { return false }
        commit(length: writer.count, to: destination, from: source, through: socket)
        return true
    }
}
