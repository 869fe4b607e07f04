import HelloClient
import Testing

/// The line typed on a terminal, key by key.
@Suite struct LineEditorTests {
    func typed(_ keys: String) -> (String, Int, [LineEditor.Action]) {
        var editor = LineEditor()
        let actions = editor.feed(Array(keys.utf8))
        return (String(editor.text), editor.cursor, actions)
    }

    @Test func enterSubmitsTheLine() {
        var editor = LineEditor()
        #expect(editor.feed(Array("hi\r".utf8)) == [.submit(Array("hi".utf8))])
        #expect(editor.text.isEmpty && editor.cursor == 0)
    }

    @Test func theEditingKeys() {
        #expect(typed("abc\u{7f}").0 == "ab")  // Backspace
        #expect(typed("abc\u{1b}[D\u{1b}[D\u{1b}[3~").0 == "ac")  // Left, Left, Delete
        #expect(typed("abc\u{01}x").0 == "xabc")  // Ctrl-A
        #expect(typed("abc\u{01}\u{05}x").0 == "abcx")  // Ctrl-E
        #expect(typed("one two\u{17}").0 == "one ")  // Ctrl-W
        #expect(typed("abc\u{1b}[D\u{15}").0 == "c")  // Ctrl-U
        #expect(typed("abc\u{1b}[D\u{0b}").0 == "ab")  // Ctrl-K
        #expect(typed("abc\u{1b}[H\u{1b}[C").1 == 1)  // Home, Right
    }

    @Test func ctrlDOnAnEmptyLineEndsAndCtrlCInterrupts() {
        #expect(typed("\u{04}").2 == [.endOfInput])
        #expect(typed("ab\u{01}\u{04}").0 == "b")  // not empty: Delete
        #expect(typed("\u{03}").2 == [.interrupt])
    }

    @Test func utf8SplitAcrossReadsIsOneCharacter() {
        var editor = LineEditor()
        let bytes = Array("é你".utf8)
        _ = editor.feed(bytes[..<1])
        _ = editor.feed(bytes[1..<3])
        _ = editor.feed(bytes[3...])
        #expect(String(editor.text) == "é你")
        _ = editor.feed([0x7f])
        #expect(String(editor.text) == "é")
    }

    @Test func controlsEscapesAndWhatWouldBeNeutralisedAreNotTyped() {
        #expect(typed("a\u{1b}[31mb\u{1b}xc\u{07}").0 == "abc")
        #expect(typed("a\u{202E}b\u{9b}c\u{85}").0 == "abc")  // bidi and C1 (as UTF-8)
        var editor = LineEditor()
        _ = editor.feed([0x61, 0xff, 0x9b, 0xc0, 0xaf, 0x62])  // not UTF-8, a bare C1 byte, an overlong "/"
        #expect(String(editor.text) == "ab")
    }
}
