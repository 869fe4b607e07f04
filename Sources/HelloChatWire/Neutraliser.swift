/// Text from the network made harmless to show: control characters (C0, DEL, C1) as \xNN,
/// bidirectional controls (marks, embeddings, overrides, isolates) as \uNNNN, bytes that are
/// not UTF-8 as U+FFFD. An escape sequence then shows as text and cannot drive a terminal.
package func neutralised(_ bytes: [UInt8]) -> String {
    var out = String.UnicodeScalarView()
    var input = bytes.makeIterator()
    var decoder = UTF8()
    func escape(_ prefix: String, _ value: UInt32, digits: Int) {
        let hex = String(value, radix: 16)
        out.append(
            contentsOf: (prefix + String(repeating: "0", count: max(digits - hex.count, 0)) + hex).unicodeScalars)
    }
    loop: while true {
        switch decoder.decode(&input) {
        case .scalarValue(let scalar):
            if isShownAsIs(scalar) {
                out.append(scalar)
            } else if scalar.value < 0x100 {
                escape("\\x", scalar.value, digits: 2)
            } else {
                escape("\\u", scalar.value, digits: 4)
            }
        case .emptyInput: break loop
        case .error: out.append("\u{FFFD}")
        }
    }
    return String(out)
}

/// Whether a character can be shown as it is: not a control character (C0, DEL, C1) nor a
/// bidirectional control (marks, embeddings, overrides, isolates).
package func isShownAsIs(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0..<0x20, 0x7f...0x9f, 0x061c, 0x200e, 0x200f, 0x202a...0x202e, 0x2066...0x2069: false
    default: true
    }
}
