/// SHA-256 (FIPS 180-4) of a short message, for the chat's ids: one JOIN's 16-byte secret.
///
/// Written here rather than taken from swift-crypto: the relay hashes one secret per JOIN,
/// and swift-crypto would bring BoringSSL into both shipped binaries (and minutes into every
/// clean build) for that. Nothing here allocates: the message schedule lives on the stack.
/// Checked against FIPS 180-4's examples and, over the wire, against Python's hashlib.
public enum SHA256 {
    /// The digest of `message` (up to 55 bytes: one block), as four big-endian words of 64 bits.
    public static func hash(_ message: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64, UInt64) {
        precondition(message.count <= 55, "one block")
        return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            // The one padded block: the message, 0x80, zeros, the length in bits.
            withUnsafeTemporaryAllocation(byteCount: 64, alignment: 4) { block in
                block.initializeMemory(as: UInt8.self, repeating: 0)
                if let base = message.baseAddress, message.count > 0 {
                    block.baseAddress!.copyMemory(from: base, byteCount: message.count)
                }
                block[message.count] = 0x80
                block.storeBytes(of: UInt64(message.count * 8).bigEndian, toByteOffset: 56, as: UInt64.self)
                for t in 0..<16 { w[t] = UInt32(bigEndian: block.load(fromByteOffset: t * 4, as: UInt32.self)) }
            }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, h) = initial
            for t in 0..<64 {
                let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            let i = initial
            func join(_ x: UInt32, _ y: UInt32) -> UInt64 { UInt64(x) << 32 | UInt64(y) }
            return (
                join(i.0 &+ a, i.1 &+ b), join(i.2 &+ c, i.3 &+ d), join(i.4 &+ e, i.5 &+ f), join(i.6 &+ g, i.7 &+ h)
            )
        }
    }

    @inline(__always)
    static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }

    static let initial: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19)

    /// The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}
