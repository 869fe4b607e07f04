import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// What the relay tells the trace of a datagram: its request's type and its room, from a
/// JOIN or from the member its token names.
@Suite struct ChatTraceTests {
    let alice = Endpoint.v4(0x7f00_0001, port: 40001)

    func note(_ relay: borrowing ChatRelay, _ bytes: [UInt8], from peer: Endpoint) -> (String, String) {
        var note = TraceNote()
        bytes.withUnsafeBytes { relay.service.describe(Datagram(payload: $0, peer: peer), into: &note) }
        return ("\(note.request)", note.withRoom { String(decoding: $0, as: UTF8.self) })
    }

    @Test func aJoinNamesItsRoomAndAMembersRequestTheRoomItIsIn() {
        var relay = ChatRelay()
        let join = ChatMessage.join(
            cookie: ChatCookie(epoch: 1, mac: 2), secret: testSecret(1), token: 0, room: Array("lobby".utf8),
            nick: Array("al".utf8))
        #expect(note(relay, join.encoded(tag: 7, joinPadding: 64), from: alice) == ("JOIN", "lobby"))
        let (token, _) = relay.join("lobby", as: "al", from: alice, secret: 1, now: 1)
        let say = ChatMessage.say(token: token, clientSequence: 1, text: Array("hi".utf8))
        #expect(note(relay, say.encoded(tag: 7), from: alice) == ("SAY", "lobby"))
        let leave = ChatMessage.leave(token: token)
        #expect(note(relay, leave.encoded(tag: 7), from: alice) == ("LEAVE", "lobby"))
        // A token the relay does not know names no room; the request is still named.
        let stranger = ChatMessage.who(token: token ^ 1)
        #expect(note(relay, stranger.encoded(tag: 7), from: alice) == ("WHO", ""))
    }

    @Test func whatDoesNotParseNamesOnlyWhatItsHeaderSays() {
        let relay = ChatRelay()
        #expect(note(relay, [ChatWire.version, 1, 0, 0], from: alice) == ("JOIN", ""))  // a short JOIN
        #expect(note(relay, Array("Michael".utf8), from: alice) == ("", ""))
        #expect(note(relay, [ChatWire.version, 129] + [UInt8](repeating: 0, count: 20), from: alice) == ("", ""))
        #expect(note(relay, [ChatWire.legacyVersion, 1] + [UInt8](repeating: 0, count: 62), from: alice) == ("", ""))
    }

    @Test func aRoomNameIsKeptAsSentUpToItsLimit() {
        var note = TraceNote()
        let long = [UInt8](repeating: 0x41, count: 40) + [0x1b]
        long.withUnsafeBytes { note.setRoom($0) }
        #expect(note.roomLength == UInt8(TraceNote.roomCapacity))
        #expect(note.withRoom { Array($0) } == [UInt8](repeating: 0x41, count: 32))
    }
}
