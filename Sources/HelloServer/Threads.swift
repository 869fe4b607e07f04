import CShims
import Glibc

/// A POSIX thread running a closure: the daemon's workers are plain threads, one per
/// socket, each blocking in its own system calls; no executor sits between them and the
/// kernel.
package struct WorkerThread: Sendable {
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
    package static func spawn(name: String, _ run: @escaping @Sendable () -> Void) -> WorkerThread {
        let body = Unmanaged.passRetained(Body(name: name, run: run)).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            _ = hs_set_thread_name(String(body.name.prefix(15)))
            body.run()
            return nil
        }, body)
        precondition(status == 0, "pthread_create failed: \(status)")
        return WorkerThread(handle: handle)
    }

    package func join() {
        pthread_join(handle, nil)
    }
}
