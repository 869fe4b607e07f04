import CShims
import Glibc
import SystemPackage

/// The daemon's system calls outside sockets, each through `systemCall` (EINTR retried,
/// EBADF and EFAULT a bug, any other errno thrown typed): HelloServer and hellod call the
/// kernel through here and the socket types, never through Glibc or CShims (after
/// swift-nio's NIOPosix/System.swift). Resources that must be closed have owners of their
/// own: `EventFD`, `WritableFile`, `SignalSet`, `PosixThread`, `IntervalInterrupt`.
@usableFromInline package enum Posix {
    /// Sleeps `nanoseconds` on the monotonic clock. Not resumed after a signal: every
    /// caller sleeps in a loop that looks again.
    @usableFromInline package static func sleep(nanoseconds: UInt64) {
        var pause = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        _ = clock_nanosleep(CLOCK_MONOTONIC, 0, &pause, nil)
    }

    /// How late the kernel may wake this thread from a timed sleep (prctl PR_SET_TIMERSLACK;
    /// the default, 50 us, would stretch a short sleep a lot).
    @usableFromInline package static func setTimerSlack(nanoseconds: UInt) throws(SocketError) {
        _ = try systemCall("prctl") { hs_set_timer_slack(nanoseconds) }
    }

    /// Fills `buffer` from the kernel's random pool (getrandom(2), blocking until the pool
    /// is initialised). Returns how many bytes it got: fewer only if a signal came between.
    package static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int {
        try systemCall("getrandom") { hs_getrandom(buffer.baseAddress, buffer.count) }
    }

    /// This machine's memory and swap in bytes (sysinfo(2)); 0 if not known.
    package static func memoryAndSwap() -> UInt64 {
        hs_memory_and_swap()
    }

    /// Wall-clock time in seconds since the Unix epoch (vDSO: no system call).
    package static func realTime() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// Writes all of `bytes` to `descriptor`, again after a partial write or EINTR.
    /// `inherited`: a descriptor the process was given (stderr), perhaps closed.
    package static func writeAll(
        _ bytes: UnsafeRawBufferPointer, to descriptor: FileDescriptor,
        inherited: Bool = false
    ) throws(SocketError) {
        var done = 0
        while done < bytes.count {
            let written = try systemCall("write", inherited: inherited) {
                Glibc.write(descriptor.rawValue, bytes.baseAddress! + done, bytes.count - done)
            }
            // write(2) returns 0 only for a count of 0: never here, but it must not loop.
            guard written > 0 else { throw SocketError(call: "write", errno: .ioError) }
            done += written
        }
    }

    /// `text` to `descriptor` in one write(2) unless the kernel takes less: a line from
    /// one thread is never cut by another's.
    package static func writeAll(_ text: String, to descriptor: FileDescriptor, inherited: Bool = false)
        throws(SocketError)
    {
        var text = text
        // withUTF8 rethrows untyped: the error is carried out by hand.
        let failure = text.withUTF8 { bytes -> SocketError? in
            do throws(SocketError) {
                try writeAll(UnsafeRawBufferPointer(bytes), to: descriptor, inherited: inherited)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    package static let standardError = FileDescriptor(rawValue: STDERR_FILENO)

    /// The device and inode of what `descriptor` is open on (fstat(2)): tells whether
    /// stderr is the journal's stream (JOURNAL_STREAM).
    package static func fileIdentity(
        of descriptor: FileDescriptor,
        inherited: Bool = false
    ) throws(SocketError) -> (device: UInt64, inode: UInt64) {
        var info = stat()
        _ = try systemCall("fstat", inherited: inherited) { fstat(descriptor.rawValue, &info) }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// An environment variable's value, nil if it is not set.
    package static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The strings of a malloc'd array of `count` malloc'd C strings, as a C library hands
    /// them over (sd_listen_fds_with_names(3)); frees them and the array.
    package static func takeCStrings(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, count: Int)
        -> [String?]
    {
        defer {
            for i in 0..<count { free(array?[i]) }
            free(array)
        }
        return (0..<count).map { i in array?[i].map { String(cString: $0) } }
    }

    /// Calls `body` with an iovec per string (its bytes, without a NUL), for a C call that
    /// takes them (sd_journal_sendv(3)).
    package static func withIOVectors<Result>(
        _ strings: [String],
        _ body: (UnsafePointer<iovec>, Int32) -> Result
    ) -> Result {
        let copies = strings.map { strdup($0)! }
        defer { copies.forEach { free($0) } }
        let vectors = copies.map { iovec(iov_base: $0, iov_len: strlen($0)) }
        return body(vectors, Int32(vectors.count))
    }

    /// Renames `from` to `to` in one step (rename(2)): a reader sees the old file or the new.
    package static func rename(_ from: String, to: String) throws(SocketError) {
        _ = try systemCall("rename") { Glibc.rename(from, to) }
    }

    /// Removes `path` (unlink(2)).
    package static func unlink(_ path: String) throws(SocketError) {
        _ = try systemCall("unlink") { Glibc.unlink(path) }
    }
}

/// An eventfd(2) that one thread signals and others wait for in poll: closed with its
/// owner. Non-blocking, so a drain finds nothing rather than waits.
package struct EventFD: ~Copyable, Sendable {
    package let descriptor: FileDescriptor

    package init() throws(SocketError) {
        descriptor = FileDescriptor(rawValue: try systemCall("eventfd") { hs_eventfd() })
    }

    deinit {
        _ = Glibc.close(descriptor.rawValue)
    }

    /// Makes it readable: every poll on it returns, until it is drained.
    package func signal() {
        var one: UInt64 = 1
        // EAGAIN only if the counter were about to overflow: it is readable then anyway.
        _ = try? nonBlockingCall("eventfd write") { Glibc.write(descriptor.rawValue, &one, 8) }
    }

    /// Waits until it is signalled, at most `nanoseconds` (nil: as long as it takes), and
    /// drains it; false if the time passed first.
    package func wait(nanoseconds: UInt64?) -> Bool {
        var fd = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        var timeout = timespec(
            tv_sec: Int((nanoseconds ?? 0) / 1_000_000_000), tv_nsec: Int((nanoseconds ?? 0) % 1_000_000_000))
        // EINTR counts as a wake-up: the caller looks at what changed anyway.
        let ready = nanoseconds == nil ? hs_ppoll(&fd, 1, nil) : hs_ppoll(&fd, 1, &timeout)
        guard ready > 0 else { return ready < 0 }
        drain()
        return true
    }

    /// Makes it unreadable again, if it was signalled.
    package func drain() {
        var value: UInt64 = 0
        _ = try? nonBlockingCall("eventfd read") { Glibc.read(descriptor.rawValue, &value, 8) }
    }
}

/// The interrupt signal (`PosixThread.interrupt`), sent to the thread that starts it every
/// `interval` by a timer of its own: what ends, at that pace, a receive that waits without
/// a timeout. Stopped with its owner.
@usableFromInline package struct IntervalInterrupt: ~Copyable {
    /// The kernel's timer id, which may be 0: a null `timer_t` is a timer too.
    private let timer: timer_t?

    /// Installs the handler that makes the signal interrupt rather than end the process,
    /// and unblocks it in this thread, before the first comes.
    @usableFromInline package init(every interval: UInt64) throws(SocketError) {
        precondition(interval > 0, "an interval of 0 would stop the timer, not start it")
        try PosixThread.interruptible()
        _ = hs_unblock_interrupt()
        var timer: timer_t?
        let result = hs_interrupt_every(interval, &timer)
        guard result == 0 else { throw SocketError(call: "timer_create", errno: Errno(rawValue: -result)) }
        self.timer = timer
    }

    deinit {
        _ = hs_delete_timer(timer)
    }
}

/// A file opened for writing, created or truncated, closed with its owner (or by
/// `close()`, which says whether the data went out).
package struct WritableFile: ~Copyable {
    private let descriptor: FileDescriptor

    /// Creates `path` (or truncates it) with `permissions` as the umask leaves them.
    package init(creating path: String, permissions: UInt32) throws(SocketError) {
        descriptor = FileDescriptor(
            rawValue: try systemCall("open") {
                open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(permissions))
            })
    }

    deinit {
        _ = Glibc.close(descriptor.rawValue)
    }

    /// Sets its permissions regardless of the umask (fchmod(2)).
    package func setPermissions(_ permissions: UInt32) throws(SocketError) {
        _ = try systemCall("fchmod") { fchmod(descriptor.rawValue, mode_t(permissions)) }
    }

    package func writeAll(_ bytes: [UInt8]) throws(SocketError) {
        // withUnsafeBytes rethrows untyped: the error is carried out by hand.
        let failure = bytes.withUnsafeBytes { bytes -> SocketError? in
            do throws(SocketError) {
                try Posix.writeAll(bytes, to: descriptor)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Closes it; an error here can be a write that failed late (NFS, a full disk).
    package consuming func close() throws(SocketError) {
        let descriptor = self.descriptor
        discard self
        // Not retried on EINTR: Linux has closed the descriptor anyway.
        guard Glibc.close(descriptor.rawValue) == 0 else {
            throw SocketError(call: "close", errno: Errno(rawValue: Glibc.errno))
        }
    }
}

/// A POSIX signal, by number.
package struct Signal: Equatable, Sendable {
    package let number: Int32

    package init(number: Int32) {
        self.number = number
    }

    package static let terminate = Signal(number: SIGTERM)
    package static let interrupt = Signal(number: SIGINT)
    package static let hangUp = Signal(number: SIGHUP)
    package static let user1 = Signal(number: SIGUSR1)

    /// `SIGTERM`, `SIGINT`, `SIGHUP`, or `signal N`.
    package var name: String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(number)"
        }
    }
}

/// Signals taken synchronously: blocked, then waited for (sigtimedwait), so no code runs
/// in a signal handler.
package struct SignalSet: Sendable {
    private var set = sigset_t()

    package init(_ signals: [Signal]) {
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal.number) }
    }

    /// Blocks them in this thread and in the threads it starts from now on (they inherit
    /// its mask): call before any other thread exists.
    package func block() {
        var set = set
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// The first of them pending within `nanoseconds`; nil if none came.
    package func wait(nanoseconds: UInt64) -> Signal? {
        var set = set
        var timeout = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        // EAGAIN: the time passed.
        let number = (try? nonBlockingCall("sigtimedwait") { sigtimedwait(&set, nil, &timeout) }) ?? nil
        return number.map { Signal(number: $0) }
    }
}

/// A POSIX thread running a closure: the daemon's workers are plain threads, one per
/// socket, each blocking in its own system calls; no executor sits between them and the
/// kernel.
package struct PosixThread: Sendable {
    private let handle: pthread_t

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(name: String, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Starts `run` on a new thread named `name` (shown by top -H and in /proc).
    package static func spawn(name: String, _ run: @escaping @Sendable () -> Void) -> PosixThread {
        let body = Unmanaged.passRetained(Body(name: name, run: run)).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(
            &handle, nil,
            { context in
                let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
                _ = hs_set_thread_name(String(body.name.prefix(15)))
                _ = hs_unblock_interrupt()  // whatever its creator blocked: `interrupt()` must reach it
                body.run()
                return nil
            }, body)
        precondition(status == 0, "pthread_create failed: \(status)")
        return PosixThread(handle: handle)
    }

    package func join() {
        pthread_join(handle, nil)
    }

    /// Interrupts the system call the thread is blocked in, if any: it returns EINTR
    /// (`PosixThread.interruptible` installs the handler that makes it so).
    package func interrupt() {
        _ = pthread_kill(handle, hs_interrupt_signal())
    }

    /// Joins it, interrupting it every `interval` nanoseconds until it ends: a thread that
    /// was about to block when its stop was asked blocks anyway, and the next interrupt
    /// wakes it. `giveUpAfter`: false if it has not ended after that many nanoseconds
    /// (nil: never give up).
    @discardableResult
    package func join(interruptingEvery interval: UInt64, giveUpAfter limit: UInt64? = nil) -> Bool {
        var waited: UInt64 = 0
        repeat {
            if let limit, waited >= limit { return false }
            interrupt()
            waited += interval
        } while hs_join_within(handle, interval) != 0
        return true
    }

    /// Gives the calling thread a file descriptor table of its own, a copy of the process's
    /// (unshare(2), CLONE_FILES): a descriptor opened or closed elsewhere afterwards is not
    /// opened or closed here. While threads share a table, every system call on a
    /// descriptor takes and drops a reference to its file, two atomic operations; a thread
    /// that makes two system calls a message saves both.
    package static func ownFileTable() throws(SocketError) {
        let result = hs_unshare_file_table()
        guard result == 0 else { throw SocketError(call: "unshare(CLONE_FILES)", errno: Errno(rawValue: -result)) }
    }

    /// Makes `interrupt()` interrupt: a handler that does nothing for its signal, installed
    /// once for the process, before the threads that may be interrupted start.
    package static func interruptible() throws(SocketError) {
        let result = hs_install_interrupt_handler()
        guard result == 0 else { throw SocketError(call: "sigaction", errno: Errno(rawValue: -result)) }
    }
}

extension DatagramSocket {
    /// The poll event `wait(for:)` takes for "a datagram is queued".
    @usableFromInline package static let readable = Int16(POLLIN)
    /// What sd_is_socket(3) takes to ask "a datagram socket, of any family".
    package static let anyFamily = AF_UNSPEC
    package static let datagramType = Int32(SOCK_DGRAM.rawValue)
}

extension SocketAddress {
    /// Whether it is an IPv4 or IPv6 address (not a Unix or other family's).
    package var isInternet: Bool { family == AF_INET || family == AF_INET6 }
}
