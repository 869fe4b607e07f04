import HelloChatWire
import Testing

/// What the network sends made harmless to show, class by class of hostile input.
@Suite struct NeutraliserTests {
    func shown(_ bytes: [UInt8]) -> String { neutralised(bytes) }
    func shown(_ text: String) -> String { neutralised(Array(text.utf8)) }

    @Test func textIsShownAsItIs() {
        #expect(shown("hello, wörld: 你好 👋🏽 é") == "hello, wörld: 你好 👋🏽 é")
    }

    @Test func c0ControlsShowAsHex() {
        #expect(shown("\u{1b}[2J\u{1b}]0;owned\u{07}") == "\\x1b[2J\\x1b]0;owned\\x07")
        #expect(shown([0x00, 0x09, 0x0a, 0x0d, 0x1f]) == "\\x00\\x09\\x0a\\x0d\\x1f")
    }

    @Test func delShowsAsHex() {
        #expect(shown([0x61, 0x7f, 0x62]) == "a\\x7fb")
    }

    @Test func c1ControlsInUTF8ShowAsHex() {
        // U+009B (CSI), U+0085 (NEL), U+0080 and U+009F: the bounds of C1.
        #expect(shown([0xc2, 0x9b, 0x32, 0x4a, 0xc2, 0x85, 0xc2, 0x80, 0xc2, 0x9f]) == "\\x9b2J\\x85\\x80\\x9f")
        #expect(shown([0xc2, 0xa0]) == "\u{a0}")  // just past C1: shown
    }

    @Test func c1ControlsAsBareBytesAreNotUTF8() {
        #expect(shown([0x9b, 0x32, 0x4a, 0x90, 0x9d]) == "\u{FFFD}2J\u{FFFD}\u{FFFD}")
    }

    @Test func bidirectionalControlsShowAsCodePoints() {
        let controls: [Unicode.Scalar] = [
            "\u{061C}", "\u{200E}", "\u{200F}", "\u{202A}", "\u{202B}", "\u{202C}", "\u{202D}",
            "\u{202E}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}",
        ]
        for c in controls {
            let hex = String(c.value, radix: 16)
            #expect(shown("a\(c)b") == "a\\u\(String(repeating: "0", count: 4 - hex.count))\(hex)b")
        }
        #expect(shown("\u{200D}") == "\u{200D}")  // a joiner is no bidirectional control
    }

    @Test func invalidUTF8ShowsAsReplacementCharacters() {
        #expect(shown([0xc0, 0xaf]) == "\u{FFFD}\u{FFFD}")  // overlong "/"
        #expect(shown([0xed, 0xa0, 0x80]) == "\u{FFFD}\u{FFFD}\u{FFFD}")  // a surrogate
        #expect(shown([0xe2, 0x82, 0x61]) == "\u{FFFD}a")  // cut short
        #expect(shown([0xf4, 0x90, 0x80, 0x80]).unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })  // past U+10FFFF
        #expect(shown([0xff, 0x1b]) == "\u{FFFD}\\x1b")
    }

    @Test func aVeryLongLineOfControlsStaysHarmless() {
        let hostile = [UInt8](repeating: 0x1b, count: 100_000) + [0xc2, 0x9b] + Array("\u{202E}".utf8)
        let out = shown(hostile)
        #expect(out.unicodeScalars.allSatisfy { isShownAsIs($0) })
        #expect(out.utf8.count == 100_000 * 4 + 4 + 6)
    }
}
