/// The chat protocol's wire format (docs/PROTOCOL.md, "chat"): pure functions over bytes,
/// the one place that knows them, for the relay, the client and the load generator alike.
///
/// The relay decodes from the datagram's own bytes (`ChatRequest.parse`, views into them)
/// and encodes straight into its outbox (`ChatWriter`, bounds-checked, into memory it does
/// not own); a load generator reads events in place (`ChatEvents`); none of these
/// allocates. Clients and tests use `ChatMessage`, which owns its bytes and encodes to
/// `[UInt8]` through the same writer.
public enum ChatWire {
    public static let version: UInt8 = 2
    /// hellod 1.x's protocol: refused in its own format (`ChatWriter.legacyRefusal`).
    public static let legacyVersion: UInt8 = 1
    /// The largest datagram anyone sends: it crosses any IPv6 path without fragmenting.
    public static let largestDatagram = 1232
    /// What a JOIN is padded to at least: the longest answer to a source not yet proven
    /// (a version-1 refusal) is then never longer than the datagram it answers.
    public static let joinLength = 64
    /// Every datagram's header, either way: version, type, the client's tag.
    public static let headerLength = 10
    /// A CHALLENGE: header and cookie. Answered only to a datagram at least this long.
    public static let challengeLength = headerLength + cookieLength
    public static let maxName = 32
    public static let maxText = 1000
    public static let maxResend = 64
    public static let cookieLength = 12
    /// A SAY's bytes before its text: header, token, client sequence, the text's length.
    public static let sayHeaderLength = headerLength + 8 + 4 + 2
    /// An EVENTS datagram's header: version, type, tag, relay instance.
    public static let eventsHeaderLength = headerLength + 8

    /// The client's tag in a datagram of this version that has a header; nil if it has none.
    @inlinable
    public static func tag(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= headerLength, bytes[0] == version else { return nil }
        return UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
    }

    /// An event's length on the wire: sequence, kind, sender id, client sequence, the nick
    /// (one-byte length) and the text (two-byte length).
    @inlinable
    public static func eventLength(nick: Int, text: Int) -> Int { 4 + 1 + 8 + 4 + 1 + nick + 2 + text }

    /// Whether `bytes` may be a nick or a room name: 1-32 bytes of UTF-8 without control
    /// characters (which would let one user rewrite another's terminal), invisible or
    /// format ones (bidirectional overrides and isolates among them, which would let a
    /// name display as another), unassigned ones, or mixed scripts (`NamePolicy`).
    public static func isValidName(_ bytes: UnsafeRawBufferPointer) -> Bool {
        NamePolicy.problem(bytes) == nil
    }

    public static func isValidName(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { isValidName($0) }
    }
}

public enum ChatType: UInt8, Sendable {
    case join = 1, say, keepalive, leave, resend, who, nick
    case challenge = 129, welcome, events, members, notAMember, refused
}

public enum ChatEventKind: UInt8, Sendable {
    case message = 1, joined, left, timedOut, renamed
}

public enum ChatRefusal: UInt8, Sendable {
    case roomFull = 1, nickTaken, tooManyRooms, tooManyMemberships, badName
}

/// A client's secret: 128 random bits it chooses when it starts, sent only in JOIN. Its
/// `id`, a one-way hash, names it in events: what no other member can claim.
public struct ChatSecret: Equatable, Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The first 64 bits of the secret's SHA-256.
    public var id: UInt64 {
        var bytes = (high.bigEndian, low.bigEndian)
        return withUnsafeBytes(of: &bytes) { SHA256.hash($0).0 }
    }
}

/// A cookie: the epoch it was made in and the MAC over the source's address, port and that
/// epoch. All zero: none.
public struct ChatCookie: Equatable, Hashable, Sendable {
    public var epoch: UInt32
    public var mac: UInt64

    @inlinable
    public init(epoch: UInt32, mac: UInt64) {
        self.epoch = epoch
        self.mac = mac
    }

