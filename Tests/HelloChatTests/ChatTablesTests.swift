import HelloChat
import HelloDatagram
import HelloFuzzHarness
import HelloService
import Testing

/// The chat relay's tables (ChatTables.swift): the room-name index and the per-prefix
/// membership counts on their own, with hashes chosen to collide; then through the relay,
/// what a user sees of them (a place given back by a leave, an eviction, a move), with the
/// tables recounted the slow way after each step (`tableProblems`).
@Suite struct ChatTablesTests {
    /// Checks that exactly the slots of `present` are found, each under its hash.
    func expectFinds(
        _ index: borrowing SlotIndex, _ present: [Int: UInt64], among slots: Range<Int>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for slot in slots {
            let hash = present[slot] ?? 0
            let found = index.find(hash) { $0 == slot }
            #expect(found == (present[slot] == nil ? nil : slot), "slot \(slot)", sourceLocation: sourceLocation)
        }
        #expect(index.count == present.count, sourceLocation: sourceLocation)
    }

    @Test func slotsUnderOneHashAreAllFoundAfterAnyIsRemoved() {
        // 8 slots, one hash: one probe run of 8, each removed from the middle in turn.
        for removed in 0..<8 {
            var index = SlotIndex(capacity: 8)
            var present: [Int: UInt64] = [:]
            for slot in 0..<8 {
                index.insert(slot, hash: 0x55)
                present[slot] = 0x55
            }
            expectFinds(index, present, among: 0..<8)
            index.remove(removed, hash: 0x55)
            present[removed] = nil
            expectFinds(index, present, among: 0..<8)
            index.insert(removed, hash: 0x55)
            present[removed] = 0x55
            expectFinds(index, present, among: 0..<8)
        }
    }

    @Test func aRemovalInTheMiddleOfARunThatWrapsKeepsTheRestFindable() {
        // A table of 16 (capacity 8): homes 14, 14, 15, 0, 14, 1 fill 14, 15, 0, 1, 2, 3.
        // Different hashes with the same home: the hash, not the home, must match.
        let hashes: [UInt64] = [0x10e, 0x20e, 0x30f, 0x400, 0x50e, 0x601]
        for removed in hashes.indices {
            var index = SlotIndex(capacity: 8)
            var present: [Int: UInt64] = [:]
            for (slot, hash) in hashes.enumerated() {
                index.insert(slot, hash: hash)
                present[slot] = hash
            }
            index.remove(removed, hash: hashes[removed])
            present[removed] = nil
            expectFinds(index, present, among: 0..<hashes.count)
            // A hash that is no slot's, with a home in the run, finds nothing.
            #expect(index.find(0x70e) { _ in true } == nil)
        }
    }

    @Test func randomInsertsAndRemovesMatchABruteForceMap() {
        var rng = SplitMix64(seed: 0x5107_1dec)
        for _ in 0..<50 {
            let capacity = rng.int(1...24)
            var index = SlotIndex(capacity: capacity)
            var present: [Int: UInt64] = [:]
            for _ in 0..<200 {
                let slot = rng.int(0...capacity - 1)
                if let hash = present[slot] {
                    index.remove(slot, hash: hash)
                    present[slot] = nil
                } else {
                    // Few distinct homes, so that runs are long and wrap.
                    let hash = UInt64(rng.int(0...3)) << 32 | UInt64(rng.pick([0, 1, 2, 13, 14, 15, 30, 31]))
                    index.insert(slot, hash: hash)
                    present[slot] = hash
                }
                expectFinds(index, present, among: 0..<capacity)
            }
        }
    }

