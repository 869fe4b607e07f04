/// Lines waiting to be shown, `capacity` bytes of them at most: a relay can send faster
/// than a terminal or a pipe takes lines, and what does not fit is counted instead of kept,
/// then said in one line where it was left out.
package struct OutputQueue {
    package static let capacity = 64 * 1024

    private var lines: [String] = []
    private var first = 0
    private var bytes = 0
    /// Lines left out since the last one queued.
    package private(set) var skipped = 0

    package init() {}

    package mutating func append(_ line: String) {
        if skipped > 0 {
            let note = Self.skippedNote(skipped)
            guard bytes + note.utf8.count + line.utf8.count <= Self.capacity else {
                skipped += 1
                return
            }
            skipped = 0
            push(note)
        } else if bytes + line.utf8.count > Self.capacity {
            skipped = 1
            return
        }
        push(line)
    }

    /// The oldest line, if any; the note of those left out when nothing else waits.
    package mutating func next() -> String? {
        guard first < lines.count else {
            guard skipped > 0 else { return nil }
            defer { skipped = 0 }
            return Self.skippedNote(skipped)
        }
        let line = lines[first]
        first += 1
        bytes -= line.utf8.count
        if first == lines.count || first >= 1024 {  // the taken ones go, now and then
            lines.removeFirst(first)
            first = 0
        }
        return line
    }

    package static func skippedNote(_ count: Int) -> String {
        "* skipped \(count) event(s) (the relay sent faster than they were shown)"
    }

    private mutating func push(_ line: String) {
        lines.append(line)
        bytes += line.utf8.count
    }
}