    public static let none = ChatCookie(epoch: 0, mac: 0)
    public var isNone: Bool { epoch == 0 && mac == 0 }
}

// MARK: - Reading

/// Reads big-endian fields from bytes it does not own; every read is bounds-checked and
/// fails (nil) past the end.
///
/// Its reads, as the writer's writes, are always inlined: they are the relay's work per
/// message, a call each otherwise.
public struct ChatReader {
    public let bytes: UnsafeRawBufferPointer
    @usableFromInline var position = 0
    @inlinable public var offset: Int { position }

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var remaining: Int { bytes.count - position }
    @inlinable public var atEnd: Bool { position == bytes.count }

    @inlinable @inline(__always)
    mutating func load<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { return nil }
        defer { position += size }
        return T(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    @inlinable @inline(__always) public mutating func u8() -> UInt8? { load(UInt8.self) }
    @inlinable @inline(__always) public mutating func u16() -> UInt16? { load(UInt16.self) }
    @inlinable @inline(__always) public mutating func u32() -> UInt32? { load(UInt32.self) }
    @inlinable @inline(__always) public mutating func u64() -> UInt64? { load(UInt64.self) }

    @inlinable @inline(__always)
    public mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0 && remaining >= count else { return nil }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
    }

    /// A string: one-byte length, bytes.
    @inlinable @inline(__always)
    public mutating func string() -> UnsafeRawBufferPointer? {
        guard let length = u8() else { return nil }
        return bytes(Int(length))
    }

    /// A text: two-byte length, bytes.
    @inlinable @inline(__always)
    public mutating func text() -> UnsafeRawBufferPointer? {
        guard let length = u16() else { return nil }
        return bytes(Int(length))
    }

    @inlinable @inline(__always)
    public mutating func cookie() -> ChatCookie? {
        guard let epoch = u32(), let mac = u64() else { return nil }
        return ChatCookie(epoch: epoch, mac: mac)
    }

    @inlinable @inline(__always)
    public mutating func secret() -> ChatSecret? {
        guard let high = u64(), let low = u64() else { return nil }
        return ChatSecret(high: high, low: low)
    }
}

/// A JOIN, its strings viewed in the datagram's bytes.
public struct ChatJoin {
    public var cookie: ChatCookie
    public var secret: ChatSecret
    public var token: UInt64
    public var room: UnsafeRawBufferPointer
    public var nick: UnsafeRawBufferPointer

    @inlinable
    public init(
        cookie: ChatCookie, secret: ChatSecret, token: UInt64, room: UnsafeRawBufferPointer,
        nick: UnsafeRawBufferPointer
    ) {
        (self.cookie, self.secret, self.token, self.room, self.nick) = (cookie, secret, token, room, nick)
    }
}

/// A SAY, read at its fixed offsets: the request a relay reads most, decoded without the
/// enum of every request (whose JOIN makes it some hundred bytes to build and copy).
/// `ChatRequest.parse` reads a SAY through this.
public struct ChatSay {
    public let tag: UInt64
    public let token: UInt64
    public let clientSequence: UInt32
    public let text: UnsafeRawBufferPointer

    /// The SAY in `bytes`, or nil if they are not exactly one: this version, every field
    /// there, a text of at most `maxText` bytes and nothing after it.
    @inlinable @inline(__always)
    public init?(_ bytes: UnsafeRawBufferPointer) {
        let textAt = ChatWire.sayHeaderLength
        guard bytes.count >= textAt, bytes[0] == ChatWire.version, bytes[1] == ChatType.say.rawValue else {
            return nil
        }
        let length = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: textAt - 2, as: UInt16.self)))
        guard length <= ChatWire.maxText && bytes.count == textAt + length else { return nil }
        tag = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
        token = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: ChatWire.headerLength, as: UInt64.self))
        clientSequence = UInt32(
            bigEndian: bytes.loadUnaligned(fromByteOffset: ChatWire.headerLength + 8, as: UInt32.self))
        text = UnsafeRawBufferPointer(rebasing: bytes[textAt...])
    }
}

