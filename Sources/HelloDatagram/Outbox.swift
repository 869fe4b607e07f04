/// One datagram to send: `length` bytes at `offset` in the outbox's buffer, after
/// `headLength` bytes at `headOffset` if it has a head of its own (a repeated datagram's,
/// `Outbox.repeatDatagram(_:ownHead:...)`), to `destination`, from `source` (nil: wherever
/// routing says), through the service's socket number `socket` (`Arrival.socket`).
public struct Outgoing: Sendable, Equatable {
    public var offset: Int32
    public var length: Int32
    public var headOffset: Int32 = 0
    public var headLength: Int32 = 0
    public var destination: Endpoint
    public var source: LocalSource?
    public var socket: UInt16

    @inlinable
    public init(
        offset: Int32, length: Int32, destination: Endpoint, source: LocalSource? = nil, socket: UInt16 = 0,
        headOffset: Int32 = 0, headLength: Int32 = 0
    ) {
        self.offset = offset
        self.length = length
        self.headOffset = headOffset
        self.headLength = headLength
        self.destination = destination
        self.source = source
        self.socket = socket
    }

    /// The datagram's length, head included.
    @inlinable
    public var datagramLength: Int { Int(headLength) + Int(length) }

    /// Two datagrams that go the same way: one segmented send may carry both.
    @inlinable
    public func sharesRoute(with other: Outgoing) -> Bool {
        destination == other.destination && source == other.source && socket == other.socket
    }
}

/// What a service sends, written one datagram after another into a buffer allocated once.
///
/// Datagrams are contiguous by construction, so a run of same-length datagrams to one
/// destination is already one buffer the socket layer can hand to the kernel in a single
/// segmented (UDP GSO) send. A service writes zero, one or many datagrams per request; a
/// datagram can go to several destinations from one copy of its bytes (`repeatDatagram`).
public struct Outbox: ~Copyable {
    /// Room for `capacity` datagrams of the largest size.
    public let bufferCapacity: Int
    public let capacity: Int
    @usableFromInline let buffer: UnsafeMutableRawPointer
    @usableFromInline let storage: UnsafeMutablePointer<Outgoing>
    @usableFromInline var used = (count: 0, bytes: 0)

    /// Datagrams in the outbox, and the bytes they take.
    @inlinable public var count: Int { used.count }
    @inlinable public var bufferUsed: Int { used.bytes }

    /// An outbox for up to `capacity` datagrams of up to `largestDatagram` bytes each. The
    /// buffer is reserved, not touched: pages no datagram has reached cost no memory.
    public init(capacity: Int, largestDatagram: Int) {
        precondition(capacity > 0 && largestDatagram >= 0)
        self.capacity = capacity
        self.bufferCapacity = capacity * max(largestDatagram, 1)
        precondition(bufferCapacity <= Int(Int32.max), "outbox offsets are 32-bit")
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferCapacity, alignment: 64)
        self.storage = .allocate(capacity: capacity)
    }

    deinit {
        buffer.deallocate()
        storage.deallocate()
    }

    public mutating func removeAll() {
        used = (0, 0)
    }

    public var isEmpty: Bool { count == 0 }

    /// Whether one more datagram of `length` bytes fits.
    @inlinable
    public func hasRoom(for length: Int) -> Bool {
        count < capacity && length <= bufferCapacity - bufferUsed
    }

    /// Where the next datagram goes: write it there, then `commit` it.
    @inlinable
    public var next: UnsafeMutableRawPointer { buffer + bufferUsed }

    /// Adds the `length` bytes written at `next` as a datagram to `destination`.
    @inlinable
    public mutating func commit(
        length: Int, to destination: Endpoint, from source: LocalSource?, through socket: UInt16 = 0
    ) {
        precondition(hasRoom(for: length))
        storage[count] = Outgoing(
            offset: Int32(bufferUsed), length: Int32(length), destination: destination, source: source,
            socket: socket)
        used = (used.count + 1, used.bytes + length)
    }

    /// Adds datagram `index` again, to another destination: the same bytes, not copied (a
    /// relay's fan-out writes a message once and points every recipient's send at it).
    /// False if the outbox has no entry left.
    @inlinable
    public mutating func repeatDatagram(
        _ index: Int, to destination: Endpoint, from source: LocalSource?,
        through socket: UInt16 = 0
    ) -> Bool {
        precondition(index >= 0 && index < count)
        guard count < capacity else { return false }
        let original = storage[index]
        storage[count] = Outgoing(
            offset: original.offset, length: original.length, destination: destination,
            source: source, socket: socket)
        used.count += 1
        return true
    }

    /// Adds datagram `index` again, to another destination, with its first `headLength`
    /// bytes replaced by the ones written at `next`: the copy's own head (a relay's fan-out
    /// names each recipient in its datagram's first bytes), the rest shared, not copied.
    /// False if the outbox has no entry or no room left.
    @inlinable @inline(__always)
    public mutating func repeatDatagram(
        _ index: Int, ownHead headLength: Int, to destination: Endpoint,
        from source: LocalSource?, through socket: UInt16 = 0
    ) -> Bool {
        precondition(index >= 0 && index < count)
        guard hasRoom(for: headLength) else { return false }
        // Only the original's place is read: not the whole entry.
        let (offset, length) = (storage[index].offset, storage[index].length)
        precondition(headLength > 0 && headLength <= Int(length) && storage[index].headLength == 0)
        // Offsets fit in 32 bits (`init`), and the head is within the original.
        let head = Int32(truncatingIfNeeded: headLength)
        storage[count] = Outgoing(
            offset: offset &+ head, length: length &- head, destination: destination, source: source,
            socket: socket, headOffset: Int32(truncatingIfNeeded: bufferUsed), headLength: head)
        used = (used.count + 1, used.bytes + headLength)
        return true
    }

    /// Copies `bytes` in as a datagram to `destination`; false if it does not fit.
    @discardableResult
    public mutating func append(
        _ bytes: UnsafeRawBufferPointer, to destination: Endpoint, from source: LocalSource? = nil
    ) -> Bool {
        guard hasRoom(for: bytes.count) else { return false }
        if let base = bytes.baseAddress, bytes.count > 0 {
            next.copyMemory(from: base, byteCount: bytes.count)
        }
        commit(length: bytes.count, to: destination, from: source)
        return true
    }

    @inlinable
    public subscript(index: Int) -> Outgoing {
        precondition(index >= 0 && index < count)
        return storage[index]
    }

    /// The datagrams, in order; valid until the outbox changes.
    @inlinable
    public var entries: UnsafeBufferPointer<Outgoing> {
        UnsafeBufferPointer(start: storage, count: count)
    }

    /// The bytes at `outgoing`'s offset: the datagram's, or what follows its own head.
    @inlinable
    public func bytes(of outgoing: Outgoing) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buffer + Int(outgoing.offset), count: Int(outgoing.length))
    }

    /// The head of its own that `outgoing` has before those (empty: none).
    @inlinable
    public func head(of outgoing: Outgoing) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buffer + Int(outgoing.headOffset), count: Int(outgoing.headLength))
    }

    /// The whole datagram, copied (for tests and tools, not the datagram path).
    public func datagram(_ outgoing: Outgoing) -> [UInt8] {
        Array(head(of: outgoing)) + Array(bytes(of: outgoing))
    }
}
