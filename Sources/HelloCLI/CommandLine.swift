import ArgumentParser
import Glibc
import HelloCore
import HelloSocket

/// A command whose bad arguments end in one line on stderr and exit code 64 (EX_USAGE):
/// swift-argument-parser's own message, which names the argument, without the usage
/// block after it. `--help` and `--version` print in full, as usual.
public protocol OneLineErrors: ParsableCommand {}

extension OneLineErrors {
    public static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad arguments"
                let name = configuration.commandName ?? "\(self)"
                let line = "\(name): \(message) (see '\(name) --help')\n"
                _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
                Glibc.exit(code.rawValue)
            }
            exit(withError: error)
        }
    }
}

/// Checks an option's value against its range, with swift-argument-parser's validation
/// error (exit 64) naming the option: "--batch must be between 1 and 1024, not 0."
public func require<Value: Comparable>(_ option: String, _ value: Value, in range: ClosedRange<Value>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(option) must be between \(range.lowerBound) and \(range.upperBound), not \(value).")
    }
}

extension SocketAddress: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(parsing: argument)
    }
}

extension ReplyMode: ExpressibleByArgument {}