/// What a client sends, decoded without copying: valid until the datagram's bytes go.
public enum ChatRequest {
    case join(ChatJoin)
    case say(token: UInt64, clientSequence: UInt32, text: UnsafeRawBufferPointer)
    case keepalive(token: UInt64, highest: UInt32)
    case leave(token: UInt64)
    case resend(token: UInt64, first: UInt32, count: UInt16)
    case who(token: UInt64)
    case nick(token: UInt64, nick: UnsafeRawBufferPointer)

    /// The request in `bytes` and the tag it carries, or nil if it is not one: another
    /// version, a relay's type, fields past the end or bytes after them (only a JOIN has
    /// padding), a text longer than 1000 bytes, a RESEND of more than 64. Names are not
    /// checked here (`ChatWire.isValidName`): a bad name gets an answer, a malformed
    /// datagram none.
    /// Always inlined: the relay parses every datagram, and the request, returned from a
    /// call, went through memory.
    @inlinable @inline(__always)
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> (tag: UInt64, request: ChatRequest)? {
        var r = ChatReader(bytes)
        guard r.u8() == ChatWire.version, let raw = r.u8(), let type = ChatType(rawValue: raw), let tag = r.u64()
        else { return nil }
        let request: ChatRequest
        switch type {
        case .join:
            guard let cookie = r.cookie(), let secret = r.secret(), let token = r.u64(),
                let room = r.string(), let nick = r.string()
            else { return nil }
            return (tag, .join(ChatJoin(cookie: cookie, secret: secret, token: token, room: room, nick: nick)))
        case .say:
            guard let say = ChatSay(bytes) else { return nil }
            return (tag, .say(token: say.token, clientSequence: say.clientSequence, text: say.text))
        case .keepalive:
            guard let token = r.u64(), let highest = r.u32() else { return nil }
            request = .keepalive(token: token, highest: highest)
        case .leave:
            guard let token = r.u64() else { return nil }
            request = .leave(token: token)
        case .resend:
            guard let token = r.u64(), let first = r.u32(), let count = r.u16(), count <= ChatWire.maxResend
            else { return nil }
            request = .resend(token: token, first: first, count: count)
        case .who:
            guard let token = r.u64() else { return nil }
            request = .who(token: token)
        case .nick:
            guard let token = r.u64(), let nick = r.string() else { return nil }
            request = .nick(token: token, nick: nick)
        case .challenge, .welcome, .events, .members, .notAMember, .refused:
            return nil  // a relay's message: another relay, or a reflection
        }
        return r.atEnd ? (tag, request) : nil
    }

    /// The token of a version-1 request that has one (hellod 1.x's clients), for its
    /// refusal in that version's format; 0 for a version-1 JOIN (64 bytes at least, as 1.x
    /// padded it); nil for anything else.
    public static func legacyToken(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        var r = ChatReader(bytes)
        guard r.u8() == ChatWire.legacyVersion, let raw = r.u8(), let type = ChatType(rawValue: raw), raw < 128 else {
            return nil
        }
        guard type == .join else { return r.u64().flatMap { $0 == 0 ? nil : $0 } }
        return bytes.count >= ChatWire.joinLength ? 0 : nil
    }
}

// MARK: - Writing

/// Writes big-endian fields into memory it does not own, never past `capacity`: a write
/// that does not fit writes nothing and marks the writer overflowed.
public struct ChatWriter {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    @usableFromInline var written = 0
    @usableFromInline var failed = false
    @inlinable public var count: Int { written }
    /// A write did not fit (or a string or text was too long for its length field).
    @inlinable public var overflowed: Bool { failed }

