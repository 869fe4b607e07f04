import Foundation
import HelloChatWire
import Testing

/// The Swift codec against the shared byte vectors of Tests/vectors/chat-wire.txt, which
/// the Python codec's tests read too (Tests/integration/test_chatwire_vectors.py): the two
/// encoders agree byte for byte on every message of the protocol, and the Swift decoder
/// takes each one back.
struct SharedVectorTests {
    // The values every vector uses, the same in test_chatwire_vectors.py.
    static let tag: UInt64 = 0x0102_0304_0506_0708
    static let token: UInt64 = 0x1112_1314_1516_1718
    static let secret = ChatSecret(high: 0x2021_2223_2425_2627, low: 0x2829_2a2b_2c2d_2e2f)
    static let cookie = ChatCookie(epoch: 0x3132_3334, mac: 0x3536_3738_393a_3b3c)
    static let instance: UInt64 = 0x4142_4344_4546_4748

    /// Each message of the protocol, encoded by ChatWire: name and bytes.
    static var ours: [String: [UInt8]] {
        let id = secret.id
        let messages: [String: ChatMessage] = [
            "join-without-cookie": .join(
                cookie: .none, secret: secret, token: 0, room: Array("lobby".utf8),
                nick: Array("ada".utf8)),
            "join-rebinding": .join(
                cookie: cookie, secret: secret, token: token, room: Array("lobby".utf8),
                nick: Array("ada".utf8)),
            "say": .say(token: token, clientSequence: 3, text: Array("hi".utf8)),
            "keepalive": .keepalive(token: token, highest: 6),
            "leave": .leave(token: token),
            "resend": .resend(token: token, first: 5, count: 2),
            "who": .who(token: token),
            "nick": .nick(token: token, nick: Array("Ada".utf8)),
            "challenge": .challenge(cookie),
            "welcome": .welcome(token: token, instance: instance, nextSequence: 9, members: 2),
            "events": .events(
                instance: instance,
                [
                    ChatEvent(
                        sequence: 7, kind: .message, sender: id, clientSequence: 3, nick: Array("ada".utf8),
                        text: Array("hi".utf8)),
                    ChatEvent(
                        sequence: 8, kind: .renamed, sender: id, clientSequence: 0, nick: Array("ada".utf8),
                        text: Array("Ada".utf8)),
                ]),
            "members": .members(instance: instance, [Array("ada".utf8), Array("bob".utf8)]),
            "not-a-member": .notAMember(token: token),
            "refused": .refused(.nickTaken),
        ]
        var found = messages.mapValues { $0.encoded(tag: tag) }
        for (name, token) in [("v1-refusal", UInt64(0)), ("v1-not-a-member", token)] {
            var bytes = [UInt8](repeating: 0, count: 64)
            let count = bytes.withUnsafeMutableBytes { raw in
                var w = ChatWriter(raw.baseAddress!, capacity: raw.count)
                w.legacyRefusal(token: token)
                return w.count
            }
            found[name] = Array(bytes[..<count])
        }
        return found
    }

    /// The file's vectors: name and bytes.
    static func shared() throws -> [String: [UInt8]] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../vectors/chat-wire.txt").standardizedFileURL
        var found: [String: [UInt8]] = [:]
        for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            try #require(fields.count == 2, "\(line)")
            let hex = Array(fields[1].utf8)
            found[String(fields[0])] = stride(from: 0, to: hex.count, by: 2).map {
                UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)!
            }
        }
        return found
    }

    @Test func theSwiftCodecEncodesEverySharedVectorByteForByte() throws {
        let (ours, theirs) = (Self.ours, try Self.shared())
        #expect(ours.keys.sorted() == theirs.keys.sorted())
        for (name, bytes) in ours { #expect(bytes == theirs[name], "\(name)") }
    }

    @Test func theSwiftDecoderTakesEveryVersion2VectorBack() throws {
        let ours = Self.ours
        for (name, bytes) in try Self.shared() where !name.hasPrefix("v1-") {
            let decoded = try #require(ChatMessage.decode(bytes), "\(name)")
            #expect(decoded.tag == Self.tag, "\(name)")
            #expect(decoded.message.encoded(tag: Self.tag) == ours[name], "\(name)")
        }
    }
}
