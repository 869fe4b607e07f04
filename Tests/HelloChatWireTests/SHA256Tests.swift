import HelloChatWire
import Testing

/// SHA-256 as FIPS 180-4 gives it (the digests below are Python hashlib's), and a secret's
/// id: the first 8 bytes of its digest, big-endian.
@Suite struct SHA256Tests {
    func hex(_ message: [UInt8]) -> String {
        let (a, b, c, d) = message.withUnsafeBytes { SHA256.hash($0) }
        return [a, b, c, d].map { word in
            let digits = String(word, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }

    @Test func fipsVectors() {
        #expect(hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // 55 bytes: the longest message one block holds (its 0x80 and length fill it).
        #expect(
            hex(Array(repeating: 0x61, count: 55)) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"
        )
        #expect(
            hex((0..<55).map { UInt8($0) })
                == "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59")
    }

    /// The id events name a member by: hashlib.sha256(secret).digest()[:8], the secret's 16
    /// bytes high word first.
    @Test func aSecretsIdIsTheFirstEightBytesOfItsDigest() {
        #expect(ChatSecret(high: 0x0102_0304_0506_0708, low: 0x090a_0b0c_0d0e_0f10).id == 0x5dfb_abee_df31_8bf3)
        #expect(ChatSecret(high: .max, low: 1).id == 0x7e6f_1ad0_dcc7_26b7)
    }
}