    @inlinable
    public init(_ base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inlinable @inline(__always)
    mutating func reserve(_ size: Int) -> UnsafeMutableRawPointer? {
        guard !failed && size <= capacity - written else {
            failed = true
            return nil
        }
        defer { written += size }
        return base + written
    }

    @inlinable @inline(__always)
    mutating func store<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)?.storeBytes(of: value.bigEndian, as: T.self)
    }

    @inlinable @inline(__always) public mutating func u8(_ value: UInt8) { store(value) }
    @inlinable @inline(__always) public mutating func u16(_ value: UInt16) { store(value) }
    @inlinable @inline(__always) public mutating func u32(_ value: UInt32) { store(value) }
    @inlinable @inline(__always) public mutating func u64(_ value: UInt64) { store(value) }

    @inlinable @inline(__always)
    public mutating func bytes(_ bytes: UnsafeRawBufferPointer) {
        guard let at = reserve(bytes.count), let source = bytes.baseAddress, bytes.count > 0 else { return }
        at.copyMemory(from: source, byteCount: bytes.count)
    }

    /// A string: one-byte length (at most 255), bytes.
    @inlinable @inline(__always)
    public mutating func string(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= 255 else { failed = true; return }
        u8(UInt8(bytes.count))
        self.bytes(bytes)
    }

    /// A text: two-byte length, bytes.
    @inlinable @inline(__always)
    public mutating func text(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= 65535 else { failed = true; return }
        u16(UInt16(bytes.count))
        self.bytes(bytes)
    }

    /// Zeros up to `length` bytes in all (nothing if already that long).
    public mutating func pad(to length: Int) {
        let missing = length - count
        guard missing > 0, let at = reserve(missing) else { return }
        at.initializeMemory(as: UInt8.self, repeating: 0, count: missing)
    }

    /// Version, type and the client's tag: what every datagram begins with.
    @inlinable @inline(__always)
    public mutating func header(_ type: ChatType, tag: UInt64) {
        u8(ChatWire.version)
        u8(type.rawValue)
        u64(tag)
    }

    public mutating func cookie(_ cookie: ChatCookie) {
        u32(cookie.epoch)
        u64(cookie.mac)
    }

    // Client to relay.

    public mutating func join(
        tag: UInt64, cookie: ChatCookie, secret: ChatSecret, token: UInt64,
        room: UnsafeRawBufferPointer, nick: UnsafeRawBufferPointer,
        padTo length: Int = ChatWire.joinLength
    ) {
        header(.join, tag: tag)
        self.cookie(cookie)
        u64(secret.high)
        u64(secret.low)
        u64(token)
        string(room)
        string(nick)
        pad(to: length)
    }

    public mutating func say(tag: UInt64, token: UInt64, clientSequence: UInt32, text: UnsafeRawBufferPointer) {
        header(.say, tag: tag)
        u64(token)
        u32(clientSequence)
        self.text(text)
    }

    public mutating func keepalive(tag: UInt64, token: UInt64, highest: UInt32) {
        header(.keepalive, tag: tag)
        u64(token)
        u32(highest)
    }

    public mutating func leave(tag: UInt64, token: UInt64) {
        header(.leave, tag: tag)
        u64(token)
    }

    public mutating func resend(tag: UInt64, token: UInt64, first: UInt32, count: UInt16) {
        header(.resend, tag: tag)
        u64(token)
        u32(first)
        u16(count)
    }

    public mutating func who(tag: UInt64, token: UInt64) {
        header(.who, tag: tag)
        u64(token)
    }

    public mutating func nick(tag: UInt64, token: UInt64, nick: UnsafeRawBufferPointer) {
        header(.nick, tag: tag)
        u64(token)
        string(nick)
    }

    // Relay to client.

    public mutating func challenge(tag: UInt64, _ cookie: ChatCookie) {
        header(.challenge, tag: tag)
        self.cookie(cookie)
    }

    public mutating func welcome(tag: UInt64, token: UInt64, instance: UInt64, nextSequence: UInt32, members: UInt16) {
        header(.welcome, tag: tag)
        u64(token)
        u64(instance)
        u32(nextSequence)
        u16(members)
    }

    /// The header of an EVENTS datagram; `event` then adds each.
    @inlinable @inline(__always)
    public mutating func events(tag: UInt64, instance: UInt64) {
        header(.events, tag: tag)
        u64(instance)
    }

    /// One event, its room checked once (`ChatWire.eventLength`): the relay writes one for
    /// every message, and a check a field was most of the cost.
    @inlinable @inline(__always)
    public mutating func event(
        sequence: UInt32, kind: ChatEventKind, sender: UInt64, clientSequence: UInt32,
        nick: UnsafeRawBufferPointer, text: UnsafeRawBufferPointer
    ) {
        guard nick.count <= 255 && text.count <= 65535,
            let at = reserve(ChatWire.eventLength(nick: nick.count, text: text.count))
        else {
            failed = true
            return
        }
        // Sequence u32, kind u8, sender u64, client sequence u32, then the nick (u8 length)
        // and the text (u16 length), as `eventLength` counts them.
        at.storeBytes(of: sequence.bigEndian, as: UInt32.self)
        at.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        at.storeBytes(of: sender.bigEndian, toByteOffset: 5, as: UInt64.self)
        at.storeBytes(of: clientSequence.bigEndian, toByteOffset: 13, as: UInt32.self)
        at.storeBytes(of: UInt8(nick.count), toByteOffset: 17, as: UInt8.self)
        if let source = nick.baseAddress { (at + 18).copyMemory(from: source, byteCount: nick.count) }
        at.storeBytes(of: UInt16(text.count).bigEndian, toByteOffset: 18 + nick.count, as: UInt16.self)
        if let source = text.baseAddress { (at + 20 + nick.count).copyMemory(from: source, byteCount: text.count) }
    }

    /// The header of a MEMBERS datagram; `string` then adds each nick.
    public mutating func members(tag: UInt64, instance: UInt64, count: UInt16) {
        header(.members, tag: tag)
        u64(instance)
        u16(count)
    }

    public mutating func notAMember(tag: UInt64, token: UInt64) {
        header(.notAMember, tag: tag)
        u64(token)
    }

    public mutating func refused(tag: UInt64, _ reason: ChatRefusal) {
        header(.refused, tag: tag)
        u8(reason.rawValue)
    }

    /// What a version-1 request gets (`ChatRequest.legacyToken`), in version 1's format and
    /// never longer: a JOIN (token 0; 64 bytes at least) a REFUSED for too many rooms, the
    /// only words hellod 1.x's client has for a relay that will not take it, then the
    /// version in ASCII for whoever reads the bytes, 64 bytes in all; any other request
    /// (10 bytes at least) a NOT A MEMBER of its token, 10 bytes, after which that client
    /// joins, and is refused.
    public mutating func legacyRefusal(token: UInt64) {
        u8(ChatWire.legacyVersion)
        if token == 0 {
            u8(ChatType.refused.rawValue)
            u8(ChatRefusal.tooManyRooms.rawValue)
            u8(0)
            let words: StaticString = "chat protocol 2"
            bytes(UnsafeRawBufferPointer(start: words.utf8Start, count: words.utf8CodeUnitCount))
            pad(to: ChatWire.joinLength)
        } else {
            u8(ChatType.notAMember.rawValue)
            u64(token)
        }
    }
}