    let key: SipHasher.Key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)

    func prefix(_ peer: Endpoint, v4 bits4: Int = 32, v6 bits6: Int = 64) -> SourcePrefix {
        SourcePrefix(peer, ipv4Length: bits4, ipv6Length: bits6)
    }

    @Test func prefixesAreIPv4Slash32AndIPv6Slash64() {
        let a = Endpoint.v4(0x0a00_0001, port: 1000)
        #expect(prefix(a) == prefix(.v4(0x0a00_0001, port: 2000)))
        #expect(prefix(a) != prefix(.v4(0x0a00_0002, port: 1000)))
        #expect(prefix(a, v4: 24) == prefix(.v4(0x0a00_00fe, port: 1000), v4: 24))
        let b = Endpoint.v6(high: 0x2001_0db8_0000_0001, low: 1, port: 1000)
        #expect(prefix(b) == prefix(.v6(high: 0x2001_0db8_0000_0001, low: 0xffff_0000_1234_5678, port: 9)))
        #expect(prefix(b) != prefix(.v6(high: 0x2001_0db8_0000_0002, low: 1, port: 1000)))
        #expect(prefix(b, v6: 128) != prefix(.v6(high: 0x2001_0db8_0000_0001, low: 2, port: 1000), v6: 128))
        // The same bits in the other family are another prefix: 10.0.0.1 and ::a00:1/128.
        #expect(prefix(a) != prefix(.v6(high: 0, low: 0x0a00_0001, port: 1000), v6: 128))

        var counts = PrefixCounts(capacity: 8, key: key)
        counts.add(prefix(a))
        counts.add(prefix(.v4(0x0a00_0001, port: 2000)))
        counts.add(prefix(b))
        #expect(counts.count(of: prefix(a)) == 2 && counts.count(of: prefix(b)) == 1 && counts.prefixes == 2)
        #expect(counts.count(of: prefix(.v6(high: 0, low: 0x0a00_0001, port: 1000), v6: 128)) == 0)
        counts.subtract(prefix(a))
        counts.subtract(prefix(b))
        #expect(counts.count(of: prefix(a)) == 1 && counts.count(of: prefix(b)) == 0 && counts.prefixes == 1)
    }

    @Test func prefixesWithOneHomeKeepTheirCountsWhenOneInTheMiddleGoes() {
        var counts = PrefixCounts(capacity: 8, key: key)  // a table of 16
        // Five IPv4 and IPv6 prefixes whose probe runs start at the same place.
        var same: [SourcePrefix] = []
        let home = counts.home(prefix(.v4(0x0a00_0000, port: 1)))
        var k: UInt64 = 0
        while same.count < 5 {
            let p =
                k % 2 == 0
                ? prefix(.v4(0x0a00_0000 + UInt32(k), port: 1))
                : prefix(.v6(high: 0x2001_0db8 << 32 | k, low: 0, port: 1))
            if counts.home(p) == home { same.append(p) }
            k += 1
        }
        for removed in same.indices {
            for (i, p) in same.enumerated() {
                for _ in 0...i { counts.add(p) }  // counts 1, 2, 3, 4, 5
            }
            for _ in 0...removed { counts.subtract(same[removed]) }
            for (i, p) in same.enumerated() {
                #expect(counts.count(of: p) == (i == removed ? 0 : i + 1), "removed \(removed), prefix \(i)")
            }
            #expect(counts.prefixes == 4)
            for (i, p) in same.enumerated() where i != removed {
                for _ in 0...i { counts.subtract(p) }
            }
            #expect(counts.prefixes == 0)
            for p in same { #expect(counts.count(of: p) == 0) }
        }
    }

    @Test func randomPrefixCountsMatchABruteForceMap() {
        var rng = SplitMix64(seed: 0x9f1e_f1c5)
        for _ in 0..<50 {
            let capacity = rng.int(1...24)
            var counts = PrefixCounts(capacity: capacity, key: (rng.next(), rng.next()))
            var truth: [SourcePrefix: Int] = [:]
            var held: [SourcePrefix] = []  // one entry a membership
            let universe = (0..<12).map { k -> SourcePrefix in
                k % 2 == 0
                    ? prefix(.v4(0x0a00_0000 + UInt32(k), port: 1)) : prefix(.v6(high: UInt64(k), low: 0, port: 1))
            }
            for _ in 0..<300 {
                if !held.isEmpty && (held.count == capacity || rng.oneIn(2)) {
                    let p = held.remove(at: rng.int(0...held.count - 1))
                    counts.subtract(p)
                    truth[p]! -= 1
                    if truth[p] == 0 { truth[p] = nil }
                } else {
                    let p = rng.pick(universe)
                    counts.add(p)
                    held.append(p)
                    truth[p, default: 0] += 1
                }
                for p in universe { #expect(counts.count(of: p) == truth[p] ?? 0) }
                #expect(counts.prefixes == truth.count)
            }
        }
    }

    // MARK: Through the relay

    let t0 = 5 * ChatRelay.second

    func limited(_ limit: Int, _ change: (inout ChatSettings) -> Void = { _ in }) -> ChatRelay {
        var settings = ChatRelay.testSettings
        settings.membershipsPerPrefix = limit
        change(&settings)
        return ChatRelay(settings)
    }

    func expectTables(_ relay: borrowing ChatRelay, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(relay.service.tableProblems() == [], sourceLocation: sourceLocation)
    }

    @Test func aLeaveGivesItsPrefixItsPlaceBack() {
        var relay = limited(2)
        let a = Endpoint.v4(0x0a00_0001, port: 40001)
        let first = relay.join("a", as: "x", from: a, secret: 1, now: t0)
        #expect(relay.join("b", as: "x", from: .v4(0x0a00_0001, port: 40002), secret: 2, now: t0).token != 0)
        #expect(relay.join("c", as: "x", from: .v4(0x0a00_0001, port: 40003), secret: 3, now: t0).token == 0)
        // Another /32 has places of its own.
        #expect(relay.join("c", as: "y", from: .v4(0x0a00_0002, port: 40003), secret: 4, now: t0).token != 0)
        expectTables(relay)
        relay.send(.leave(token: first.token), from: a, now: t0 + 1)
        expectTables(relay)
        #expect(relay.join("c", as: "x", from: .v4(0x0a00_0001, port: 40003), secret: 5, now: t0 + 2).token != 0)
        expectTables(relay)
    }

    @Test func anEvictionGivesItsPrefixItsPlaceBack() {
        var relay = limited(1)
        let s = ChatRelay.second
        let a = Endpoint.v4(0x0a00_0001, port: 40001)
        let b = Endpoint.v4(0x0a00_0002, port: 40002)
        _ = relay.join("r", as: "ada", from: a, secret: 1, now: t0)
        let bob = relay.join("r", as: "bob", from: b, secret: 2, now: t0)
        #expect(relay.join("q", as: "ada", from: .v4(0x0a00_0001, port: 40009), secret: 3, now: t0 + 1).token == 0)
        relay.send(.keepalive(token: bob.token, highest: 0), from: b, now: t0 + 30 * s)
        #expect(texts(events(to: b, in: relay.tick(now: t0 + 60 * s))) == ["timedOut ada "])
        expectTables(relay)
        #expect(relay.join("q", as: "ada", from: .v4(0x0a00_0001, port: 40009), secret: 3, now: t0 + 61 * s).token != 0)
        #expect(relay.join("q", as: "bob", from: .v4(0x0a00_0002, port: 40009), secret: 4, now: t0 + 61 * s).token == 0)
        expectTables(relay)
    }

    @Test func membersOfOneIPv6Slash64ShareItsPlaces() {
        var relay = limited(2)
        let net: UInt64 = 0x2001_0db8_0000_0007
        #expect(relay.join("a", as: "x", from: .v6(high: net, low: 1, port: 40001), secret: 1, now: t0).token != 0)
        #expect(
            relay.join("b", as: "x", from: .v6(high: net, low: 0xdead_beef, port: 40001), secret: 2, now: t0).token != 0
        )
        let third = relay.join(
            "c", as: "x", from: .v6(high: net, low: 0xffff_ffff_ffff_ffff, port: 40001), secret: 3, now: t0)
        #expect(third.token == 0 && third.sent.last?.message == .refused(.tooManyMemberships))
        #expect(relay.join("c", as: "x", from: .v6(high: net + 1, low: 1, port: 40001), secret: 4, now: t0).token != 0)
        expectTables(relay)
    }

    /// A member that rejoins from a new address (NAT rebinding) takes its membership to
    /// the new address's prefix, even past the limit: the membership exists already.
    @Test func aMemberThatMovesTakesItsMembershipToTheNewPrefix() {
        var relay = limited(1)
        let home = Endpoint.v4(0x0a00_0001, port: 40001)
        let away = Endpoint.v4(0xc633_6401, port: 50000)
        let ada = relay.join("r", as: "ada", from: home, secret: 1, now: t0)
        let bob = relay.join("r", as: "bob", from: .v4(0xc633_6401, port: 50001), secret: 2, now: t0)
        #expect(ada.token != 0 && bob.token != 0)
        let moved = relay.join("r", as: "ada", from: away, secret: 1, token: ada.token, now: t0 + 1)
        #expect(moved.token == ada.token)  // past the limit of 1: two members in 198.51.100.1/32 now
        expectTables(relay)
        // The old prefix has its place back; the new one is over its limit.
        #expect(relay.join("q", as: "cy", from: .v4(0x0a00_0001, port: 40005), secret: 3, now: t0 + 2).token != 0)
        #expect(relay.join("q", as: "dee", from: .v4(0xc633_6401, port: 50005), secret: 4, now: t0 + 2).token == 0)
        // One of the two leaves: still at the limit. Both: room for one.
        relay.send(.leave(token: ada.token), from: away, now: t0 + 3)
        expectTables(relay)
        #expect(relay.join("q", as: "dee", from: .v4(0xc633_6401, port: 50005), secret: 4, now: t0 + 4).token == 0)
        relay.send(.leave(token: bob.token), from: .v4(0xc633_6401, port: 50001), now: t0 + 5)
        #expect(relay.join("q", as: "dee", from: .v4(0xc633_6401, port: 50005), secret: 5, now: t0 + 6).token != 0)
        expectTables(relay)
    }

    /// Rooms come and go, names are reused: each JOIN finds the room of its name, the
    /// WELCOME's member count says so.
    @Test func roomsAreFoundByNameAsOthersComeAndGo() {
        var settings = ChatRelay.testSettings
        (settings.rooms, settings.membersPerRoom, settings.membershipsPerPrefix) = (16, 2, 100)
        var relay = ChatRelay(settings)
        func welcomed(_ out: (token: UInt64, sent: [Sent])) -> UInt16? {
            for o in out.sent { if case .welcome(_, _, _, let members)? = o.message { return members } }
            return nil
        }
        var tokens: [Int: UInt64] = [:]
        for k in 0..<16 {
            let peer = Endpoint.v4(0x0a00_0100 + UInt32(k), port: 40000)
            let out = relay.join("room\(k)", as: "a", from: peer, secret: UInt64(k + 1), now: t0)
            #expect(welcomed(out) == 1)
            tokens[k] = out.token
        }
        #expect(
            relay.join("room16", as: "a", from: .v4(0x0a00_0200, port: 40000), secret: 99, now: t0).sent.last?.message
                == .refused(.tooManyRooms))
        // Every other room goes; a new room takes each place.
        for k in stride(from: 1, to: 16, by: 2) {
            relay.send(.leave(token: tokens[k]!), from: .v4(0x0a00_0100 + UInt32(k), port: 40000), now: t0 + 1)
        }
        expectTables(relay)
        for k in stride(from: 1, to: 16, by: 2) {
            let out = relay.join(
                "new\(k)", as: "a", from: .v4(0x0a00_0300 + UInt32(k), port: 40000), secret: UInt64(100 + k),
                now: t0 + 2)
            #expect(welcomed(out) == 1)
        }
        expectTables(relay)
        // Second members: each name finds its room, full after them.
        for k in 0..<16 {
            let name = k % 2 == 0 ? "room\(k)" : "new\(k)"
            let out = relay.join(
                name, as: "b", from: .v4(0x0a00_0400 + UInt32(k), port: 40000), secret: UInt64(200 + k),
                now: t0 + 3)
            #expect(welcomed(out) == 2, "\(name)")
            #expect(
                relay.join(
                    name, as: "c", from: .v4(0x0a00_0500 + UInt32(k), port: 40000), secret: UInt64(300 + k),
                    now: t0 + 3
                )
                .sent.last?.message == .refused(.roomFull))
        }
        // A name gone is a new room again.
        #expect(
            relay.join("room1", as: "b", from: .v4(0x0a00_0600, port: 40000), secret: 400, now: t0 + 4).sent.last?
                .message
                == .refused(.tooManyRooms))
        expectTables(relay)
    }

    /// A tick's sweep takes a bounded number of steps; the members it did not reach, the
    /// next ticks do, one pass in all: it goes on where it stopped, past members not due.
    @Test func theSweepEvictsWithinItsBudgetAcrossTicks() {
        var relay = ChatRelay()  // 4 rooms of 4: a pass is at most 4 words and 16 members
        relay.service.sweepBudget = 3
        let s = ChatRelay.second
        var tokens: [(UInt64, Endpoint)] = []
        for room in 0..<4 {
            for k in 0..<4 {
                let peer = Endpoint.v4(0x0a00_0000 + UInt32(room * 4 + k), port: 40000)
                let token = relay.join("r\(room)", as: "n\(k)", from: peer, secret: UInt64(room * 4 + k + 1), now: t0)
                    .token
                #expect(token != 0)
                tokens.append((token, peer))
            }
        }
        // The first room's members keep alive: a sweep that began again from the first
        // room every tick would spend its budget there and never reach the others.
        for (token, peer) in tokens.prefix(4) {
            relay.send(.keepalive(token: token, highest: 0), from: peer, now: t0 + 59 * s)
        }
        // Not yet due: many ticks evict no one.
        for k in 0..<20 { #expect(relay.tick(now: t0 + 59 * s + UInt64(k)).isEmpty) }
        var ticks = 0
        var evicted = 0
        while relay.service.counters.chat.members > 4 && ticks < 100 {
            let before = relay.service.counters.chat.members
            relay.tick(now: t0 + 60 * s + UInt64(ticks))
            let now = relay.service.counters.chat.members
            // A step a word and a member: at most the budget, and the word it ends in.
            #expect(before - now <= 4)
            evicted += Int(before - now)
            ticks += 1
            expectTables(relay)
        }
        #expect(evicted == 12)
        #expect(ticks > 1 && ticks <= 8)  // ceil(20 steps / 3) = 7 ticks for the pass, the first perhaps partial
        #expect(relay.service.counters.chat.rooms == 1)
    }
}
