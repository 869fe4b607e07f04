import HelloSocket
import Logging

/// hellod's log lines: to the journal with fields and priorities when systemd connected
/// stderr to it (JOURNAL_STREAM), plain readable lines on stderr otherwise. stderr, not
/// stdout: stdout is block-buffered when it is not a terminal, so lines would come late.
struct DaemonLogHandler: LogHandler {
    enum Destination: Sendable {
        /// journald's native protocol (sd_journal_sendv): MESSAGE, PRIORITY and fields.
        case journal
        /// `<level> message key=value` lines on stderr.
        case stderr
    }

    let destination: Destination
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(destination: Destination, level: Logger.Level) {
        self.destination = destination
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata {
            fields.merge(extra) { _, new in new }
        }
        switch destination {
        case .journal:
            writeToJournal(event, fields)
        case .stderr:
            // Fields are for the journal; a line on a terminal says it all in its message.
            writeToStderr("hellod: \(event.level.name): \(event.message)\n")
        }
    }

    private func writeToJournal(_ event: LogEvent, _ fields: Logger.Metadata) {
        var entries = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(event.level.syslogPriority)",
            "SYSLOG_IDENTIFIER=hellod",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
        ]
        for (key, value) in fields {
            entries.append("HELLOD_\(journalFieldName(key))=\(value)")
        }
        if !Systemd.sendToJournal(entries) {
            // The journal socket is gone: fall back to stderr, where journald may still listen.
            writeToStderr("<\(event.level.syslogPriority)>\(event.message)\n")
        }
    }

    /// One write(2) a line: lines from several threads never interleave.
    private func writeToStderr(_ line: String) {
        try? Posix.writeAll(line, to: Posix.standardError, inherited: true)
    }

    /// Journal field names are upper-case letters, digits and underscores.
    private func journalFieldName(_ key: String) -> String {
        String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }
}

extension Logger.Level {
    /// The syslog priority journald files it under (sd-daemon.h, syslog(3)).
    var syslogPriority: Int {
        switch self {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    var name: String { rawValue }
}

enum DaemonLog {
    /// Installs the handler for the whole process; call once, first.
    static func bootstrap(level: Logger.Level) {
        let destination: DaemonLogHandler.Destination = Systemd.stderrIsJournal ? .journal : .stderr
        LoggingSystem.bootstrap { _ in DaemonLogHandler(destination: destination, level: level) }
    }
}
