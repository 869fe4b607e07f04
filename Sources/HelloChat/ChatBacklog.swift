import HelloChatWire
import HelloDatagram
import HelloService

/// What the backlog keeps before each event: its length, and the token of the member it
/// is about (a duplicate SAY's copy must be the sender's own). 16 bytes: the event after it
/// stays 8-byte aligned.
struct StoredEventHeader {
    var length: UInt16
    var token: UInt64
}

/// One event in the backlog: its header, then its bytes as they go on the wire.
struct StoredEvent {
    static let headerSize = MemoryLayout<StoredEventHeader>.stride
    let base: UnsafeMutableRawPointer

    @inline(__always)
    var header: StoredEventHeader { base.load(as: StoredEventHeader.self) }

    /// The event's bytes, as `ChatWriter.event` wrote them.
    @inline(__always)
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + Self.headerSize, count: Int(header.length))
    }

    // Where an event's fields lie (`ChatWriter.event`): sequence u32, kind u8, sender u64,
    // client sequence u32, big-endian.
    static let kindOffset = 4
    static let clientSequenceOffset = 4 + 1 + 8

    var kind: ChatEventKind? {
        ChatEventKind(rawValue: base.load(fromByteOffset: Self.headerSize + Self.kindOffset, as: UInt8.self))
    }

    var clientSequence: UInt32 {
        UInt32(
            bigEndian: base.loadUnaligned(fromByteOffset: Self.headerSize + Self.clientSequenceOffset, as: UInt32.self))
    }
}

/// Each room's last `length` events, each at `sequence % length` of its room's part,
/// `stride` bytes apart. Allocated once; a page no event has touched costs no memory.
struct ChatBacklog: ~Copyable {
    let storage: UnsafeMutableRawPointer
    /// Events each room keeps.
    let length: Int
    let stride: Int

    init(rooms: Int, length: Int, maxMessage: Int) {
        self.length = length
        stride = Self.stride(maxMessage: maxMessage)
        storage = .allocate(byteCount: rooms * length * stride, alignment: 8)
    }

    deinit { storage.deallocate() }

    /// A stored event's bytes: its header, then the longest event the relay writes, 8-byte
    /// aligned. Every event carries its member's nick (up to `maxName`); a message's text is
    /// at most `maxMessage`, a rename's is the new nick (up to `maxName`, whatever
    /// `maxMessage`), the others' is empty.
    static func stride(maxMessage: Int) -> Int {
        let longestText = max(maxMessage, ChatWire.maxName)
        return (StoredEvent.headerSize + ChatWire.eventLength(nick: ChatWire.maxName, text: longestText) + 7) & ~7
    }

    static func bytes(rooms: Int, length: Int, maxMessage: Int) -> Int {
        rooms * length * stride(maxMessage: maxMessage)
    }

    @inline(__always)
    subscript(room: RoomID, sequence: UInt32) -> StoredEvent {
        StoredEvent(base: storage + (room.index * length + Int(sequence % UInt32(length))) * stride)
    }

    /// Writes event `sequence` of `room` over the oldest there.
    func store(
        _ room: RoomID, sequence: UInt32, kind: ChatEventKind, sender: UInt64, clientSequence: UInt32,
        nick: UnsafeRawBufferPointer, text: UnsafeRawBufferPointer, token: UInt64
    ) {
        let base = self[room, sequence].base
        var w = ChatWriter(base + StoredEvent.headerSize, capacity: stride - StoredEvent.headerSize)
        w.event(sequence: sequence, kind: kind, sender: sender, clientSequence: clientSequence, nick: nick, text: text)
        precondition(!w.overflowed)
        base.storeBytes(of: StoredEventHeader(length: UInt16(w.count), token: token), as: StoredEventHeader.self)
    }
}
