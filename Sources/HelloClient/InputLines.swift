import HelloChatWire

/// Bytes read from a pipe cut into lines. A line longer than any message is refused whole
/// later: of one with no end yet, no more is kept than shows that (the rest up to its
/// newline is dropped as it comes), so a pipe without newlines cannot fill memory.
package struct InputLines {
    static let newline = UInt8(ascii: "\n")
    /// A line's bytes kept at most, its newline not yet read: one more than a message holds.
    package static let longestKept = ChatWire.maxText + 1

    private var partial: [UInt8] = []

    package init() {}

    /// Whether a whole line waits to be taken (the pipe is then not read further).
    package var hasWholeLine: Bool { partial.contains(Self.newline) }

    package mutating func append(_ bytes: some Sequence<UInt8>) {
        partial += bytes
        bound()
    }

    /// The next whole line, without its newline.
    package mutating func next() -> [UInt8]? {
        guard let newline = partial.firstIndex(of: Self.newline) else { return nil }
        let line = Array(partial[..<newline])
        partial.removeSubrange(...newline)
        bound()
        return line
    }

    /// At the end of input: the last line, if it had no newline.
    package mutating func rest() -> [UInt8]? {
        defer { partial = [] }
        return partial.isEmpty ? nil : partial
    }

    private mutating func bound() {
        if partial.count > Self.longestKept && !hasWholeLine {
            partial.removeLast(partial.count - Self.longestKept)
        }
    }
}
