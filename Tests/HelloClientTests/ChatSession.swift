import HelloChatWire
import HelloClient

/// A chat client driven as the loop in `hello` drives it, without a socket or a clock: the
/// time is set by hand, and what it sends is decoded back into messages.
struct ChatSession {
    static let tag: UInt64 = 0x7467_7467_7467_7467
    static let secret = ChatSecret(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210)
    static let id = secret.id
    static let address = "192.0.2.1:6000"
    static let room = Array("lobby".utf8)
    static let ms: UInt64 = 1_000_000
    static let timeout = 500 * ms
    static let keepalive = 10_000 * ms
    static let cookie = ChatCookie(epoch: 3, mac: 0xc00c1e)
    static let token: UInt64 = 0x70ce
    static let instance: UInt64 = 0x1457

    var client: ChatClient
    var now: UInt64 = 0
    /// Everything asked for so far, in order.
    var effects: [ChatEffect] = []

    init(nick: String = "ada", attempts: Int = 3, terminal: Bool = false) {
        client = ChatClient(
            ChatSettings(
                address: Self.address, room: Self.room, nick: Array(nick.utf8), secret: Self.secret,
                tag: Self.tag, timeout: Self.timeout, attempts: attempts,
                keepalive: Self.keepalive, terminal: terminal))
    }

    // MARK: Inputs

    @discardableResult
    mutating func input(_ input: ChatInput) -> [ChatEffect] {
        let new = client.handle(input, now: now)
        effects += new
        return new
    }

    @discardableResult
    mutating func receive(_ message: ChatMessage, tag: UInt64 = tag) -> [ChatEffect] {
        input(.datagram(message.encoded(tag: tag)))
    }

    @discardableResult
    mutating func tick(at time: UInt64) -> [ChatEffect] {
        now = time
        return input(.tick)
    }

    @discardableResult
    mutating func type(_ line: String) -> [ChatEffect] { input(.line(Array(line.utf8))) }

    /// The relay's events to us, under `instance`.
    @discardableResult
    mutating func events(_ events: ChatEvent..., instance: UInt64 = instance) -> [ChatEffect] {
        receive(.events(instance: instance, events))
    }

    /// The whole join: the first JOIN, the CHALLENGE, the JOIN with its cookie, the WELCOME.
    mutating func join(instance: UInt64 = instance, token: UInt64 = token) {
        tick(at: now)
        receive(.challenge(Self.cookie))
        receive(.welcome(token: token, instance: instance, nextSequence: 1, members: 1))
    }

    // MARK: Effects read back

    static func sent(_ effects: [ChatEffect]) -> [ChatMessage] {
        effects.compactMap {
            guard case .send(let bytes) = $0, let (tag, message) = ChatMessage.decode(bytes), tag == Self.tag else {
                return nil
            }
            return message
        }
    }

    static func printed(_ effects: [ChatEffect]) -> [String] {
        effects.compactMap { if case .print(let line) = $0 { line } else { nil } }
    }

    static func notes(_ effects: [ChatEffect]) -> [String] {
        effects.compactMap { if case .note(let text) = $0 { text } else { nil } }
    }

    struct Exit: Equatable {
        let code: Int32
        let message: String?
        init(_ code: Int32, _ message: String? = nil) {
            self.code = code
            self.message = message
        }
    }

    static func exit(_ effects: [ChatEffect]) -> Exit? {
        for case let .exit(code, message) in effects { return Exit(code, message) }
        return nil
    }

    static func says(_ effects: [ChatEffect]) -> [(clientSequence: UInt32, text: String)] {
        sent(effects).compactMap {
            if case let .say(_, sequence, text) = $0 { (sequence, String(decoding: text, as: UTF8.self)) } else { nil }
        }
    }

    var printed: [String] { Self.printed(effects) }
}

/// An event as the relay would send it.
func event(
    _ sequence: UInt32, _ kind: ChatEventKind, from sender: UInt64 = 0xb0b, clientSequence: UInt32 = 0,
    nick: String = "bob", _ text: String = ""
) -> ChatEvent {
    ChatEvent(
        sequence: sequence, kind: kind, sender: sender, clientSequence: clientSequence, nick: Array(nick.utf8),
        text: Array(text.utf8))
}

/// Our own event, as the relay names us.
func own(
    _ sequence: UInt32, _ kind: ChatEventKind, clientSequence: UInt32 = 0, nick: String = "ada", _ text: String = ""
) -> ChatEvent {
    event(sequence, kind, from: ChatSession.id, clientSequence: clientSequence, nick: nick, text)
}
