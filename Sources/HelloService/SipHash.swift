/// SipHash-2-4 with a 64-bit tag (Aumasson and Bernstein, 2012): a keyed MAC fast on short
/// inputs, what the chat relay's cookies and tokens are made with. Written here rather than
/// taken from the standard library: `Hasher` is seeded per process and its algorithm is not
/// a promise, and a cookie must be the same MAC tomorrow that it was today.
///
/// Incremental and allocation-free: feed bytes or 64-bit words (little-endian, as the
/// reference reads its input), then `finalize`.
public struct SipHasher {
    /// The 128-bit key as the reference reads it: bytes 0-7 and 8-15, each little-endian.
    public typealias Key = (UInt64, UInt64)

    @usableFromInline var v0, v1, v2, v3: UInt64
    /// Bytes not yet compressed, the first in the lowest bits.
    @usableFromInline var tail: UInt64 = 0
    @usableFromInline var tailCount = 0
    @usableFromInline var length = 0

    @inlinable
    public init(key: Key) {
        v0 = key.0 ^ 0x736f_6d65_7073_6575
        v1 = key.1 ^ 0x646f_7261_6e64_6f6d
        v2 = key.0 ^ 0x6c79_6765_6e65_7261
        v3 = key.1 ^ 0x7465_6462_7974_6573
    }

    @inlinable @inline(__always)
    mutating func round() {
        v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
        v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
        v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
        v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
    }

    @inlinable @inline(__always)
    mutating func compress(_ m: UInt64) {
        v3 ^= m
        round()
        round()
        v0 ^= m
    }

    @inlinable
    public mutating func append(_ byte: UInt8) {
        tail |= UInt64(byte) << UInt64(8 * tailCount)
        tailCount += 1
        length += 1
        if tailCount == 8 {
            compress(tail)
            tail = 0
            tailCount = 0
        }
    }

    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes { append(byte) }
    }

    /// Eight bytes, least significant first.
    @inlinable
    public mutating func append(_ word: UInt64) {
        if tailCount == 0 {
            compress(word)
            length += 8
        } else {
            for i in 0..<8 { append(UInt8(truncatingIfNeeded: word >> UInt64(8 * i))) }
        }
    }

    @inlinable
    public consuming func finalize() -> UInt64 {
        compress(UInt64(truncatingIfNeeded: length) << 56 | tail)
        v2 ^= 0xff
        round()
        round()
        round()
        round()
        return v0 ^ v1 ^ v2 ^ v3
    }

    /// The tag of `bytes` under `key`.
    @inlinable
    public static func hash(key: Key, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = SipHasher(key: key)
        hasher.append(bytes)
        return hasher.finalize()
    }

    /// The tag of two words (16 bytes): how the relay derives keys and tokens from its secret.
    @inlinable
    public static func hash(key: Key, _ a: UInt64, _ b: UInt64) -> UInt64 {
        var hasher = SipHasher(key: key)
        hasher.append(a)
        hasher.append(b)
        return hasher.finalize()
    }
}

extension UInt64 {
    @inlinable @inline(__always)
    func rotatedLeft(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}
