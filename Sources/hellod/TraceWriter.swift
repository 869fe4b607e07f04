import ArgumentParser
import Atomics
import HelloChatWire
import HelloDatagram
import HelloLauncher
import HelloServer
import HelloService
import HelloSocket

/// The trace's one writer: a thread of its own that takes the workers' records from their
/// rings and writes a line for each, to the journal with fields (`HELLOD_PEER`,
/// `HELLOD_FATE`...) or on stderr. The datagram path never waits for it. It refills the
/// workers' allowance once a second with `--trace-rate`, and says once a second how many
/// datagrams were not traced (over the rate, or a ring full). While the trace is off it
/// sleeps until woken.
final class TraceWriter: Sendable {
    /// What a record's worker index names.
    struct Socket: Sendable {
        let service: ServiceName
        let address: SocketAddress
        let schema: CounterSchema
    }

    let control: TraceControl
    let sockets: [Socket]
    let journal: Bool
    private let wakeup: EventFD
    private let stopping = ManagedAtomic<Bool>(false)
    /// How often the rings are emptied while tracing.
    static let drainInterval: UInt64 = 100_000_000

    init(control: TraceControl, sockets: [Socket], journal: Bool) throws(SocketError) {
        self.control = control
        self.sockets = sockets
        self.journal = journal
        wakeup = try EventFD()
    }

    /// The trace was switched (or hellod stops): look again now.
    func wake() {
        wakeup.signal()
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        wakeup.signal()
    }

    /// The thread's body: returns once `stop` was called, every record written.
    func run() {
        var lostSeen = lostSoFar()
        var second: UInt64 = 0  // when the allowance was last refilled (0: when tracing began)
        while !stopping.load(ordering: .relaxed) {
            guard control.isOn else {
                writeRecords()
                sayLost(&lostSeen)
                second = 0
                _ = wakeup.wait(nanoseconds: nil)
                continue
            }
            let now = monotonicNanoseconds()
            if second == 0 {
                second = now  // switched on with its first second's allowance
            } else if now - second >= 1_000_000_000 {
                sayLost(&lostSeen)
                control.refill(control.rate)
                second = now
            }
            _ = wakeup.wait(nanoseconds: Self.drainInterval)
            writeRecords()
        }
        writeRecords()
        sayLost(&lostSeen)
    }

    private func lostSoFar() -> UInt64 {
        control.rings.reduce(0) { $0 + $1.lost }
    }

    private func sayLost(_ seen: inout UInt64) {
        let lost = lostSoFar()
        guard lost != seen else { return }
        write(
            "trace: \(lost - seen) datagram(s) not traced in the last second (over --trace-rate \(control.rate), or the trace ring full)",
            fields: ["HELLOD_NOT_TRACED=\(lost - seen)"])
        seen = lost
    }

    private func writeRecords() {
        for ring in control.rings {
            _ = ring.drain { write($0) }
        }
    }

    private func write(_ record: TraceRecord) {
        let socket = sockets[record.worker]
        let local =
            record.local.map { Endpoint($0.address, port: socket.address.endpoint.port) } ?? socket.address.endpoint
        let fate: String
        switch record.fate {
        case .replied: fate = "replied"
        case .sendFailed: fate = "send-failed"
        case .served: fate = "served"
        case .dropped(let reason): fate = socket.schema.name(of: reason)
        }
        var fields = [
            "HELLOD_SERVICE=\(socket.service.rawValue)", "HELLOD_PEER=\(record.peer)", "HELLOD_LOCAL=\(local)",
            "HELLOD_BYTES=\(record.bytes)", "HELLOD_FATE=\(fate)",
        ]
        var line = "trace: \(socket.service.rawValue) \(record.peer) -> \(local), \(record.bytes) bytes"
        let request = record.note.request
        if request.utf8CodeUnitCount > 0 {
            fields.append("HELLOD_REQUEST=\(request)")
            line += ", \(request)"
        }
        let room = record.note.withRoom { Array($0) }
        if !room.isEmpty {
            // The datagram's own bytes: shown as the chat client shows text, never as they came.
            let shown = neutralised(room)
            fields.append("HELLOD_ROOM=\(shown)")
            line += " room \"\(shown)\""
        }
        switch record.fate {
        case .dropped: line += ": dropped, \(fate)"
        default: line += ": \(fate)"
        }
        if let reply = record.reply {
            let source = reply.source?.address ?? local.address
            fields += ["HELLOD_REPLY_BYTES=\(reply.bytes)", "HELLOD_REPLY_FROM=\(source)"]
            line += ", \(reply.bytes) bytes from \(source)"
        }
        if record.deliveries > 0 {
            fields.append("HELLOD_DELIVERIES=\(record.deliveries)")
            line += ", \(record.deliveries) more datagram(s) to others"
        }
        write(line, fields: fields)
    }

    /// One line: a journal entry with its fields (PRIORITY info), or a line on stderr.
    private func write(_ message: String, fields: [String]) {
        if journal
            && Systemd.sendToJournal(
                ["MESSAGE=\(message)", "PRIORITY=6", "SYSLOG_IDENTIFIER=hellod"] + fields)
        {
            return
        }
        try? Posix.writeAll("hellod: \(message)\n", to: Posix.standardError, inherited: true)
    }
}

/// The trace's options: on at start or not, the sources it covers, its rate.
struct TraceSettings {
    var on = false
    /// Empty: every source.
    var sources: [IPPrefix] = []
    /// Lines a second, at most.
    var rate = 200

    /// `--trace-from`: an address, or an address and a prefix length.
    static func parseSource(_ text: String) throws -> IPPrefix {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let host = String(parts[0])
        let length = parts.count == 2 ? Int(parts[1]) : nil
        guard parts.count == 1 || length != nil,
            let address = SocketAddress(parsing: host.contains(":") ? "[\(host)]:0" : "\(host):0")?.endpoint.address,
            let prefix = IPPrefix(address, length: length ?? (address.family == .v4 ? 32 : 128))
        else {
            throw ValidationError(
                "\"\(text)\" is not an address or prefix: 192.0.2.7, 192.0.2.0/24 or 2001:db8::/32")
        }
        return prefix
    }
}
