#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread of its own for blocking work that must not wait for a pool (a terminal's input, a program's
/// exit), started with pthreads: Foundation's `Thread` would load Foundation into the process.
public enum DetachedThread {
    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Runs `body` on a new detached thread. Traps if the system cannot start a thread (as `Thread` did).
    public static func start(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            nil,
            { argument in
                let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
                body.run()
                return nil
            },
            box
        )
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(thread)
    }
}
