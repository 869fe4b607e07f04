import HelloChatWire
import HelloClient
import Testing

/// A pipe's bytes cut into lines, and the room's lines queued for a slow terminal.
@Suite struct InputTests {
    @Test func linesAreCutAtNewlines() {
        var lines = InputLines()
        lines.append(Array("one\ntwo\r\nthr".utf8))
        #expect(lines.hasWholeLine)
        #expect(lines.next() == Array("one".utf8))
        #expect(lines.next() == Array("two\r".utf8))
        #expect(lines.next() == nil)
        #expect(!lines.hasWholeLine)
        lines.append(Array("ee".utf8))
        #expect(lines.rest() == Array("three".utf8))
        #expect(lines.rest() == nil)
    }

    @Test func aLineWithoutEndKeepsNoMoreThanShowsItIsTooLong() {
        var lines = InputLines()
        for _ in 0..<100 { lines.append([UInt8](repeating: 0x78, count: 65536)) }
        lines.append(Array("\nnext\n".utf8))
        #expect(lines.next()?.count == InputLines.longestKept)
        #expect(lines.next() == Array("next".utf8))
    }

    @Test func aFloodOfLinesIsBoundedAndTheSkippedCounted() {
        var queue = OutputQueue()
        let line = String(repeating: "x", count: 1000)
        for _ in 0..<100 { queue.append(line) }
        var shown = 0, notes: [String] = []
        while let next = queue.next() {
            if next == line { shown += 1 } else { notes.append(next) }
        }
        #expect(shown == OutputQueue.capacity / 1000)
        #expect(notes == [OutputQueue.skippedNote(100 - shown)])
    }
}
