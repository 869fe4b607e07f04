import Glibc
import HelloClient

/// Standard input and output when both are a terminal: raw mode, and a screen in two parts.
/// Above, the room's lines, scrolling up as they come. Below them, the live area, redrawn in
/// place: your messages not yet acknowledged, then the prompt and the line being typed, which
/// never wraps (it scrolls sideways). A line from the room erases the live area, is written
/// where it was, and the live area is drawn again under it: the half-typed line stays.
struct ChatScreen {
    /// What the live area shows: its rows, and the cursor's column on the last one.
    struct Frame: Equatable {
        var rows: [String]
        var column: Int
    }

    /// Own messages shown in the live area at most; more are summed up in one row.
    static let pendingRows = 6

    /// The read end of the pipe the signal handler writes to: poll(2) it with the rest.
    let signals: Int32
    private let saved: termios
    private var restored = false
    private var drawn: Frame?
    private var scroll = 0
    private var output = PendingOutput()

    /// Raw mode on standard input, if both it and standard output are a terminal.
    static func open() -> ChatScreen? {
        guard isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 else { return nil }
        var saved = termios()
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { return nil }
        let screen = ChatScreen(saved: saved, signals: TerminalSignals.install())
        screen.enterRawMode()
        return screen
    }

    private init(saved: termios, signals: Int32) {
        self.saved = saved
        self.signals = signals
    }

    /// Keys one at a time, no echo (the screen draws the line), and no signals from keys:
    /// Ctrl-C and Ctrl-D come as bytes and leave through the same door as /quit.
    private func enterRawMode() {
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(ICRNL | INLCR | IXON | ISTRIP | BRKINT)
        withUnsafeMutableBytes(of: &raw.c_cc) {
            $0[Int(VMIN)] = 1
            $0[Int(VTIME)] = 0
        }
        tcsetattr(STDIN_FILENO, TCSADRAIN, &raw)  // keys typed ahead are kept
    }

    /// The signals that came since last asked. SIGCONT (after a stop, when a shell may have
    /// reset the terminal) re-enters raw mode; after any (SIGWINCH: a new width) the live
    /// area is erased, to be drawn anew.
    mutating func takeSignals() -> [Int32] {
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = bytes.withUnsafeMutableBytes { read(signals, $0.baseAddress, $0.count) }
        let taken = n > 0 ? bytes[..<n].map { Int32($0) } : []
        if taken.contains(SIGCONT) { enterRawMode() }
        if !taken.isEmpty { erase() }
        return taken
    }

    /// A line of the room, above the live area.
    mutating func show(_ line: String) {
        erase()
        output.append(line.utf8)
        output.append([0x0d, 0x0a])
    }

    /// The live area: own messages sent, not yet acknowledged, then the prompt and the
    /// line being typed. Written only if it changed.
    mutating func draw(_ live: LiveArea) {
        let pending = live.pending
        let width = max(Int(terminalColumns()) - 1, 8)  // the last column left free: no wrap
        var rows = pending.prefix(pending.count > Self.pendingRows ? Self.pendingRows - 1 : Self.pendingRows)
            .map { fitted($0, width) }
        if pending.count > Self.pendingRows {
            rows.append("(\(pending.count - rows.count) more sending)")
        }
        let prompt = fitted(live.prompt, width / 2)
        let room = width - columns(prompt)
        let text = live.text, cursor = live.cursor
        // Sideways: the cursor always in view, and as much of the line as fits.
        scroll = min(scroll, cursor)
        while columns(text[scroll..<cursor]) > room { scroll += 1 }
        while scroll > 0 && columns(text[(scroll - 1)...]) <= room { scroll -= 1 }
        rows.append(prompt + fitted(String(text[scroll...]), room, ellipsis: false))
        let frame = Frame(rows: rows, column: columns(prompt) + columns(text[scroll..<cursor]))
        guard frame != drawn else { return }
        erase()
        output.append((frame.rows.joined(separator: "\r\n") + "\r\u{1b}[\(frame.column + 1)G").utf8)
        drawn = frame
    }

