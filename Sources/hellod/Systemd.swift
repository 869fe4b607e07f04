import CShims
import Glibc
import SystemPackage

/// What hellod asks of systemd, through libsystemd (sd_listen_fds(3), sd_notify(3),
/// sd_watchdog_enabled(3)). Outside systemd every call is a harmless no-op.
enum Systemd {
    /// A descriptor passed by socket activation (`LISTEN_FDS`), with its FileDescriptorName=.
    struct InheritedDescriptor {
        let descriptor: FileDescriptor
        let name: String
    }

    /// The descriptors systemd passed, in order; empty when not socket-activated.
    static func inheritedDescriptors() -> [InheritedDescriptor] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = hs_listen_fds_with_names(&names)
        guard count > 0 else { return [] }
        defer {
            for i in 0..<Int(count) { free(names?[i]) }
            free(names)
        }
        return (0..<Int(count)).map { i in
            InheritedDescriptor(
                descriptor: FileDescriptor(rawValue: hs_listen_fds_start() + Int32(i)),
                name: names?[i].map { String(cString: $0) } ?? "unknown")
        }
    }

    /// The family of a datagram socket (AF_INET, AF_INET6, ...), or nil if `descriptor`
    /// is not a datagram socket.
    static func datagramFamily(of descriptor: FileDescriptor) -> Int32? {
        var family: Int32 = 0
        return hs_is_datagram_socket(descriptor.rawValue, &family) > 0 ? family : nil
    }

    /// Sends a state change (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`) to the
    /// service manager, if there is one (NOTIFY_SOCKET).
    static func notify(_ state: String) {
        _ = hs_notify(state)
    }

    /// WatchdogSec= in nanoseconds when systemd expects WATCHDOG=1 pings, else nil.
    static func watchdogInterval() -> UInt64? {
        var microseconds: UInt64 = 0
        return hs_watchdog_enabled(&microseconds) > 0 && microseconds > 0 ? microseconds * 1000 : nil
    }

    /// stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode).
    static var stderrIsJournal: Bool {
        guard let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return stream == "\(info.st_dev):\(info.st_ino)"
    }
}
