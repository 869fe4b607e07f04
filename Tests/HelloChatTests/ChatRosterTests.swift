import HelloDatagram
import HelloService
import Testing

@testable import HelloChat

/// The roster (ChatRoster.swift) on its own: slots, rooms and their free stack, tokens,
/// prefixes, with its tables checked after each step.
@Suite struct ChatRosterTests {
    let keys = ChatKeys(secret: (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210))

    func roster(rooms: Int = 3, perRoom: Int = 70) -> ChatRoster {
        ChatRoster(rooms: rooms, perRoom: perRoom, keys: keys, prefixLengths: (32, 64))
    }

    func member(_ token: UInt64, _ address: UInt32 = 0x0a00_0001) -> ChatRoster.Member {
        ChatRoster.Member(token: token, peer: .v4(address, port: 4000 + UInt16(token % 1000)))
    }

    func open(_ roster: inout ChatRoster, _ name: String) -> RoomID {
        Array(name.utf8).withUnsafeBytes { roster.openRoom(named: $0, hash: roster.roomNameHash($0), first: 1) }
    }

    func add(_ roster: inout ChatRoster, _ m: ChatRoster.Member, _ nick: String, to room: RoomID) -> MemberSlot {
        Array(nick.utf8).withUnsafeBytes { roster.add(m, nick: $0, to: room) }
    }

    @Test func aMemberSlotKnowsItsRoom() {
        #expect(MemberSlot(139, perRoom: 70).room == RoomID(index: 1))
        #expect(MemberSlot(140, perRoom: 70).room == RoomID(index: 2))
        #expect(roster().slot(5, of: RoomID(index: 2)) == MemberSlot(145, perRoom: 70))
    }

    @Test func membersTakeTheLowestFreeSlotPastAWordAndAreFoundByToken() {
        var r = roster()
        let room = open(&r, "lobby")
        #expect(room == RoomID(index: 0))  // room 0 on top of the free stack
        let slots = (1...66).map { add(&r, member(UInt64($0)), "n\($0)", to: room) }
        #expect(slots.map(\.index) == Array(0..<66))
        #expect(r.remove(slots[64]) == false && r.remove(slots[3]) == false)
        #expect(add(&r, member(100), "again", to: room).index == 3)
        #expect(add(&r, member(101), "other", to: room).index == 64)
        #expect(r.member(token: 101)?.index == 64 && r.member(token: 4) == nil && r.member(token: 0) == nil)
        #expect(r[room].memberCount == 66 && Array(r.nick(slots[0])) == Array("n1".utf8))
        #expect(r.problems() == [])
    }

    @Test func aRoomLeftEmptyIsFreedAndOpenedFirstAgain() {
        var r = roster()
        let a = open(&r, "a")
        let b = open(&r, "b")
        let alone = add(&r, member(7), "x", to: b)
        _ = add(&r, member(8), "y", to: a)
        #expect(Array("b".utf8).withUnsafeBytes { r.room(named: $0, hash: r.roomNameHash($0)) } == b)
        #expect(r.remove(alone) == true)
        #expect(Array("b".utf8).withUnsafeBytes { r.room(named: $0, hash: r.roomNameHash($0)) } == nil)
        #expect(!r[b].inUse && r.freeRoomCount == 2 && r.problems() == [])
        #expect(open(&r, "c") == b)
    }

    @Test func aMoveCountsTheMembershipUnderTheNewPrefix() {
        var r = roster()
        let room = open(&r, "lobby")
        let slot = add(&r, member(1, 0x0a00_0001), "x", to: room)
        _ = add(&r, member(2, 0x0a00_0001), "y", to: room)
        #expect(r.memberships(of: .v4(0x0a00_0001, port: 1)) == 2)
        r.move(slot, to: .v4(0x0a00_0002, port: 9))
        #expect(r.memberships(of: .v4(0x0a00_0001, port: 1)) == 1 && r.memberships(of: .v4(0x0a00_0002, port: 1)) == 1)
        #expect(r[slot].peer == .v4(0x0a00_0002, port: 9) && r.problems() == [])
    }

    @Test func aNickThatReadsAsAnothersIsTakenButOnesOwnIsNot() {
        var r = roster()
        let room = open(&r, "lobby")
        let alice = add(&r, member(1), "alice", to: room)
        Array("alice".utf8).withUnsafeBytes { nick in
            #expect(r.nameRefusal(nick, in: room) == .nickTaken)
            #expect(r.nameRefusal(nick, in: room, except: alice) == nil)
            #expect(r.nameRefusal(nick, in: nil) == nil)
        }
    }
}