    /// Bytes shown and drawn, not yet written.
    var unwritten: Int { output.bytes.count }

    /// Writes a chunk of what was shown and drawn (poll(2) said the terminal takes more).
    mutating func flush() {
        output.write(to: STDOUT_FILENO)
    }

    /// The live area erased and the terminal as it was found; the room's lines stay.
    /// Called on every way out (more than once is harmless).
    mutating func restore() {
        guard !restored else { return }
        restored = true
        erase()
        output.writeAll(to: STDOUT_FILENO)
        var saved = saved
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved)
    }

    /// Each row of the live area cleared, the cursor left at the start of its first. A
    /// terminal made narrower since it was drawn (SIGWINCH) may have wrapped its rows anew, as
    /// tmux and most terminals do: they are counted at the width it has now. (Not "clear to
    /// the end of the screen": tmux copies a screen so cleared into its history.)
    private mutating func erase() {
        guard let drawn else { return }
        let width = Int(terminalColumns())
        let up =
            drawn.rows.dropLast().reduce(0) { $0 + max((columns($1) + width - 1) / width, 1) } + drawn.column / width
        let clear = "\u{1b}[2K", upward = up > 0 ? "\u{1b}[\(up)A" : ""
        output.append(("\r" + upward + String(repeating: clear + "\u{1b}[B", count: up) + clear + upward).utf8)
        self.drawn = nil
    }

    private func terminalColumns() -> UInt16 {
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? size.ws_col : 80
    }
}

/// `text` cut to `width` columns, with an ellipsis if it was cut.
func fitted(_ text: String, _ width: Int, ellipsis: Bool = true) -> String {
    guard columns(text) > width else { return text }
    var out = "", used = 0
    let room = ellipsis ? width - 1 : width
    for c in text {
        if used + columns(c) > room { break }
        out.append(c)
        used += columns(c)
    }
    return ellipsis ? out + "…" : out
}

func columns(_ text: some Sequence<Character>) -> Int {
    text.reduce(0) { $0 + columns($1) }
}

/// The columns a character takes on a terminal: 2 for wide East Asian characters and emoji,
/// 0 for a lone combining mark or format character, else 1. (wcwidth(3) would need a locale.)
func columns(_ c: Character) -> Int {
    guard let first = c.unicodeScalars.first else { return 0 }
    if first.properties.isEmojiPresentation || c.unicodeScalars.contains("\u{FE0F}") { return 2 }
    switch first.properties.generalCategory {
    case .nonspacingMark, .enclosingMark, .format: return 0
    default: break
    }
    switch first.value {
    case 0x1100...0x115f, 0x2e80...0x303e, 0x3041...0x33ff, 0x3400...0x4dbf, 0x4e00...0x9fff, 0xa000...0xa4cf,
        0xac00...0xd7a3, 0xf900...0xfaff, 0xfe30...0xfe4f, 0xff00...0xff60, 0xffe0...0xffe6, 0x20000...0x3fffd:
        return 2
    default:
        return 1
    }
}

/// SIGTERM, SIGINT and SIGHUP (a closed terminal) make the client leave, SIGWINCH redraws
/// it, SIGCONT puts raw mode back: the handler only writes the signal's number to a pipe that
/// the client's poll(2) watches, so the loop handles it (and restores the terminal) in order.
enum TerminalSignals {
    nonisolated(unsafe) private static var pipeEnds: (read: Int32, write: Int32) = (-1, -1)

    static func install() -> Int32 {
        var ends: (Int32, Int32) = (-1, -1)
        _ = withUnsafeMutableBytes(of: &ends) { pipe($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        for fd in [ends.0, ends.1] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        pipeEnds = ends
        for s in [SIGTERM, SIGINT, SIGHUP, SIGWINCH, SIGCONT] {
            signal(s) { number in
                let saved = errno
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(TerminalSignals.pipeEnds.write, &byte, 1)
                errno = saved
            }
        }
        return ends.0
    }
}
