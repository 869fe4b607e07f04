import HelloChatWire
import HelloDatagram
import HelloService
import Testing

@testable import HelloChat

/// The backlog (ChatBacklog.swift) on its own: what is stored comes back by name.
@Suite struct ChatBacklogTests {
    func withBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        Array(s.utf8).withUnsafeBytes(body)
    }

    @Test func aStoredEventsHeaderKindAndClientSequenceComeBack() {
        let backlog = ChatBacklog(rooms: 3, length: 4, maxMessage: 100)
        let room = RoomID(index: 2)
        withBytes("alice") { nick in
            withBytes("hello") { text in
                backlog.store(
                    room, sequence: 9, kind: .message, sender: 0x5e, clientSequence: 0x0102_0304,
                    nick: nick, text: text, token: 0xdead_beef_0000_0001)
                let event = backlog[room, 9]
                #expect(event.header.token == 0xdead_beef_0000_0001)
                #expect(Int(event.header.length) == ChatWire.eventLength(nick: nick.count, text: text.count))
                #expect(event.kind == .message && event.clientSequence == 0x0102_0304)
                // The bytes are the event as ChatWriter writes it.
                var expected = [UInt8](repeating: 0, count: 256)
                let n = expected.withUnsafeMutableBytes { buffer in
                    var w = ChatWriter(buffer.baseAddress!, capacity: buffer.count)
                    w.event(
                        sequence: 9, kind: .message, sender: 0x5e, clientSequence: 0x0102_0304, nick: nick, text: text)
                    return w.count
                }
                #expect(Array(event.bytes) == Array(expected[..<n]))
            }
        }
    }

    @Test func aRoomKeepsItsLastEventsAndNoOtherRoomsSlots() {
        let backlog = ChatBacklog(rooms: 2, length: 4, maxMessage: 0)
        withBytes("bob") { nick in
            for sequence: UInt32 in 1...6 {
                for room in 0..<2 {
                    backlog.store(
                        RoomID(index: room), sequence: sequence, kind: .joined, sender: UInt64(room),
                        clientSequence: sequence * 10 + UInt32(room), nick: nick,
                        text: UnsafeRawBufferPointer(start: nil, count: 0), token: UInt64(room))
                }
            }
            for sequence: UInt32 in 3...6 {
                for room in 0..<2 {
                    let event = backlog[RoomID(index: room), sequence]
                    #expect(event.kind == .joined && event.clientSequence == sequence * 10 + UInt32(room))
                    #expect(event.header.token == UInt64(room))
                }
            }
        }
    }

    @Test func aSlotHoldsTheLongestEventAndStaysAligned() {
        for maxMessage in [0, 1, 31, 1000] {
            let stride = ChatBacklog.stride(maxMessage: maxMessage)
            #expect(stride % 8 == 0 && MemoryLayout<StoredEventHeader>.size == StoredEvent.headerSize)
            let longest = ChatWire.eventLength(nick: ChatWire.maxName, text: max(maxMessage, ChatWire.maxName))
            #expect(stride >= StoredEvent.headerSize + longest)
        }
    }
}