// MARK: - Events in place

/// One event of an EVENTS datagram, viewed in its bytes: valid while they are.
public struct ChatEventView {
    public var sequence: UInt32
    public var kind: ChatEventKind
    public var sender: UInt64
    public var clientSequence: UInt32
    public var nick: UnsafeRawBufferPointer
    public var text: UnsafeRawBufferPointer
}

/// An EVENTS datagram read in place: its tag and relay instance, then its events one by
/// one (`for event in events`), without copying or allocating. An event cut short or of an
/// unknown kind ends the iteration and sets `malformed`.
public struct ChatEvents: Sequence, IteratorProtocol {
    public let tag: UInt64
    public let instance: UInt64
    var reader: ChatReader
    public private(set) var malformed = false

    /// The EVENTS datagram in `bytes`, or nil if it is not one.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        var r = ChatReader(bytes)
        guard r.u8() == ChatWire.version, r.u8() == ChatType.events.rawValue, let tag = r.u64(), let instance = r.u64()
        else { return nil }
        (self.tag, self.instance, reader) = (tag, instance, r)
    }

    public mutating func next() -> ChatEventView? {
        guard !reader.atEnd, !malformed else { return nil }
        guard let sequence = reader.u32(), let rawKind = reader.u8(), let kind = ChatEventKind(rawValue: rawKind),
            let sender = reader.u64(), let clientSequence = reader.u32(), let nick = reader.string(),
            let text = reader.text()
        else {
            malformed = true
            return nil
        }
        return ChatEventView(
            sequence: sequence, kind: kind, sender: sender, clientSequence: clientSequence, nick: nick,
            text: text)
    }
}

