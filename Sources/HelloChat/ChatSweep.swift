import HelloDatagram
import HelloService

extension ChatService {
    /// Evicts the members silent for `evictSeconds`, announced to their rooms. A tick takes
    /// at most `sweepBudget` steps (up to 64 rooms not in use skipped, a word of `occupied`
    /// read, a member looked at) and one pass over the rooms, from where the last one
    /// stopped: its cost is bounded whatever the tables. A member is evicted at most one
    /// pass after its time: ceil(steps of a pass / budget) ticks of 100 ms, a pass taking
    /// at most a step per 64 rooms, per word of a room in use and per member. The default
    /// tables (64 rooms of 32) take at most 2,112 steps: every tick is a whole pass, as when
    /// the sweep was a plain loop; 65,536 rooms of 64, all full, take 65 ticks (6.5 s);
    /// 65,536 rooms of 4,096, all full, 4,160 ticks (7 minutes).
    mutating func sweep(now: UInt64) {
        let wordsPerRoom = roster.wordsPerRoom
        let words = roster.roomCount * wordsPerRoom
        var budget = sweepBudget
        var left = words  // one pass at most: each member looked at once a tick
        while left > 0 && budget > 0 {
            let room = RoomID(index: sweepPosition / wordsPerRoom)
            let word = sweepPosition % wordsPerRoom
            var step = 1
            if roster[room].inUse {
                budget -= evict(in: room, word: word, now: now)
            } else {
                // On to the next room in use, or past the 64 rooms of this word of `roomsInUse`.
                let bits = roster.roomsInUse[room.index / 64] >> UInt64(room.index % 64)
                let next = min(
                    bits == 0 ? (room.index / 64 + 1) * 64 : room.index + bits.trailingZeroBitCount,
                    roster.roomCount)
                step = (next - room.index) * wordsPerRoom - word
            }
            budget -= 1
            left -= step
            sweepPosition += step
            if sweepPosition == words { sweepPosition = 0 }
        }
    }

    /// Evicts the members of word `word` of `room`'s slots silent for `evictSeconds`;
    /// returns how many members it looked at.
    mutating func evict(in room: RoomID, word: Int, now: UInt64) -> Int {
        let evictAfter = settings.evictSeconds * 1_000_000_000
        var bits = roster.occupied[room.index * roster.wordsPerRoom + word]
        let looked = bits.nonzeroBitCount
        while bits != 0 {
            let slot = roster.slot(word * 64 + bits.trailingZeroBitCount, of: room)
            bits &= bits - 1
            let m = roster[slot]
            guard now &- m.lastHeard >= evictAfter && now > m.lastHeard else { continue }
            appendEvent(
                room, kind: .timedOut, sender: m.id, clientSequence: 0, nick: roster.nick(slot),
                text: UnsafeRawBufferPointer(start: nil, count: 0), token: m.token)
            remove(slot)
        }
        return looked
    }
}
