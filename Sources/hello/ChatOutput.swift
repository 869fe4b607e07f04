import Glibc

/// Lines waiting to be shown, `capacity` bytes of them at most: a relay can send faster
/// than a terminal or a pipe takes lines, and what does not fit is counted instead of kept,
/// then said in one line where it was left out.
struct OutputQueue {
    static let capacity = 64 * 1024

    private var lines: [String] = []
    private var first = 0
    private var bytes = 0
    /// Lines left out since the last one queued.
    private(set) var skipped = 0

    mutating func append(_ line: String) {
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
    mutating func next() -> String? {
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

    static func skippedNote(_ count: Int) -> String {
        "* skipped \(count) event(s) (the relay sent faster than they were shown)"
    }

    private mutating func push(_ line: String) {
        lines.append(line)
        bytes += line.utf8.count
    }
}

/// Bytes on their way to a terminal or a pipe, written a chunk at a time once poll(2) says
/// it takes more: a chunk up to PIPE_BUF goes into a pipe whole, without waiting.
struct PendingOutput {
    static let chunk = Int(PIPE_BUF)

    private(set) var bytes: [UInt8] = []

    mutating func append(_ more: some Sequence<UInt8>) {
        bytes += more
    }

    /// One chunk written (or `limit` bytes); false once `fd` takes no more (it is gone).
    @discardableResult
    mutating func write(to fd: Int32, atMost limit: Int = chunk) -> Bool {
        let n = bytes.prefix(limit).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else {
            if errno == EINTR || errno == EAGAIN { return true }
            bytes = []  // the terminal or the reader is gone: nothing more to show
            return false
        }
        bytes.removeFirst(n)
        return true
    }

    /// Everything written, waiting as long as it takes (on the way out).
    mutating func writeAll(to fd: Int32) {
        while !bytes.isEmpty && write(to: fd, atMost: bytes.count) {}
    }
}
