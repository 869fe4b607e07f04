import ArgumentParser
import Glibc
import HelloCLI
import Histogram

/// `hello bench --hgrm FILE`: the latency histogram in HdrHistogram's percentile
/// distribution text, the `.hgrm` that wrk2 writes and HdrHistogram's plotter reads
/// (values in microseconds, five ticks per half distance to 100 %, then the `#[Mean`,
/// `#[Max` ... `Total count` and `#[Buckets` lines).
///
/// The file is created before the load, so a path that cannot be written is one line and
/// exit 64 at once, not a lost run.
final class HgrmFile {
    let path: String
    private let descriptor: Int32

    /// nil without `--hgrm`.
    init?(_ path: String?) throws {
        guard let path else { return nil }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ValidationError("--hgrm \(path): cannot create it: \(String(cString: strerror(errno))).")
        }
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// The text of `histogram` (nanoseconds), in microseconds.
    static func text(_ histogram: Histogram<UInt64>) -> String {
        var text = ""
        histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1000)
        return text
    }

    /// Writes `histogram` and reports a failure in one line on stderr (exit 1).
    func write(_ histogram: Histogram<UInt64>) throws {
        let bytes = Array(Self.text(histogram).utf8)
        var done = 0
        while done < bytes.count {
            let wrote = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + done, $0.count - done) }
            if wrote < 0 && errno == EINTR { continue }
            guard wrote > 0 else {
                writeOut(to: STDERR_FILENO, "hello: --hgrm \(path): \(String(cString: strerror(errno)))\n")
                throw ExitCode.failure
            }
            done += wrote
        }
    }
}
