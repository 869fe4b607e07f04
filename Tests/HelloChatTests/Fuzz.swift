import HelloFuzzHarness
import Testing

/// Runs `property` in the fuzz harness (HelloFuzzHarness), recording its failing case.
func fuzz(_ name: String, share: Double, cases: Int, floor: Int, _ property: (inout SplitMix64, inout Checks) -> Void) {
    if let failure = fuzzFailure(name, share: share, cases: cases, floor: floor, property) {
        Issue.record(Comment(rawValue: failure))
    }
}
