// What makes a failed benchmark fail `swift package benchmark thresholds check`.
//
// package-benchmark 1.38.1's `thresholds check` drops the results of a benchmark that calls
// `benchmark.error(...)` or whose setup or teardown throws, then prints "EQUAL" and exits 0.
// A benchmark process that exits non-zero, though, fails the whole command (BenchmarkTool
// exits 3, "benchmark job(s) failed during runtime", and `swift package` exits 1). So every
// failure here ends the process, with one line on stderr that names the benchmark.

import Glibc

/// Ends the benchmark process: `thresholds check` then fails. One line on stderr says why.
func fail(_ benchmark: String, _ message: String) -> Never {
    printToStandardError("hellod-bench: FAIL \(benchmark): \(message)")
    exit(1)
}

/// A copy of stderr taken when the benchmarks register (`keepStandardError()`): with
/// --no-progress, package-benchmark points fd 2 at /dev/null while it measures, which would
/// swallow the line of a failure there.
let standardError: Int32 = {
    let copy = fcntl(2, F_DUPFD_CLOEXEC, 3)
    return copy >= 0 ? copy : 2
}()

func keepStandardError() {
    _ = standardError
}

func printToStandardError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(standardError, $0, strlen($0)) }
}

/// Benchmarks/Thresholds, found from this file's path (…/Benchmarks/Benchmarks/DatagramPath/Gate.swift).
let thresholdsDirectory: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/Thresholds"
}()

/// `thresholds check` gates only the benchmarks that have a file in Thresholds/, and
/// silently passes the others. Fails the benchmark unless its file exists and holds exactly
/// `values` (whitespace aside), so a benchmark cannot run ungated or gated loosely.
func requireThresholds(_ benchmark: String, _ values: [String: Int]) {
    let path = "\(thresholdsDirectory)/DatagramPath.\(benchmark).p90.json"
    let expected =
        "{" + values.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
    guard let file = fopen(path, "r") else {
        fail(benchmark, "no thresholds file \(path), so `thresholds check` would not gate it; it must hold \(expected)")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var c = fgetc(file)
    while c != EOF {
        bytes.append(UInt8(truncatingIfNeeded: c))
        c = fgetc(file)
    }
    func squeezed(_ text: [UInt8]) -> [UInt8] { text.filter { ![9, 10, 13, 32].contains($0) } }
    guard squeezed(bytes) == squeezed(Array(expected.utf8)) else {
        fail(benchmark, "\(path) must hold exactly \(expected)")
    }
}
