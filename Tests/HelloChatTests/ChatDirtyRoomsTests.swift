import HelloService
import Testing

@testable import HelloChat

/// The fan-out's list of rooms to send (ChatFanOut.swift, DirtyRooms) on its own.
@Suite struct ChatDirtyRoomsTests {
    func rooms(_ dirty: borrowing DirtyRooms) -> [Int] { (0..<dirty.count).map { Int(dirty.rooms[$0]) } }

    @Test func heldRoomsAreTheNextPassInTheirOrder() {
        var dirty = DirtyRooms(capacity: 8)
        for room in [5, 2, 7, 1] { dirty.append(RoomID(index: room)) }
        var sent: [Int] = []
        while let room = dirty.current {
            if room.index % 2 == 1 {
                dirty.holdCurrent()
            } else {
                sent.append(room.index)
                dirty.advance()
            }
        }
        dirty.endPass()
        #expect(sent == [2] && rooms(dirty) == [5, 7, 1] && dirty.held == 0)
        #expect(dirty.cursor == (0, 0) && dirty.current == RoomID(index: 5))
        dirty.append(RoomID(index: 3))  // a room dirtied since goes after them
        #expect(rooms(dirty) == [5, 7, 1, 3])
    }

    @Test func aPassStoppedInARoomResumesAtItsMember() {
        var dirty = DirtyRooms(capacity: 4)
        dirty.append(RoomID(index: 0))
        dirty.append(RoomID(index: 1))
        dirty.advance()
        dirty.cursor.member = 17  // the outbox filled at member 17 of room 1
        #expect(dirty.current == RoomID(index: 1) && dirty.cursor == (1, 17))
        dirty.advance()
        #expect(dirty.current == nil)
        dirty.endPass()
        #expect(dirty.count == 0)
    }
}
