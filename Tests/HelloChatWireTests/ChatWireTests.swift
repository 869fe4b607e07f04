import HelloChatWire
import Testing

@Suite struct ChatWireTests {
    static let messages: [ChatMessage] = [
        .join(
            cookie: .none, secret: ChatSecret(high: 0x1122_3344_5566_7788, low: 0x99aa_bbcc_ddee_ff00), token: 0,
            room: Array("lobby".utf8),
            nick: Array("ada".utf8)),
        .join(
            cookie: ChatCookie(epoch: 7, mac: 0xdead_beef_0bad_f00d), secret: ChatSecret(high: 1, low: ~1), token: 42,
            room: Array(repeating: 0x61, count: 32), nick: Array(repeating: 0x62, count: 32)),
        .say(token: 9, clientSequence: 3, text: Array("hello, world".utf8)),
        .say(token: 9, clientSequence: .max, text: Array(repeating: 0x7a, count: 1000)),
        .say(token: 9, clientSequence: 0, text: []),
        .keepalive(token: 1, highest: 77),
        .leave(token: .max),
        .resend(token: 5, first: 10, count: 64),
        .who(token: 6),
        .nick(token: 7, nick: Array("grace".utf8)),
        .challenge(ChatCookie(epoch: 1, mac: 2)),
        .welcome(token: 3, instance: 4, nextSequence: 5, members: 6),
        .events(
            instance: 8,
            [
                ChatEvent(sequence: 1, kind: .joined, sender: 2, clientSequence: 0, nick: Array("ada".utf8), text: []),
                ChatEvent(
                    sequence: 2, kind: .message, sender: 2, clientSequence: 1, nick: Array("ada".utf8),
                    text: Array("hi".utf8)),
                ChatEvent(
                    sequence: 3, kind: .renamed, sender: 2, clientSequence: 0, nick: Array("ada".utf8),
                    text: Array("lovelace".utf8)),
            ]),
        .events(instance: 8, []),
        .members(instance: 9, [Array("ada".utf8), Array("grace".utf8)]),
        .notAMember(token: 11),
        .refused(.nickTaken),
    ]

    @Test func everyMessageRoundTrips() {
        for (k, message) in Self.messages.enumerated() {
            let tag = UInt64(k) &* 0x9e37_79b9_7f4a_7c15
            let bytes = message.encoded(tag: tag)
            let decoded = ChatMessage.decode(bytes)
            #expect(decoded?.message == message && decoded?.tag == tag, "\(message)")
            #expect(bytes.count <= ChatWire.largestDatagram)
        }
    }

