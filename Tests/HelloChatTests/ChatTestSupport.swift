import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService

/// The secret a test's client `n` holds: distinct for distinct `n`, never all zero.
func testSecret(_ n: UInt64) -> ChatSecret {
    ChatSecret(high: n ^ 0x5eed_0000_0000_0000, low: n &* 0x9e37_79b9_7f4a_7c15 ^ 0x0123_4567_89ab_cdef)
}

/// The tag a test's client at `peer` puts in what it sends: one per address and port.
func testTag(_ peer: Endpoint) -> UInt64 {
    let family: UInt64 = peer.family == .v4 ? 4 : 6
    return SipHasher.hash(
        key: (peer.address.high ^ family << 56, peer.address.low ^ UInt64(peer.port) << 32),
        0x7461_6773, 0x7465_7374) | 1
}

extension ChatMessage {
    /// The datagram with the tag tests use when the tag is not what they are about.
    func encoded(joinPadding: Int = ChatWire.joinLength) -> [UInt8] {
        encoded(tag: ChatMessage.defaultTestTag, joinPadding: joinPadding)
    }

    static let defaultTestTag: UInt64 = 0x7465_7374_7461_6721
}
