import HelloChatWire

/// The line being typed on a terminal in raw mode: keys in (bytes, as read), the text and
/// the cursor out. No syscalls: the screen draws it (ChatScreen).
///
/// Keys: printable text (UTF-8; a combining mark joins the character before it), Enter,
/// Backspace, Delete, Left and Right, Home and End (also Ctrl-A, Ctrl-E), Ctrl-U (erase to
/// the start), Ctrl-K (to the end), Ctrl-W (the word before), Ctrl-D (end of input on an
/// empty line), Ctrl-C. Other control keys and escape sequences are ignored, and so is any
/// character the screen would have to neutralise (see `isShownAsIs`).
package struct LineEditor {
    package enum Action: Equatable {
        case submit([UInt8])
        case endOfInput
        case interrupt
    }

    package private(set) var text: [Character] = []
    package private(set) var cursor = 0
    /// An escape sequence or a UTF-8 sequence begun in one read and ended in a later one.
    private var escape: [UInt8]?
    private var utf8: [UInt8] = []

    package init() {}

    package mutating func feed(_ bytes: some Sequence<UInt8>) -> [Action] {
        var actions: [Action] = []
        for byte in bytes {
            if let action = key(byte) { actions.append(action) }
        }
        return actions
    }

    private mutating func key(_ byte: UInt8) -> Action? {
        if escape != nil {
            sequence(byte)
            return nil
        }
        if byte >= 0x80 || !utf8.isEmpty {
            character(byte)
            return nil
        }
        switch byte {
        case 0x0d, 0x0a:  // Enter (a paste may bring either)
            let line = Array(String(text).utf8)
            text = []
            cursor = 0
            return .submit(line)
        case 0x7f, 0x08: erase(from: cursor - 1, to: cursor)  // Backspace
        case 0x15: erase(from: 0, to: cursor)  // Ctrl-U
        case 0x0b: erase(from: cursor, to: text.count)  // Ctrl-K
        case 0x17: erase(from: wordStart(), to: cursor)  // Ctrl-W
        case 0x01: cursor = 0  // Ctrl-A
        case 0x05: cursor = text.count  // Ctrl-E
        case 0x03: return .interrupt  // Ctrl-C
        case 0x04:  // Ctrl-D
            if text.isEmpty { return .endOfInput }
            erase(from: cursor, to: cursor + 1)
        case 0x1b: escape = []
        case 0x20..<0x7f: insert(Unicode.Scalar(byte))
        default: break  // another control key
        }
        return nil
    }

    /// CSI and SS3 sequences (ESC [ ... final, ESC O final): the cursor keys and Delete;
    /// ESC with anything else (Alt+key) is dropped with it.
    private mutating func sequence(_ byte: UInt8) {
        guard var bytes = escape else { return }
        bytes.append(byte)
        let introduced = bytes.first == UInt8(ascii: "[") || bytes.first == UInt8(ascii: "O")
        if introduced && (bytes.count == 1 || !(0x40...0x7e).contains(byte)) {
            escape = bytes.count > 16 ? nil : bytes  // not finished (a runaway one is dropped)
            return
        }
        escape = nil
        switch String(decoding: bytes.dropFirst(), as: UTF8.self) {
        case "C": cursor = min(cursor + 1, text.count)
        case "D": cursor = max(cursor - 1, 0)
        case "H", "1~", "7~": cursor = 0
        case "F", "4~", "8~": cursor = text.count
        case "3~": erase(from: cursor, to: cursor + 1)
        default: break
        }
    }

    private mutating func character(_ byte: UInt8) {
        utf8.append(byte)
        let length =
            switch utf8[0] {
            case 0xc2..<0xe0: 2
            case 0xe0..<0xf0: 3
            case 0xf0..<0xf5: 4
            default: 0
            }
        let continues = utf8.count == 1 || (0x80..<0xc0).contains(byte)
        guard length > 0 && continues else {
            utf8 = []  // not UTF-8: dropped
            return
        }
        guard utf8.count == length else { return }
        let decoded = String(decoding: utf8, as: UTF8.self).unicodeScalars
        utf8 = []
        if decoded.count == 1, let scalar = decoded.first, scalar != "\u{FFFD}" { insert(scalar) }
    }

    private mutating func insert(_ scalar: Unicode.Scalar) {
        guard isShownAsIs(scalar) else { return }
        if cursor > 0 {
            let joined = String(text[cursor - 1]) + String(scalar)
            if joined.count == 1 {  // a combining mark, a variation selector, a joiner
                text[cursor - 1] = Character(joined)
                return
            }
        }
        text.insert(Character(scalar), at: cursor)
        cursor += 1
    }

    private mutating func erase(from start: Int, to end: Int) {
        let start = max(start, 0), end = min(end, text.count)
        guard start < end else { return }
        text.removeSubrange(start..<end)
        if cursor > start { cursor = max(start, cursor - (end - start)) }
    }

    private func wordStart() -> Int {
        var i = cursor
        while i > 0 && text[i - 1] == " " { i -= 1 }
        while i > 0 && text[i - 1] != " " { i -= 1 }
        return i
    }
}
