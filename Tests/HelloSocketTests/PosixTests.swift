import Glibc
import HelloSocket
import Testing

/// The Posix layer against the real kernel: what each call promises its callers in
/// HelloServer and hellod.
@Suite struct PosixTests {
    /// Whether `descriptor` is readable now (poll, no wait).
    func isReadable(_ descriptor: Int32) -> Bool {
        var fd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&fd, 1, 0) == 1
    }

    @Test func anEventFDIsReadableFromItsSignalUntilItsDrain() throws {
        let event = try EventFD()
        #expect(!isReadable(event.descriptor.rawValue))
        event.signal()
        event.signal()
        #expect(isReadable(event.descriptor.rawValue))
        event.drain()
        #expect(!isReadable(event.descriptor.rawValue))
        event.drain()  // nothing to drain: EAGAIN, not a wait
    }

    @Test func writeAllDeliversEveryByteThroughAPipe() throws {
        var ends: (Int32, Int32) = (0, 0)
        #expect(withUnsafeMutableBytes(of: &ends) { pipe($0.baseAddress!.assumingMemoryBound(to: Int32.self)) } == 0)
        defer { close(ends.0); close(ends.1) }
        try Posix.writeAll("one line\n", to: .init(rawValue: ends.1))
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(ends.0, &buffer, buffer.count)
        #expect(Array(buffer[..<count]) == Array("one line\n".utf8))
    }

    @Test func aWritableFileIsWrittenClosedAndRenamed() throws {
        let path = "/tmp/hellod-posix-test-\(getpid())"
        let file = try WritableFile(creating: path + ".tmp", permissions: 0o600)
        try file.setPermissions(0o644)
        try file.writeAll(Array("hellod_up 1\n".utf8))
        try file.close()
        try Posix.rename(path + ".tmp", to: path)
        defer { try? Posix.unlink(path) }
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_size == 12)
        #expect(info.st_mode & 0o777 == 0o644)
        #expect(throws: SocketError.self) { try Posix.rename(path + ".tmp", to: path) }  // gone: ENOENT
    }

    @Test func aMissingDirectoryIsATypedErrorNamingTheCall() {
        do {
            _ = try WritableFile(creating: "/nonexistent/hellod.prom", permissions: 0o644)
            Issue.record("created a file in a missing directory")
        } catch {
            #expect(error.call == "open")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }

    @Test func fillRandomFillsTheBuffer() throws {
        var bytes = [UInt8](repeating: 0, count: 32)
        let got = try bytes.withUnsafeMutableBytes { buffer throws(SocketError) in try Posix.fillRandom(buffer) }
        #expect(got == 32)
        #expect(bytes != [UInt8](repeating: 0, count: 32))
    }

    @Test func aSignalSetWaitsOutItsTimeoutWhenNoSignalComes() {
        // SIGUSR2, blocked in this thread only for the wait: nobody sends it.
        let signals = SignalSet([Signal(number: SIGUSR2)])
        signals.block()
        let started = monotonicNanoseconds()
        #expect(signals.wait(nanoseconds: 20_000_000) == nil)
        #expect(monotonicNanoseconds() - started >= 20_000_000)
    }

    @Test func aPendingSignalIsTakenAndNamed() {
        let signals = SignalSet([.hangUp])
        signals.block()
        pthread_kill(pthread_self(), SIGHUP)  // pending, blocked: never handled
        #expect(signals.wait(nanoseconds: 1_000_000_000) == .hangUp)
        #expect(Signal.hangUp.name == "SIGHUP")
        #expect(Signal(number: 99).name == "signal 99")
    }

    @Test func aThreadRunsItsClosureAndIsJoined() {
        let ran = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
        defer { ran.deallocate() }
        ran.pointee = false
        let box = UncheckedBox(ran)
        PosixThread.spawn(name: "test-posix") { box.pointer.pointee = true }.join()
        #expect(ran.pointee)
    }
}

private struct UncheckedBox: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Bool>
    init(_ pointer: UnsafeMutablePointer<Bool>) { self.pointer = pointer }
}

/// The C-interop helpers hellod's libsystemd binding uses.
@Suite struct PosixCInteropTests {
    @Test func takeCStringsReadsEveryStringAndAMissingOneIsNil() {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 3)
        array[0] = strdup("hello")
        array[1] = nil
        array[2] = strdup("echo")
        // Freed by takeCStrings, as free(3) frees what allocate gave: both are malloc.
        #expect(Posix.takeCStrings(array, count: 3) == ["hello", nil, "echo"])
        #expect(Posix.takeCStrings(nil, count: 0) == [])
    }

    @Test func withIOVectorsPointsAtEachStringsBytes() {
        let strings = Posix.withIOVectors(["MESSAGE=hi", "PRIORITY=6", ""]) { vectors, count in
            (0..<Int(count)).map { i in
                String(
                    decoding: UnsafeRawBufferPointer(start: vectors[i].iov_base, count: vectors[i].iov_len),
                    as: UTF8.self)
            }
        }
        #expect(strings == ["MESSAGE=hi", "PRIORITY=6", ""])
    }
}
