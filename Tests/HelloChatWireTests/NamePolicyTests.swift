import HelloChatWire
import Testing

/// The name policy (docs/PROTOCOL.md, "Names"): what a nick or room name may hold, and
/// when two nicks are one.
@Suite struct NamePolicyTests {
    func problem(_ name: String) -> NamePolicy.Problem? { NamePolicy.problem(Array(name.utf8)) }
    func key(_ name: String) -> [UInt32] { NamePolicy.key(Array(name.utf8)) }
    func same(_ a: String, _ b: String) -> Bool { key(a) == key(b) }

    @Test func theThreeLookAlikesOfTheIssue() {
        // Zero-width space: refused outright, whoever else is in the room.
        #expect(problem("alice\u{200B}") == .refused(0x200B))
        // Cyrillic a among Latin letters: mixed scripts.
        #expect(problem("\u{0430}lice") == .mixedScripts)
        // All Cyrillic, reading as "alice": allowed, and the same nick as "alice".
        let cyrillic = "\u{0430}\u{04CF}\u{0456}\u{0441}\u{0435}"
        #expect(problem(cyrillic) == nil)
        #expect(same(cyrillic, "alice"))
        #expect(same("\u{0421}\u{0410}\u{0422}", "CAT"))  // capitals: С А Т
    }

    @Test func caseAndCompatibilityForms() {
        #expect(same("Alice", "alice"))
        #expect(same("ALICE", "alice"))
        #expect(same("ＡＬＩＣＥ", "alice"))  // fullwidth
        #expect(same("ｱﾘｽ", "アリス"))  // halfwidth katakana
        #expect(same("ﬁsh", "fish"))  // the ligature
        #expect(same("Straße", "STRASSE"))  // full case folding
        #expect(same("𝐚𝐥𝐢𝐜𝐞", "alice"))  // mathematical bold
        #expect(!same("alice", "alicia") && !same("alice", "alice2") && !same("al ice", "alice"))
    }

    @Test func invisibleAndFormatCharactersAreRefused() {
        for scalar: UInt32 in [
            0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD, 0x034F, 0x180E, 0x3164, 0x115F,
            0xFE0F, 0xFE00, 0xE0100, 0x200E, 0x200F, 0x061C, 0x202E, 0x2066, 0xE0041, 0x2800,
            0x00A0, 0x3000, 0x2028, 0x2029, 0xE000, 0x0378, 0x1B, 0x7F, 0x85,
        ] {
            let name = "a" + String(Unicode.Scalar(scalar)!) + "b"
            #expect(problem(name) == .refused(scalar), "U+\(String(scalar, radix: 16))")
        }
    }

    @Test func spacesOnlyBetweenOtherCharacters() {
        #expect(problem("Ada Lovelace") == nil)
        for name in [" ada", "ada ", "a  b", " "] { #expect(problem(name) == .space, "\(name)") }
    }

    @Test func precomposedAndCombiningFormsAreOne() {
        #expect(problem("e\u{301}") == nil)
        #expect(same("\u{E9}", "e\u{301}"))
        #expect(same("\u{C9}", "e\u{301}"))  // and its capital
        // Marks in either order, where they do not interact (below, above).
        #expect(same("e\u{323}\u{301}", "e\u{301}\u{323}"))
        #expect(same("\u{1EB9}\u{301}", "e\u{301}\u{323}"))  // ẹ precomposed
        #expect(!same("e\u{301}", "e\u{300}") && !same("e\u{301}", "e"))
        #expect(same("한", "\u{1112}\u{1161}\u{11AB}"))  // a Hangul syllable and its jamo
    }

    @Test func rightToLeftScriptsAreFineOnTheirOwn() {
        for name in ["שלום", "سلام", "مرحبا 123", "אליס"] { #expect(problem(name) == nil, "\(name)") }
        #expect(problem("שalom") == .mixedScripts)
        #expect(problem("a\u{202E}b") == .refused(0x202E))
    }

    @Test func scriptMixing() {
        for name in ["alice", "алиса", "άλφα", "日本語", "東京tokyo", "ひらがなカタカナ漢字", "中文ㄅㄆ", "한국어abc", "ada_99!"] {
            #expect(problem(name) == nil, "\(name)")
        }
        for name in ["p\u{0430}ypal", "\u{03BF}k", "алиса\u{0391}", "한국어ひらがな", "ㄅ한"] {
            #expect(problem(name) == .mixedScripts, "\(name)")
        }
        // Greek and Cyrillic that read as Latin, each on its own.
        #expect(same("ΒΟΒ", "bob") && same("\u{0412}\u{041E}\u{0412}", "bob"))
        #expect(same("\u{03BD}", "v") && same("\u{039D}", "n"))
    }

    @Test func emojiAreSingleScalarsWithoutSelectorsOrJoiners() {
        #expect(problem("🙂") == nil && problem("ada🚀") == nil && problem("\u{2764}") == nil)
        #expect(problem("👍🏽") == nil)  // a skin-tone modifier is a symbol of its own
        #expect(problem("\u{2764}\u{FE0F}") == .refused(0xFE0F))
        #expect(problem("👩\u{200D}💻") == .refused(0x200D))
    }

    @Test func lengthAndEncoding() {
        #expect(problem("") == .length)
        #expect(problem(String(repeating: "x", count: 33)) == .length)
        #expect(problem(String(repeating: "x", count: 32)) == nil)
        #expect(NamePolicy.problem([0xC0, 0xAF]) == .notUTF8)
        #expect(NamePolicy.problem([0xED, 0xA0, 0x80]) == .notUTF8)
    }

    /// The longest keys fit: every scalar's key is within `longestKey` for 32 bytes of it.
    @Test func longestKeys() {
        let worst = String(repeating: "\u{FDFA}", count: 10)  // 18 scalars each, 3 bytes
        #expect(problem(worst) == nil)
        #expect(key(worst).count == 180 && key(worst).count <= NamePolicy.longestKey)
        #expect(key("가나다라마바사아자차") == key("가나다라마바사아자차"))
    }

    @Test func theClientsMessagesAreOneLine() {
        for p: NamePolicy.Problem in [.length, .notUTF8, .refused(0x200B), .space, .mixedScripts] {
            #expect(!p.description.contains("\n"))
        }
        #expect(NamePolicy.Problem.refused(0x200B).description.contains("U+200B"))
    }
}
