import HelloFuzzHarness
import HelloService
import Testing

/// The open-addressing table (OpenTable.swift) with its invariant check, on entries whose
/// hashes are chosen to collide and wrap.
@Suite struct OpenTableTests {
    struct Entry: OpenTableEntry {
        var hash: UInt64 = 0
        var value = -1
        init() {}
        init(_ hash: UInt64, _ value: Int) { (self.hash, self.value) = (hash, value) }
        var isEmpty: Bool { value < 0 }
    }

    @Test func sizesArePowersOfTwoAtLeastTwiceTheCapacity() {
        for capacity in [0, 1, 8, 9, 100, 4096] {
            let size = OpenTable<Entry>.bytes(capacity: capacity) / MemoryLayout<Entry>.stride
            #expect(size >= 16 && size >= 2 * capacity && size & (size - 1) == 0)
        }
    }

    @Test func randomInsertsAndRemovesKeepTheInvariantsAndMatchAMap() {
        var rng = SplitMix64(seed: 0x0be7_ab1e)
        for _ in 0..<40 {
            let capacity = rng.int(1...20)
            var table = OpenTable<Entry>(capacity: capacity)
            var truth: [Int: UInt64] = [:]
            for _ in 0..<200 {
                let value = rng.int(0...capacity - 1)
                if let hash = truth[value] {
                    table.remove(at: table.bucket(of: hash) { $0.value == value })
                    truth[value] = nil
                } else {
                    // Few homes, near the table's end: long runs that wrap.
                    let hash = UInt64(rng.int(0...3)) << 32 | UInt64(rng.pick([0, 1, 14, 15, 30, 31]))
                    table.insert(Entry(hash, value))
                    truth[value] = hash
                }
                #expect(table.invariantProblems() == [])
                #expect(table.count == truth.count)
                for value in 0..<capacity {
                    let found = table[table.bucket(of: truth[value] ?? 0) { $0.value == value }]
                    #expect(found.isEmpty == (truth[value] == nil))
                }
            }
        }
    }

    @Test func theInvariantCheckSeesAnEntryCutOffFromItsHome() {
        var table = OpenTable<Entry>(capacity: 8)
        table.insert(Entry(3, 0))
        table.insert(Entry(3, 1))  // in bucket 4
        #expect(table.invariantProblems() == [])
        table[table.home(3)] = Entry()  // emptied without shifting back
        #expect(!table.invariantProblems().isEmpty)
    }
}
