import Atomics

/// The watchdog's view of the workers. Each I/O loop beats after every batch and every
/// wake-up (an idle loop wakes at least every `wakeInterval`); a ping goes to systemd
/// only while every loop has beaten recently, and it is sent from a loop, not from a
/// timer thread. So an idle daemon keeps pinging, and a loop stuck anywhere stops the
/// pings: systemd then restarts the service.
public final class Liveness: Sendable {
    /// systemd's WatchdogSec, in nanoseconds.
    package let interval: UInt64
    private let beats: [ManagedAtomic<UInt64>]
    private let lastPing = ManagedAtomic<UInt64>(0)
    private let ping: @Sendable () -> Void

    package init(interval: UInt64, workers: Int, ping: @escaping @Sendable () -> Void) {
        self.interval = interval
        self.beats = (0..<workers).map { _ in ManagedAtomic<UInt64>(0) }
        self.ping = ping
    }

    /// How long a loop may block without traffic: a quarter of the interval.
    @usableFromInline package var wakeInterval: UInt64 { interval / 4 }

    /// Worker `index` is alive at `now` (monotonic nanoseconds).
    @inline(__always)
    @usableFromInline package func beat(_ index: Int, now: UInt64) {
        beats[index].store(now, ordering: .relaxed)
        let last = lastPing.load(ordering: .relaxed)
        guard now &- last >= wakeInterval else { return }
        for beat in beats {
            let seen = beat.load(ordering: .relaxed)
            if seen < now && now - seen > interval / 2 {
                return  // a loop has not been seen for half the interval: no ping
            }
        }
        if lastPing.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            ping()
        }
    }
}
