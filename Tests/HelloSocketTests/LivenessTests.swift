import Atomics
import HelloServer
import Testing

/// The watchdog's rule: ping only while every I/O loop has been seen recently.
@Suite struct LivenessTests {
    let second: UInt64 = 1_000_000_000

    func liveness(workers: Int) -> (Liveness, ManagedAtomic<Int>) {
        let pings = ManagedAtomic<Int>(0)
        let liveness = Liveness(interval: 4 * second, workers: workers) { pings.wrappingIncrement(ordering: .relaxed) }
        return (liveness, pings)
    }

    @Test func loopsThatKeepBeatingKeepThePingsComing() {
        let (liveness, pings) = liveness(workers: 2)
        var now = 10 * second
        for _ in 0..<8 {  // 8 seconds, both loops waking every quarter interval
            liveness.beat(0, now: now)
            liveness.beat(1, now: now)
            now += second
        }
        #expect(pings.load(ordering: .relaxed) == 8)
        #expect(liveness.wakeInterval == second)
    }

    @Test func aStuckLoopStopsThePings() {
        let (liveness, pings) = liveness(workers: 2)
        var now = 10 * second
        liveness.beat(0, now: now)
        liveness.beat(1, now: now)
        let before = pings.load(ordering: .relaxed)
        for _ in 0..<8 {  // worker 1 is stuck; worker 0 goes on
            now += second
            liveness.beat(0, now: now)
        }
        // Worker 1 was last seen at 10 s: pings stop once it is 2 s (half the interval) old.
        #expect(pings.load(ordering: .relaxed) - before <= 2)
        let stopped = pings.load(ordering: .relaxed)
        now += second
        liveness.beat(0, now: now)
        #expect(pings.load(ordering: .relaxed) == stopped)
        liveness.beat(1, now: now)  // it recovers: pings resume
        #expect(pings.load(ordering: .relaxed) == stopped + 1)
    }

    @Test func noPingBeforeEveryLoopHasStarted() {
        let (liveness, pings) = liveness(workers: 3)
        liveness.beat(0, now: 10 * second)
        liveness.beat(1, now: 10 * second)
        #expect(pings.load(ordering: .relaxed) == 0)
    }
}