    @Test func theLayoutIsThePublishedOne() {
        let tag: UInt64 = 0x1122_3344_5566_7788
        let tagBytes: [UInt8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        let secret = ChatSecret(high: 0x0102_0304_0506_0708, low: 0x090a_0b0c_0d0e_0f10)
        let join = ChatMessage.join(
            cookie: ChatCookie(epoch: 0x0a0b_0c0d, mac: 0x0e), secret: secret, token: 0x77,
            room: Array("r".utf8), nick: Array("n".utf8)
        ).encoded(tag: tag)
        // version, type, tag; cookie (epoch, MAC); secret; token; room; nick; zeros to 64.
        #expect(join.count == 64)
        #expect(Array(join.prefix(10)) == [2, 1] + tagBytes)
        #expect(Array(join[10..<22]) == [0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 0, 0, 0, 0x0e])
        #expect(Array(join[22..<38]) == Array(1...16))
        #expect(Array(join[38..<46]) == [0, 0, 0, 0, 0, 0, 0, 0x77])
        #expect(Array(join[46..<50]) == [1, 0x72, 1, 0x6e])
        #expect(join[50...].allSatisfy { $0 == 0 })
        // A CHALLENGE: header and cookie, 22 bytes, no padding.
        #expect(
            ChatMessage.challenge(ChatCookie(epoch: 0x0102_0304, mac: 5)).encoded(tag: tag)
                == [2, 129] + tagBytes + [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5])
        #expect(ChatWire.challengeLength == 22)
        #expect(
            ChatMessage.say(token: 1, clientSequence: 2, text: [0x41]).encoded(tag: tag)
                == [2, 2] + tagBytes + [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0x41])
        #expect(ChatMessage.welcome(token: 1, instance: 2, nextSequence: 3, members: 4).encoded(tag: tag).count == 32)
        #expect(ChatMessage.notAMember(token: 1).encoded(tag: tag) == [2, 133] + tagBytes + [0, 0, 0, 0, 0, 0, 0, 1])
        #expect(ChatMessage.refused(.roomFull).encoded(tag: tag) == [2, 134] + tagBytes + [1])
        // An event names its sender by id: eight bytes after sequence and kind.
        let event = ChatEvent(
            sequence: 1, kind: .message, sender: 0x0102_0304_0506_0708, clientSequence: 9, nick: [0x61],
            text: [0x62])
        #expect(
            Array(ChatMessage.events(instance: 3, [event]).encoded(tag: tag).dropFirst(18))
                == [0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9, 1, 0x61, 0, 1, 0x62])
        #expect(ChatWire.eventLength(nick: 32, text: 1000) + ChatWire.eventsHeaderLength <= ChatWire.largestDatagram)
    }

    @Test func aSayIsReadAtItsFixedOffsets() {
        func fields(_ bytes: [UInt8]) -> (tag: UInt64, token: UInt64, sequence: UInt32, text: [UInt8])? {
            bytes.withUnsafeBytes { raw in ChatSay(raw).map { ($0.tag, $0.token, $0.clientSequence, Array($0.text)) } }
        }
        let longest = Array(repeating: UInt8(0x61), count: ChatWire.maxText)
        let say = ChatMessage.say(token: 0x0102_0304_0506_0708, clientSequence: 0x0A0B_0C0D, text: longest)
            .encoded(tag: 0x1112_1314_1516_1718)
        let read = fields(say)
        #expect(read?.tag == 0x1112_1314_1516_1718)
        #expect(read?.token == 0x0102_0304_0506_0708)
        #expect(read?.sequence == 0x0A0B_0C0D)
        #expect(read?.text == longest)
        #expect((0..<say.count).allSatisfy { fields(Array(say.prefix($0))) == nil })  // every cut
        #expect(fields(say + [0]) == nil)
        #expect(fields([1] + Array(say.dropFirst())) == nil)
        #expect(fields(ChatMessage.keepalive(token: 1, highest: 2).encoded(tag: 7)) == nil)
        #expect(
            fields(ChatMessage.say(token: 1, clientSequence: 1, text: longest + [0x61]).encoded(tag: 7)) == nil)
    }

    @Test func malformedRequestsAreRefused() {
        func parses(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { ChatRequest.parse($0) != nil } }
        let say = ChatMessage.say(token: 1, clientSequence: 2, text: Array("hey".utf8)).encoded(tag: 7)
        #expect(parses(say))
        #expect(!parses(Array(say.dropLast())))  // text past the end
        #expect(!parses(say + [0]))  // a byte after the fields
        #expect(!parses([1] + say.dropFirst()))  // another version
        #expect(!parses([3] + say.dropFirst()))
        #expect(!parses([]))
        #expect(!parses([1]))
        #expect(!parses([2, 99]))
        #expect(!parses(Array(say.prefix(9))))  // the tag cut short
        #expect(!parses(ChatMessage.challenge(.none).encoded(tag: 7)))  // a relay's message
        #expect(!parses(ChatMessage.resend(token: 1, first: 1, count: 65).encoded(tag: 7)))
        #expect(
            !parses(
                ChatMessage.say(token: 1, clientSequence: 1, text: Array(repeating: 1, count: 1001)).encoded(tag: 7)))
        var join = ChatMessage.join(
            cookie: ChatCookie(epoch: 1, mac: 1), secret: ChatSecret(high: 1, low: ~1), token: 0, room: [0x72],
            nick: [0x6e]
        ).encoded(tag: 7)
        #expect(parses(join))
        join[50] = 1  // padding after the nick: zeros are not checked, a byte is a byte
        #expect(parses(join))
        join = Array(join.prefix(49))  // the nick past the end
        #expect(!parses(join))
    }

    @Test func theWriterNeverWritesPastItsCapacity() {
        var buffer = [UInt8](repeating: 0xee, count: 40)
        buffer.withUnsafeMutableBytes { raw in
            var w = ChatWriter(raw.baseAddress!, capacity: 20)
            w.say(
                tag: 1, token: 1, clientSequence: 1,
                text: UnsafeRawBufferPointer(start: raw.baseAddress! + 30, count: 10))
            #expect(w.overflowed)
            #expect(w.count <= 20)
        }
        #expect(buffer[20..<30].allSatisfy { $0 == 0xee })
    }

    @Test func names() {
        let good = ["a", "Ada Lovelace", "été", "日本語", "🙂", String(repeating: "x", count: 32)]
        for name in good { #expect(ChatWire.isValidName(Array(name.utf8)), "\(name)") }
        let bad: [[UInt8]] = [
            [], Array(repeating: 0x78, count: 33), [0x00], [0x61, 0x0a], [0x1b, 0x5b, 0x32, 0x4a], [0x7f],
            Array("a\u{85}".utf8), Array("a\u{9f}".utf8), Array("\u{202A}".utf8), Array("x\u{202E}y".utf8),
            Array("\u{2066}".utf8), Array("\u{2069}".utf8),
            [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff], [0x80], [0xc3],
            [0xe6, 0x97],
            // Invisible, spaces other than U+0020, separators, unassigned, format (NamePolicyTests has more).
            Array("a\u{200B}b".utf8), Array("\u{A0}".utf8), Array("\u{2029}".utf8), Array("\u{202F}".utf8),
            Array("\u{2065}".utf8), Array("\u{206A}".utf8),
        ]
        for name in bad { #expect(!ChatWire.isValidName(name), "\(name)") }
        // Next to the refused ranges, allowed.
        for scalar in ["\u{A1}", "\u{2010}", "\u{2030}", "\u{2070}", "\u{1F600}"] {
            #expect(ChatWire.isValidName(Array(scalar.utf8)), "\(scalar.unicodeScalars.first!.value)")
        }
    }
}
