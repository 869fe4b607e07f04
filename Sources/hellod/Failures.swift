import ArgumentParser
import HelloLauncher
import HelloSocket
import SystemPackage

/// A reason hellod cannot start: logged in one line, then exit 1 (man hellod, EXIT STATUS).
enum StartFailure: Error, CustomStringConvertible {
    case cannotListen(SocketAddress, Errno)
    case cannotReadAddress(descriptor: Int32, SocketError)
    /// A socket from systemd whose FileDescriptorName= names no service.
    case notAService(descriptor: Int32, name: String)
    case notADatagramSocket(descriptor: Int32, name: String)
    case notAnInternetSocket(descriptor: Int32, name: String, family: Int32)
    /// A worker could not set its socket up (PKTINFO, its address).
    case cannotServe(SocketAddress, SocketError)
    /// getrandom(2) failed (nil: it gave fewer bytes than asked), so chat has no secret.
    case noRandomness(SocketError?)
    /// The trace writer's eventfd could not be made.
    case noTraceWriter(SocketError)

    /// Every one of them ends hellod the same way: its start failed.
    var exitCode: ExitCode { .failure }

    /// The line logged before exiting.
    var description: String {
        switch self {
        case let .cannotListen(address, errno):
            return "cannot listen on \(address): \(errno)"
        case let .cannotReadAddress(descriptor, error):
            return "cannot read the address of descriptor \(descriptor): \(error)"
        case let .notAService(descriptor, name):
            let names = ServiceName.allCases.map(\.rawValue).joined(separator: ", ")
            return
                "socket \(descriptor) from systemd is named \"\(name)\", which is no service: set FileDescriptorName= to one of \(names)"
        case let .notADatagramSocket(descriptor, name):
            return
                "descriptor \(descriptor) (\(name)) from systemd is not a datagram socket: use ListenDatagram= in the .socket unit"
        case let .notAnInternetSocket(descriptor, name, family):
            return "descriptor \(descriptor) (\(name)) from systemd is not an IPv4 or IPv6 socket (family \(family))"
        case let .cannotServe(address, error):
            return "cannot serve \(address): \(error)"
        case let .noRandomness(error):
            return error.map { "\($0)" } ?? "getrandom: short read"
        case let .noTraceWriter(error):
            return "cannot start the trace writer: \(error)"
        }
    }
}

/// Why the metrics file could not be written (the temporary file beside it, then the
/// rename): logged as a warning, and hellod serves on.
enum MetricsFileError: Error, Equatable, CustomStringConvertible {
    case cannotCreate(path: String, Errno)
    case cannotSetPermissions(path: String, Errno)
    case cannotWrite(path: String, Errno)
    case cannotRename(from: String, to: String, Errno)

    var description: String {
        switch self {
        case let .cannotCreate(path, errno): return "cannot write the metrics file \(path): \(errno)"
        case let .cannotSetPermissions(path, errno): return "fchmod \(path): \(errno)"
        case let .cannotWrite(path, errno): return "writing \(path): \(errno)"
        case let .cannotRename(from, to, errno): return "cannot rename \(from) to \(to): \(errno)"
        }
    }
}
