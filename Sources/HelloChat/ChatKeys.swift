import HelloChatWire
import HelloDatagram
import HelloService

/// What each key the relay derives from its secret is for. Each label is the first word
/// hashed with the secret (`ChatKeys`); a 128-bit key takes its label and the next number,
/// so no two labels share a word (`words`). Tokens, cookies and the instance id travel on
/// the wire: their labels never change.
package enum ChatKeyLabel: UInt64, CaseIterable {
    /// A cookie key (128 bits), the epoch's number the second word.
    case epoch = 1
    /// Tokens (128 bits).
    case token = 3
    /// The relay's instance id (64 bits).
    case instance = 5
    /// The seed of the unproven answers' per-endpoint table.
    case answerBudgetSeed = 7
    /// Which worker owns a room (128 bits).
    case roomPlacement = 8
    /// The join limiter's seed.
    case joinLimiterSeed = 10
    /// The per-prefix membership counts (128 bits).
    case prefixCount = 12
    /// Nicks' keys (128 bits).
    case nickKey = 14
    /// The room-name index (128 bits). It once shared 10 with the join limiter's seed.
    case roomName = 16

    /// The words this label takes: two for a key, one for a seed or an id.
    package var words: [UInt64] {
        switch self {
        case .instance, .answerBudgetSeed, .joinLimiterSeed: [rawValue]
        default: [rawValue, rawValue + 1]
        }
    }
}

/// Keys derived from the relay's 128-bit secret, one label each.
package struct ChatKeys {
    let secret: SipHasher.Key

    package init(secret: SipHasher.Key) { self.secret = secret }

    /// A 64-bit value (an id, a seed) for `label`.
    package func word(_ label: ChatKeyLabel, _ n: UInt64 = 0) -> UInt64 {
        SipHasher.hash(key: secret, label.rawValue, n)
    }

    /// A 128-bit key for `label`.
    package func key(_ label: ChatKeyLabel, _ n: UInt64 = 0) -> SipHasher.Key {
        (SipHasher.hash(key: secret, label.rawValue, n), SipHasher.hash(key: secret, label.rawValue + 1, n))
    }
}

/// What proves a source: cookies, a MAC of its address under a key of the epoch, taken in
/// the current epoch and the one before; and the tokens that name members, random, with
/// the worker that owns the member's room in the top byte when several share the rooms.
package struct ChatCredentials {
    let keys: ChatKeys
    let epochLength: UInt64
    let tokenKey: SipHasher.Key
    /// The top byte every token carries (nil: one worker, all 64 bits random).
    let worker: UInt64?
    var tokensIssued: UInt64 = 0
    package private(set) var epoch: (number: UInt32, current: SipHasher.Key, previous: SipHasher.Key) = (
        0, (0, 0), (0, 0)
    )

    package init(keys: ChatKeys, epochSeconds: UInt64, workers: Int, worker: Int) {
        self.keys = keys
        epochLength = epochSeconds * 1_000_000_000
        tokenKey = keys.key(.token)
        self.worker = workers > 1 ? UInt64(worker) : nil
    }

    package mutating func refresh(_ now: UInt64) {
        let number = UInt32(truncatingIfNeeded: now / epochLength) &+ 1
        guard number != epoch.number else { return }
        let previous = number &- 1 == epoch.number ? epoch.current : keys.key(.epoch, UInt64(number &- 1))
        epoch = (number, keys.key(.epoch, UInt64(number)), previous)
    }

    /// The cookie of `peer` in the current epoch.
    package func cookie(for peer: Endpoint) -> ChatCookie { cookie(for: peer, epoch: epoch.number) }

    /// The cookie of `peer` in epoch `number`: a MAC over its address, port and the epoch,
    /// under that epoch's key.
    package func cookie(for peer: Endpoint, epoch number: UInt32) -> ChatCookie {
        let key =
            number == epoch.number
            ? epoch.current
            : number == epoch.number &- 1 ? epoch.previous : keys.key(.epoch, UInt64(number))
        var h = SipHasher(key: key)
        h.append(UInt64(peer.family == .v4 ? 4 : 6))
        h.append(peer.address.high)
        h.append(peer.address.low)
        h.append(UInt64(peer.port) | UInt64(number) << 16)
        return ChatCookie(epoch: number, mac: h.finalize())
    }

    /// Whether `cookie` is `peer`'s, of the current epoch or the one before.
    package func isValid(_ cookie: ChatCookie, for peer: Endpoint) -> Bool {
        guard !cookie.isNone, cookie.epoch == epoch.number || cookie.epoch == epoch.number &- 1 else { return false }
        return self.cookie(for: peer, epoch: cookie.epoch).mac == cookie.mac
    }

    /// A new token, never 0, for which `isFree` is true (no member holds it).
    package mutating func newToken(isFree: (UInt64) -> Bool) -> UInt64 {
        while true {
            tokensIssued += 1
            let random = SipHasher.hash(key: tokenKey, tokensIssued, 0)
            let token = worker.map { random & ~(0xff << 56) | $0 << 56 } ?? random
            if token != 0 && isFree(token) { return token }
        }
    }
}
