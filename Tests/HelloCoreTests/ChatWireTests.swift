import HelloCore
import HelloDatagram
import Testing

@Suite struct ChatWireTests {
    static let messages: [ChatMessage] = [
        .join(cookie: .none, session: 0x1122_3344_5566_7788, token: 0, room: Array("lobby".utf8), nick: Array("ada".utf8)),
        .join(cookie: ChatCookie(epoch: 7, mac: 0xdead_beef_0bad_f00d), session: 1, token: 42,
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
        .events(instance: 8, [
            ChatEvent(sequence: 1, kind: .joined, session: 2, clientSequence: 0, nick: Array("ada".utf8), text: []),
            ChatEvent(sequence: 2, kind: .message, session: 2, clientSequence: 1, nick: Array("ada".utf8),
                      text: Array("hi".utf8)),
            ChatEvent(sequence: 3, kind: .renamed, session: 2, clientSequence: 0, nick: Array("ada".utf8),
                      text: Array("lovelace".utf8)),
        ]),
        .events(instance: 8, []),
        .members(instance: 9, [Array("ada".utf8), Array("grace".utf8)]),
        .notAMember(token: 11),
        .refused(.nickTaken),
    ]

    @Test func everyMessageRoundTrips() {
        for message in Self.messages {
            let bytes = message.encoded()
            #expect(ChatMessage.decode(bytes) == message, "\(message)")
            #expect(bytes.count <= ChatWire.largestDatagram)
        }
    }

    @Test func theLayoutIsThePublishedOne() {
        let join = ChatMessage.join(cookie: .none, session: 1, token: 0, room: Array("r".utf8), nick: Array("n".utf8)).encoded()
        #expect(join.count == 64)
        #expect(Array(join.prefix(2)) == [1, 1])
        #expect(Array(join[34..<38]) == [1, 0x72, 1, 0x6e])
        #expect(join[38...].allSatisfy { $0 == 0 })
        #expect(ChatMessage.challenge(ChatCookie(epoch: 0x0102_0304, mac: 5)).encoded()
                == [1, 129, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0] + Array(repeating: 0, count: 46))
        #expect(ChatMessage.say(token: 1, clientSequence: 2, text: [0x41]).encoded()
                == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0x41])
        #expect(ChatMessage.welcome(token: 1, instance: 2, nextSequence: 3, members: 4).encoded().count == 24)
        #expect(ChatMessage.notAMember(token: 1).encoded().count == 10)
        #expect(ChatWire.eventLength(nick: 32, text: 1000) + ChatWire.eventsHeaderLength <= ChatWire.largestDatagram)
    }

    @Test func malformedRequestsAreRefused() {
        func parses(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { ChatRequest.parse($0) != nil } }
        let say = ChatMessage.say(token: 1, clientSequence: 2, text: Array("hey".utf8)).encoded()
        #expect(parses(say))
        #expect(!parses(Array(say.dropLast())))  // text past the end
        #expect(!parses(say + [0]))  // a byte after the fields
        #expect(!parses([2] + say.dropFirst()))  // another version
        #expect(!parses([]))
        #expect(!parses([1]))
        #expect(!parses([1, 99]))
        #expect(!parses(ChatMessage.challenge(.none).encoded()))  // a relay's message
        #expect(!parses(ChatMessage.resend(token: 1, first: 1, count: 65).encoded()))
        #expect(!parses(ChatMessage.say(token: 1, clientSequence: 1, text: Array(repeating: 1, count: 1001)).encoded()))
        var join = ChatMessage.join(cookie: ChatCookie(epoch: 1, mac: 1), session: 1, token: 0, room: [0x72], nick: [0x6e]).encoded()
        #expect(parses(join))
        join[14] = 1  // the cookie's four zero bytes
        #expect(!parses(join))
    }

    @Test func theWriterNeverWritesPastItsCapacity() {
        var buffer = [UInt8](repeating: 0xee, count: 40)
        buffer.withUnsafeMutableBytes { raw in
            var w = ChatWriter(raw.baseAddress!, capacity: 20)
            w.say(token: 1, clientSequence: 1, text: UnsafeRawBufferPointer(start: raw.baseAddress! + 30, count: 10))
            #expect(w.overflowed)
            #expect(w.count <= 20)
        }
        #expect(buffer[20..<30].allSatisfy { $0 == 0xee })
        // 20 bytes of room: a 24-byte WELCOME does not fit and leaves nothing behind.
        var outbox = Outbox(capacity: 2, largestDatagram: 10)
        let peer = Endpoint.v4(0x0a00_0001, port: 5000)
        #expect(!outbox.write(to: peer, from: nil) { $0.welcome(token: 1, instance: 1, nextSequence: 1, members: 1) })
        #expect(outbox.count == 0 && outbox.bufferUsed == 0)
        #expect(outbox.write(to: peer, from: nil) { $0.notAMember(token: 1) })
        #expect(!outbox.write(limit: 9, to: peer, from: nil) { $0.notAMember(token: 1) })
        #expect(outbox.count == 1 && outbox.bufferUsed == 10)
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
