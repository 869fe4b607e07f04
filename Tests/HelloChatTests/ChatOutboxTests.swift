import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The relay's way of writing a chat message into its outbox (`Outbox.write`).
struct ChatOutboxTests {
    @Test func aMessageThatDoesNotFitLeavesNothingBehind() {
        // 20 bytes of room: a 32-byte WELCOME does not fit and leaves nothing behind.
        var outbox = Outbox(capacity: 2, largestDatagram: 10)
        let peer = Endpoint.v4(0x0a00_0001, port: 5000)
        #expect(
            !outbox.write(to: peer, from: nil) {
                $0.welcome(tag: 1, token: 1, instance: 1, nextSequence: 1, members: 1)
            })
        #expect(outbox.count == 0 && outbox.bufferUsed == 0)
        #expect(outbox.write(to: peer, from: nil) { $0.notAMember(tag: 1, token: 1) })
        #expect(outbox.count == 1 && outbox.bufferUsed == 18)
        // Room enough, but over the limit: nothing; at the limit, written.
        var roomy = Outbox(capacity: 2, largestDatagram: 100)
        #expect(!roomy.write(limit: 17, to: peer, from: nil) { $0.notAMember(tag: 1, token: 1) })
        #expect(roomy.count == 0 && roomy.bufferUsed == 0)
        #expect(roomy.write(limit: 18, to: peer, from: nil) { $0.notAMember(tag: 1, token: 1) })
    }
}
