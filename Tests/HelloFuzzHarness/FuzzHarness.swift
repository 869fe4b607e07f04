import Glibc
import Synchronization

// The fuzz harness the property tests share (HelloRepliesTests/FuzzTests.swift,
// HelloChatTests/ChatFuzzTests.swift): seeds, budgets, checks, replay.

// MARK: - The harness

/// SplitMix64: a generator whose whole state is one number, so a case replays from its seed.
package struct SplitMix64: RandomNumberGenerator {
    package var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    package mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// True one time in `n`.
    package mutating func oneIn(_ n: Int) -> Bool { Int.random(in: 0..<n, using: &self) == 0 }

    package mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }
}

package enum FuzzBudget {
    package static let seconds = environment("HELLOD_FUZZ_SECONDS").flatMap(Double.init) ?? 2
    package static let cases = environment("HELLOD_FUZZ_CASES").flatMap { Int($0) }
    package static let seed = environment("HELLOD_FUZZ_SEED").flatMap(parseSeed) ?? UInt64.random(in: 0...UInt64.max)

    package static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    package static func parseSeed(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}

package func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// The failed checks of one case (a handful is enough to see what went wrong), what the
/// case went through, counted by name, and what it drew (its settings), for a failure to say.
package struct Checks {
    package let seed: UInt64
    package private(set) var failures: [String] = []
    package private(set) var seen: [String: Int] = [:]
    package private(set) var context = ""

    package init(seed: UInt64) {
        self.seed = seed
        CrashNote.set("case seed \(hex(seed))")
    }

    package mutating func expect(_ condition: Bool, _ what: @autoclosure () -> String) {
        if !condition && failures.count < 8 { failures.append(what()) }
    }

    package mutating func count(_ what: String) {
        seen[what, default: 0] += 1
    }

    /// What the case drew: told with its failures, and by a crash (`CrashNote`).
    package mutating func note(_ drawn: String) {
        context = drawn
        CrashNote.set("case seed \(hex(seed)): \(drawn)")
    }
}

/// The case under way, for a crash to name: a failed precondition in the code under test
/// kills the test process before `fuzz` can say which case it was. A handler of the signals
/// that a trap or a bad access raises writes the note to stderr, then puts back the handler
/// it found (Swift's backtracer), which runs when the faulting instruction does again.
package enum CrashNote {
    nonisolated(unsafe) static var text: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 32)
    nonisolated(unsafe) static var installed = false
    /// The reply core's and the chat's fuzz suites run at once (two test targets): one
    /// note at a time, or two would free the same one.
    static let lock = Mutex(())

    package static func set(_ note: String) {
        lock.withLock { _ in
            install()
            let old = text
            text = strdup("\nfuzz: crashed in \(note) (HELLOD_FUZZ_SEED=\(hex(FuzzBudget.seed)))\n")
            free(old)
        }
    }

    static func install() {
        guard !installed else { return }
        installed = true
        for signal in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                if let note = CrashNote.text { _ = write(2, note, strlen(note)) }
                sigaction(signal, CrashNote.previous + Int(signal), nil)
            }
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, previous + Int(signal))
        }
    }
}

/// Runs `property` on fresh cases: at least `floor` of them, then until `cases` ran or
/// `share` of the budget's seconds went.
/// Returns the first failing case's report (nil: none failed), for the test to record: the
/// harness is a plain library (the release build builds it too, without swift-testing).
package func fuzzFailure(
    _ name: String, share: Double, cases: Int, floor: Int,
    _ property: (inout SplitMix64, inout Checks) -> Void
) -> String? {
    var failure: String?
    let clock = ContinuousClock()
    let start = clock.now
    let budget = Duration.seconds(FuzzBudget.seconds * share)
    let cases = FuzzBudget.cases ?? cases
    let floor = min(floor, cases)
    print("fuzz \(name): HELLOD_FUZZ_SEED=\(hex(FuzzBudget.seed))")
    var seeds = SplitMix64(seed: FuzzBudget.seed)
    var ran = 0
    var seen: [String: Int] = [:]
    while ran < cases && (ran < floor || clock.now - start < budget) {
        let seed = seeds.next()
        let checks = run(property, seed: seed)
        ran += 1
        seen.merge(checks.seen, uniquingKeysWith: +)
        if !checks.failures.isEmpty {
            failure =
                ("""
                \(name): case \(ran) of HELLOD_FUZZ_SEED=\(hex(FuzzBudget.seed)) (case seed \(hex(seed))) failed\
                \(checks.context.isEmpty ? "" : " (\(checks.context))"):
                  \(checks.failures.joined(separator: "\n  "))
                """)
            break
        }
    }
    let tally = seen.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    print("fuzz \(name): \(ran) cases (floor \(floor)) in \(clock.now - start)\(tally.isEmpty ? "" : "; \(tally)")")
    return failure
}

package func run(_ property: (inout SplitMix64, inout Checks) -> Void, seed: UInt64) -> Checks {
    var rng = SplitMix64(seed: seed)
    var checks = Checks(seed: seed)
    property(&rng, &checks)
    return checks
}

/// The failed checks of one case, replayed from its case seed.
package func replay(_ property: (inout SplitMix64, inout Checks) -> Void, seed: UInt64) -> [String] {
    run(property, seed: seed).failures
}
