import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// The relay's keys (ChatKeys.swift): one label each, and the cookies' epochs.
@Suite struct ChatKeysTests {
    let secret: SipHasher.Key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
    var keys: ChatKeys { ChatKeys(secret: secret) }

    @Test func noTwoLabelsShareAWord() {
        let words = ChatKeyLabel.allCases.flatMap(\.words)
        #expect(Set(words).count == words.count)
    }

    @Test func everyLabelDerivesADistinctKey() {
        let derived = ChatKeyLabel.allCases.flatMap { label in
            label.words.count == 2 ? [keys.key(label).0, keys.key(label).1] : [keys.word(label)]
        }
        #expect(Set(derived).count == derived.count)
        #expect(keys.word(.instance) == keys.key(.instance).0)
        #expect(ChatKeys(secret: (1, 2)).word(.instance) != keys.word(.instance))
    }

    @Test func theWireVisibleLabelsKeepTheirNumbers() {
        // Tokens, cookies and the instance id are on the wire: as hellod derived them before.
        #expect(keys.word(.instance) == SipHasher.hash(key: secret, 5, 0))
        #expect(keys.key(.token) == (SipHasher.hash(key: secret, 3, 0), SipHasher.hash(key: secret, 4, 0)))
        #expect(keys.key(.epoch, 9) == (SipHasher.hash(key: secret, 1, 9), SipHasher.hash(key: secret, 2, 9)))
    }

    let second: UInt64 = 1_000_000_000

    func credentials(at now: UInt64) -> ChatCredentials {
        var c = ChatCredentials(keys: keys, epochSeconds: 10, workers: 1, worker: 0)
        c.refresh(now)
        return c
    }

    @Test func aCookieIsTakenInItsEpochAndTheNextOnly() {
        let peer = Endpoint.v4(0x0a00_0001, port: 4000)
        let cookie = credentials(at: 5 * second).cookie(for: peer)
        #expect(cookie.epoch == 1)
        #expect(credentials(at: 9 * second).isValid(cookie, for: peer))
        #expect(credentials(at: 19 * second).isValid(cookie, for: peer))
        #expect(!credentials(at: 20 * second).isValid(cookie, for: peer))
        // Another port, a forged MAC, no cookie: never.
        #expect(!credentials(at: 5 * second).isValid(cookie, for: .v4(0x0a00_0001, port: 4001)))
        #expect(!credentials(at: 5 * second).isValid(ChatCookie(epoch: 1, mac: cookie.mac ^ 1), for: peer))
        #expect(!credentials(at: 5 * second).isValid(.none, for: peer))
    }

    @Test func anEpochsKeyIsTheSameWhetherRefreshedThroughOrJumpedTo() {
        let peer = Endpoint.v6(high: 0x2001_0db8 << 32, low: 7, port: 9)
        var stepped = credentials(at: 0)
        for s in 0...UInt64(35) { stepped.refresh(s * second) }
        let jumped = credentials(at: 35 * second)
        #expect(stepped.cookie(for: peer) == jumped.cookie(for: peer))
        #expect(stepped.cookie(for: peer, epoch: 3) == jumped.cookie(for: peer, epoch: 3))
    }

    @Test func tokensAreNeverZeroNeverTakenAndNameTheirWorker() {
        var c = ChatCredentials(keys: keys, epochSeconds: 10, workers: 4, worker: 3)
        var issued = Set<UInt64>()
        for _ in 0..<100 {
            let token = c.newToken { !issued.contains($0) }
            #expect(token != 0 && token >> 56 == 3)
            #expect(issued.insert(token).inserted)
        }
        var one = ChatCredentials(keys: keys, epochSeconds: 10, workers: 1, worker: 0)
        let first = one.newToken { _ in true }
        var again = ChatCredentials(keys: keys, epochSeconds: 10, workers: 1, worker: 0)
        #expect(again.newToken { $0 != first } != first)
    }
}
