import Glibc

/// Bytes on their way to a terminal or a pipe, written a chunk at a time once poll(2) says
/// it takes more: a chunk up to PIPE_BUF goes into a pipe whole, without waiting.
struct PendingOutput {
    static let chunk = Int(PIPE_BUF)

    private(set) var bytes: [UInt8] = []

    mutating func append(_ more: some Sequence<UInt8>) {
        bytes += more
    }

    /// One chunk written (or `limit` bytes); false once `fd` takes no more (it is gone).
    @discardableResult
    mutating func write(to fd: Int32, atMost limit: Int = chunk) -> Bool {
        let n = bytes.prefix(limit).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else {
            if errno == EINTR || errno == EAGAIN { return true }
            bytes = []  // the terminal or the reader is gone: nothing more to show
            return false
        }
        bytes.removeFirst(n)
        return true
    }

    /// Everything written, waiting as long as it takes (on the way out).
    mutating func writeAll(to fd: Int32) {
        while !bytes.isEmpty && write(to: fd, atMost: bytes.count) {}
    }
}