// MARK: - Owned messages, for clients and tests

/// One event of an EVENTS datagram, owning its bytes.
public struct ChatEvent: Equatable, Sendable {
    public var sequence: UInt32
    public var kind: ChatEventKind
    /// Its sender's id (`ChatSecret.id`).
    public var sender: UInt64
    public var clientSequence: UInt32
    public var nick: [UInt8]
    public var text: [UInt8]

    public init(
        sequence: UInt32, kind: ChatEventKind, sender: UInt64, clientSequence: UInt32, nick: [UInt8], text: [UInt8]
    ) {
        self.sequence = sequence
        self.kind = kind
        self.sender = sender
        self.clientSequence = clientSequence
        self.nick = nick
        self.text = text
    }
}

/// Any chat message, owning its bytes: what a client builds and reads (`encoded(tag:)`,
/// `decode`). Encoding goes through `ChatWriter`, as the relay's does. The tag every
/// datagram carries is not part of the message: a client has one for all it sends.
public enum ChatMessage: Equatable, Sendable {
    case join(cookie: ChatCookie, secret: ChatSecret, token: UInt64, room: [UInt8], nick: [UInt8])
    case say(token: UInt64, clientSequence: UInt32, text: [UInt8])
    case keepalive(token: UInt64, highest: UInt32)
    case leave(token: UInt64)
    case resend(token: UInt64, first: UInt32, count: UInt16)
    case who(token: UInt64)
    case nick(token: UInt64, nick: [UInt8])
    case challenge(ChatCookie)
    case welcome(token: UInt64, instance: UInt64, nextSequence: UInt32, members: UInt16)
    case events(instance: UInt64, [ChatEvent])
    case members(instance: UInt64, [[UInt8]])
    case notAMember(token: UInt64)
    case refused(ChatRefusal)

