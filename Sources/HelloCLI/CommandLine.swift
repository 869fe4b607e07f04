import ArgumentParser
import Glibc
import HelloLauncher
import HelloSocket

/// A command whose bad arguments end in one line on stderr and exit code 64 (EX_USAGE):
/// swift-argument-parser's own message, which names the argument, without the usage
/// block after it. A server name that does not resolve is not a usage error: one line,
/// exit 68 (EX_NOHOST). `--help` and `--version` print in full, as usual.
package protocol OneLineErrors: ParsableCommand {}

/// sysexits.h's EX_NOHOST: "host name unknown".
let exitNoHost: Int32 = 68

extension OneLineErrors {
    package static func main() {
        let name = configuration.commandName ?? "\(self)"
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as ResolutionError {
            writeOut(to: STDERR_FILENO, "\(name): \(failure)\n")
            Glibc.exit(exitNoHost)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad arguments"
                writeOut(to: STDERR_FILENO, "\(name): \(message) (see '\(name) --help')\n")
                Glibc.exit(code.rawValue)
            }
            exit(withError: error)
        }
    }
}

/// `text` in one write(2), unbuffered: lines from several threads never interleave, and
/// none waits in a buffer when the process exits.
package func writeOut(to fd: Int32, _ text: String) {
    var text = text
    text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
}

/// `bytes` on standard output, in one write(2).
package func writeOut(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
}

/// Checks an option's value against its range, with swift-argument-parser's validation
/// error (exit 64) naming the option: "--batch must be between 1 and 1024, not 0."
package func require<Value: Comparable>(_ option: String, _ value: Value, in range: ClosedRange<Value>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(option) must be between \(range.lowerBound) and \(range.upperBound), not \(value).")
    }
}

extension SocketAddress: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(parsing: argument)
    }
}

/// `[SERVICE@]ADDRESS`: `echo@8899`, `hello@127.0.0.1:9999`, or an address alone, whose
/// service is the default one (`--mode`).
package struct ListenAddress: ExpressibleByArgument, Sendable {
    package let service: ServiceName?
    package let address: SocketAddress

    package init(service: ServiceName?, address: SocketAddress) {
        self.service = service
        self.address = address
    }

    package init?(argument: String) {
        guard let parsed = try? Self.parse(argument) else { return nil }
        self = parsed
    }

    /// Parses `[SERVICE@]ADDRESS`; an error says which part is wrong.
    package static func parse(_ argument: String) throws -> ListenAddress {
        var service: ServiceName?
        var rest = Substring(argument)
        if let at = argument.firstIndex(of: "@") {
            let name = String(argument[..<at])
            guard let named = ServiceName(rawValue: name) else {
                let names = ServiceName.allCases.map(\.rawValue).joined(separator: ", ")
                throw ValidationError("no service is called \"\(name)\" (\(names))")
            }
            service = named
            rest = argument[argument.index(after: at)...]
        }
        guard let address = SocketAddress(parsing: String(rest)) else {
            throw ValidationError("\"\(rest)\" is not an address: 127.0.0.1:9999, [::1]:9999, or a port alone")
        }
        return ListenAddress(service: service, address: address)
    }
}

extension ServiceName: ExpressibleByArgument {}
