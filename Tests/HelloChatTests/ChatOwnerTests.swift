import HelloChat
import HelloChatWire
import HelloDatagram
import HelloService
import Testing

/// Several chat workers sharing the rooms: which one owns what a datagram is about.
@Suite struct ChatOwnerTests {
    let ada = Endpoint.v4(0x0a00_0001, port: 40001)
    let t0 = 5 * ChatRelay.second

    static func relay(_ worker: Int, of workers: Int) -> ChatRelay {
        var settings = ChatRelay.testSettings
        settings.rooms = 16
        settings.membershipsPerPrefix = 16
        settings.workers = workers
        settings.worker = worker
        return ChatRelay(settings)
    }

    func owner(_ relay: borrowing ChatRelay, _ message: ChatMessage) -> Int? {
        message.encoded().withUnsafeBytes { relay.service.owner(of: Datagram(payload: $0, peer: ada)) }
    }

    static func joinWithCookie(_ room: String) -> ChatMessage {
        .join(
            cookie: ChatCookie(epoch: 1, mac: 42), secret: testSecret(1), token: 0, room: Array(room.utf8),
            nick: Array("n".utf8))
    }

    @Test func everyWorkerAgreesWhoOwnsARoomAndItsTokensSaySo() {
        // ChatRelay is ~Copyable: three of them, by name.
        var r0 = Self.relay(0, of: 3)
        var r1 = Self.relay(1, of: 3)
        var r2 = Self.relay(2, of: 3)
        var owners = Set<Int>()
        for (k, room) in (0..<12).map({ "room \($0)" }).enumerated() {
            let owner = owner(r0, Self.joinWithCookie(room))
            #expect(owner == self.owner(r1, Self.joinWithCookie(room)))
            #expect(owner == self.owner(r2, Self.joinWithCookie(room)))
            guard let owner, owner < 3 else {
                Issue.record("\(room): owner \(String(describing: owner))")
                continue
            }
            owners.insert(owner)
            // Joined where it belongs, the member's token names that worker.
            let token: UInt64
            switch owner {
            case 0: token = r0.join(room, as: "n", from: ada, secret: UInt64(k + 1), now: t0).token
            case 1: token = r1.join(room, as: "n", from: ada, secret: UInt64(k + 1), now: t0).token
            default: token = r2.join(room, as: "n", from: ada, secret: UInt64(k + 1), now: t0).token
            }
            #expect(token != 0 && token >> 56 == UInt64(owner))
            for message in [
                ChatMessage.say(token: token, clientSequence: 1, text: [0x61]), .keepalive(token: token, highest: 0),
                .leave(token: token), .who(token: token),
            ] {
                #expect(
                    self.owner(r0, message) == owner && self.owner(r1, message) == owner
                        && self.owner(r2, message) == owner)
            }
        }
        #expect(owners.count >= 2)  // 12 rooms over 3 workers: not all on one
    }

    @Test func whatAnyWorkerServesAloneHasNoOwner() {
        let relay = Self.relay(1, of: 3)
        // A cookie-less JOIN: a stateless challenge, where it was read.
        #expect(owner(relay, .join(cookie: .none, secret: testSecret(1), token: 0, room: [0x72], nick: [0x6e])) == nil)
        // A token that names no worker: NOT A MEMBER, where it was read.
        #expect(owner(relay, .say(token: 0x07de_adbe_efde_adbe, clientSequence: 1, text: [])) == nil)
        // Not chat at all.
        #expect([UInt8]([1]).withUnsafeBytes { relay.service.owner(of: Datagram(payload: $0, peer: ada)) } == nil)
        #expect(
            Array("Michael and more".utf8).withUnsafeBytes { relay.service.owner(of: Datagram(payload: $0, peer: ada)) }
                == nil)
    }

    @Test func aLoneWorkerOwnsEverythingAndIssuesPlainRandomTokens() {
        var relay = ChatRelay()
        #expect(owner(relay, Self.joinWithCookie("lobby")) == nil)
        let token = relay.join("lobby", as: "ada", from: ada, secret: 1, now: t0).token
        #expect(token != 0)
        #expect(owner(relay, .say(token: token, clientSequence: 1, text: [])) == nil)
    }
}
