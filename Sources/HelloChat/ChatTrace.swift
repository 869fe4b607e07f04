import HelloChatWire
import HelloDatagram
import HelloService

extension ChatService {
    /// For the trace: the request's type and its room, named by a JOIN or by the member its
    /// token names. A datagram that does not parse names what its header says, if anything.
    public func describe(_ datagram: Datagram, into note: inout TraceNote) {
        let bytes = datagram.payload
        guard datagram.continuation.isEmpty, bytes.count >= 2, bytes[0] == ChatWire.version,
            let type = ChatType(rawValue: bytes[1]), let name = Self.traceName(type)
        else { return }
        note.request = name
        guard let (_, request) = ChatRequest.parse(bytes) else { return }
        let token: UInt64
        switch request {
        case .join(let join):
            note.setRoom(join.room)
            return
        case .say(let t, _, _), .keepalive(let t, _), .leave(let t), .resend(let t, _, _), .who(let t), .nick(let t, _):
            token = t
        }
        if let slot = roster.member(token: token) {
            note.setRoom(roster.name(of: slot.room))
        }
    }

    /// A request's type as docs/PROTOCOL.md names it; nil for a relay's.
    static func traceName(_ type: ChatType) -> StaticString? {
        switch type {
        case .join: "JOIN"
        case .say: "SAY"
        case .keepalive: "KEEPALIVE"
        case .leave: "LEAVE"
        case .resend: "RESEND"
        case .who: "WHO"
        case .nick: "NICK"
        case .challenge, .welcome, .events, .members, .notAMember, .refused: nil
        }
    }
}
