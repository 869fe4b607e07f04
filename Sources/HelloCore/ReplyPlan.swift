/// One datagram to send: the reply to request `request` of the batch, `length` bytes at
/// `offset` in the plan's reply buffer.
public struct Outgoing: Sendable, Equatable {
    public var request: Int32
    public var offset: Int32
    public var length: Int32

    public init(request: Int32, offset: Int32, length: Int32) {
        self.request = request
        self.offset = offset
        self.length = length
    }
}

/// The replies to one batch, written one after another into a buffer allocated once.
///
/// Replies are contiguous by construction, so a run of same-length replies to the same
/// peer is already one buffer the socket layer can hand to the kernel in a single
/// segmented (UDP GSO) send. A rule may plan zero, one or several datagrams per request.
public struct ReplyPlan: ~Copyable {
    /// Room for every reply of a full batch: batch size x the largest datagram.
    public let bufferCapacity: Int
    public let capacity: Int
    public let buffer: UnsafeMutableRawPointer
    private let storage: UnsafeMutablePointer<Outgoing>
    public private(set) var count = 0
    public private(set) var bufferUsed = 0

    /// A plan for up to `capacity` datagrams of up to `largestReply` bytes each. The buffer
    /// is reserved, not touched: pages no reply has reached cost no memory.
    public init(capacity: Int, largestReply: Int) {
        precondition(capacity > 0 && largestReply >= 0)
        self.capacity = capacity
        self.bufferCapacity = capacity * max(largestReply, 1)
        precondition(bufferCapacity <= Int(Int32.max), "reply buffer offsets are 32-bit")
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferCapacity, alignment: 64)
        self.storage = .allocate(capacity: capacity)
    }

    deinit {
        buffer.deallocate()
        storage.deallocate()
    }

    public mutating func removeAll() {
        count = 0
        bufferUsed = 0
    }

    /// Room left in the buffer for the next reply.
    public var bufferSpace: Int { bufferCapacity - bufferUsed }
    public var isFull: Bool { count == capacity }

    /// Where the next reply goes: write it there, then `commit` it.
    public var nextReply: UnsafeMutableRawPointer { buffer + bufferUsed }

    public mutating func commit(length: Int, request: Int) {
        precondition(count < capacity && length <= bufferSpace)
        storage[count] = Outgoing(request: Int32(request), offset: Int32(bufferUsed), length: Int32(length))
        count += 1
        bufferUsed += length
    }

    public subscript(index: Int) -> Outgoing {
        precondition(index >= 0 && index < count)
        return storage[index]
    }

    /// The planned datagrams, in order; valid until the plan changes.
    public var entries: UnsafeBufferPointer<Outgoing> {
        UnsafeBufferPointer(start: storage, count: count)
    }

    public func bytes(of outgoing: Outgoing) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buffer + Int(outgoing.offset), count: Int(outgoing.length))
    }
}