    /// The datagram's bytes, with `tag`; a JOIN padded to `joinPadding` bytes at least.
    public func encoded(tag: UInt64, joinPadding: Int = ChatWire.joinLength) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: 65535)
        let length = result.withUnsafeMutableBytes { buffer -> Int in
            var w = ChatWriter(buffer.baseAddress!, capacity: buffer.count)
            switch self {
            case let .join(cookie, secret, token, room, nick):
                room.withUnsafeBytes { room in
                    nick.withUnsafeBytes { nick in
                        w.join(
                            tag: tag, cookie: cookie, secret: secret, token: token, room: room, nick: nick,
                            padTo: joinPadding)
                    }
                }
            case let .say(token, sequence, text):
                text.withUnsafeBytes { w.say(tag: tag, token: token, clientSequence: sequence, text: $0) }
            case let .keepalive(token, highest): w.keepalive(tag: tag, token: token, highest: highest)
            case let .leave(token): w.leave(tag: tag, token: token)
            case let .resend(token, first, count): w.resend(tag: tag, token: token, first: first, count: count)
            case let .who(token): w.who(tag: tag, token: token)
            case let .nick(token, nick): nick.withUnsafeBytes { w.nick(tag: tag, token: token, nick: $0) }
            case let .challenge(cookie): w.challenge(tag: tag, cookie)
            case let .welcome(token, instance, next, members):
                w.welcome(tag: tag, token: token, instance: instance, nextSequence: next, members: members)
            case let .events(instance, events):
                w.events(tag: tag, instance: instance)
                for e in events {
                    e.nick.withUnsafeBytes { nick in
                        e.text.withUnsafeBytes { text in
                            w.event(
                                sequence: e.sequence, kind: e.kind, sender: e.sender, clientSequence: e.clientSequence,
                                nick: nick, text: text)
                        }
                    }
                }
            case let .members(instance, nicks):
                w.members(tag: tag, instance: instance, count: UInt16(truncatingIfNeeded: nicks.count))
                for nick in nicks { nick.withUnsafeBytes { w.string($0) } }
            case let .notAMember(token): w.notAMember(tag: tag, token: token)
            case let .refused(reason): w.refused(tag: tag, reason)
            }
            precondition(!w.overflowed, "a chat message larger than a datagram")
            return w.count
        }
        result.removeSubrange(length...)
        return result
    }

    /// The message in `bytes` and its tag, or nil if it is none. Client requests decode as
    /// the relay decodes them (`ChatRequest.parse`); relay messages as a client would.
    public static func decode(_ bytes: [UInt8]) -> (tag: UInt64, message: ChatMessage)? {
        bytes.withUnsafeBytes { decode($0) }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> (tag: UInt64, message: ChatMessage)? {
        if let (tag, request) = ChatRequest.parse(bytes) {
            switch request {
            case let .join(j):
                return (
                    tag,
                    .join(cookie: j.cookie, secret: j.secret, token: j.token, room: Array(j.room), nick: Array(j.nick))
                )
            case let .say(token, sequence, text):
                return (tag, .say(token: token, clientSequence: sequence, text: Array(text)))
            case let .keepalive(token, highest): return (tag, .keepalive(token: token, highest: highest))
            case let .leave(token): return (tag, .leave(token: token))
            case let .resend(token, first, count): return (tag, .resend(token: token, first: first, count: count))
            case let .who(token): return (tag, .who(token: token))
            case let .nick(token, nick): return (tag, .nick(token: token, nick: Array(nick)))
            }
        }
        var r = ChatReader(bytes)
        guard r.u8() == ChatWire.version, let raw = r.u8(), let type = ChatType(rawValue: raw), let tag = r.u64()
        else { return nil }
        let message: ChatMessage
        switch type {
        case .challenge:
            guard let cookie = r.cookie() else { return nil }
            message = .challenge(cookie)
        case .welcome:
            guard let token = r.u64(), let instance = r.u64(), let next = r.u32(), let members = r.u16() else {
                return nil
            }
            message = .welcome(token: token, instance: instance, nextSequence: next, members: members)
        case .events:
            guard var inPlace = ChatEvents(bytes) else { return nil }
            var events: [ChatEvent] = []
            while let e = inPlace.next() {
                events.append(
                    ChatEvent(
                        sequence: e.sequence, kind: e.kind, sender: e.sender, clientSequence: e.clientSequence,
                        nick: Array(e.nick), text: Array(e.text)))
            }
            return inPlace.malformed ? nil : (tag, .events(instance: inPlace.instance, events))
        case .members:
            guard let instance = r.u64(), let count = r.u16() else { return nil }
            var nicks: [[UInt8]] = []
            for _ in 0..<count {
                guard let nick = r.string() else { return nil }
                nicks.append(Array(nick))
            }
            message = .members(instance: instance, nicks)
        case .notAMember:
            guard let token = r.u64() else { return nil }
            message = .notAMember(token: token)
        case .refused:
            guard let rawReason = r.u8(), let reason = ChatRefusal(rawValue: rawReason) else { return nil }
            message = .refused(reason)
        default:
            return nil
        }
        return r.atEnd ? (tag, message) : nil
    }
}
