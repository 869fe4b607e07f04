import CSystemd
import HelloSocket
import SystemPackage

/// What hellod asks of systemd, through libsystemd (sd_listen_fds(3), sd_notify(3),
/// sd_watchdog_enabled(3), sd_journal_sendv(3)). Outside systemd every call is a harmless
/// no-op. hellod alone links libsystemd: the client does not.
enum Systemd {
    /// A descriptor passed by socket activation (`LISTEN_FDS`), with its FileDescriptorName=.
    struct InheritedDescriptor {
        let descriptor: FileDescriptor
        let name: String
    }

    /// The descriptors systemd passed, in order; empty when not socket-activated. The
    /// environment is left as it is (nobody else reads it).
    static func inheritedDescriptors() -> [InheritedDescriptor] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(0, &names)
        guard count > 0 else { return [] }
        return Posix.takeCStrings(names, count: Int(count)).enumerated().map { i, name in
            InheritedDescriptor(
                descriptor: FileDescriptor(rawValue: SD_LISTEN_FDS_START + Int32(i)),
                name: name ?? "unknown")
        }
    }

    /// Whether `descriptor` is a datagram socket of any family (sd_is_socket(3)).
    static func isDatagramSocket(_ descriptor: FileDescriptor) -> Bool {
        sd_is_socket(descriptor.rawValue, DatagramSocket.anyFamily, DatagramSocket.datagramType, -1) > 0
    }

    /// Sends a state change (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`) to the
    /// service manager, if there is one (NOTIFY_SOCKET).
    static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// WatchdogSec= in nanoseconds when systemd expects WATCHDOG=1 pings, else nil.
    static func watchdogInterval() -> UInt64? {
        var microseconds: UInt64 = 0
        return sd_watchdog_enabled(0, &microseconds) > 0 && microseconds > 0 ? microseconds * 1000 : nil
    }

    /// One journal entry of `FIELD=value` strings (sd_journal_sendv); false if the journal
    /// is not there.
    static func sendToJournal(_ fields: [String]) -> Bool {
        Posix.withIOVectors(fields) { vectors, count in sd_journal_sendv(vectors, count) >= 0 }
    }

    /// stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode).
    static var stderrIsJournal: Bool {
        guard let stream = Posix.environment("JOURNAL_STREAM"),
            let stderr = try? Posix.fileIdentity(of: Posix.standardError, inherited: true)
        else { return false }
        return stream == "\(stderr.device):\(stderr.inode)"
    }
}
