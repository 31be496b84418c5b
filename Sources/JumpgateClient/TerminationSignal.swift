import CJumpgateSignals
import JumpgateNIO
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT, SIGTERM (and SIGQUIT, SIGTSTP, as the official plugin handles them, and SIGHUP: a closed terminal
/// window, or ssh ending its ProxyCommand) as one awaitable event.
///
/// The signals are caught by a C handler (CJumpgateSignals) that records each one before anything else
/// runs and writes its number to a pipe, which one thread reads and hands to the waiters. So besides waiting,
/// any thread can ask whether a signal arrived (``hasArrived(_:)``) without waiting for the waiters to hear
/// of it: `jumpgate forward --exec`, continued by the shell's `kill %1` (SIGTERM, then SIGCONT), must know
/// it is ending as soon as it runs again.
///
/// A signal caught here must not also be watched through Dispatch (`UnixSignalsSequence`) in the same
/// process: whichever installs its handler last gets it. Today the agent watches SIGHUP through Dispatch and
/// SIGINT and SIGTERM here; the clients SIGWINCH through Dispatch and the rest here.
public enum TerminationSignal {
    private struct Waiter {
        let signals: [Int32]
        let continuation: CheckedContinuation<Int32, Never>
    }

    private struct State {
        /// Whether the pipe and its reading thread exist.
        var started = false
        var waiters: [Waiter] = []
    }

    private static let state = NIOLockedValueBox(State())

    /// Waits for the first of `signals` that arrives from now on, and returns its number. A SIGHUP that is
    /// ignored when this is called (`nohup`) stays ignored: the session outlives the terminal, as asked.
    public static func wait(_ signals: [Int32] = [SIGINT, SIGTERM, SIGQUIT, SIGTSTP, SIGHUP]) async -> Int32 {
        await withCheckedContinuation { continuation in
            Self.state.withLockedValue { state in
                if !state.started {
                    state.started = true
                    Self.startReading()
                }
                let caught = signals.filter { $0 != SIGHUP || cjumpgate_signals_is_ignored($0) == 0 }
                // Registered before the handler is installed: a signal the handler writes is never dropped
                // for want of a waiter that was about to exist.
                state.waiters.append(Waiter(signals: caught, continuation: continuation))
                for number in caught {
                    let result = cjumpgate_signals_catch(number)
                    precondition(result == 0, "sigaction(\(number)) failed: \(-result)")
                }
            }
        }
    }

    /// Whether one of `signals` was sent to this process since ``wait(_:)`` started catching it: it is
    /// pending, or the handler has run for it. A signal that the kernel has just handed to another thread
    /// counts only once that thread runs its handler's first instruction (the record): a thread preempted in
    /// between leaves a window, usually microseconds, up to a time slice on a busy machine.
    public static func hasArrived(_ signals: [Int32]) -> Bool {
        let mask = signals.reduce(UInt64(0)) { (1...63).contains($1) ? $0 | 1 << UInt64($1) : $0 }
        return cjumpgate_signals_arrived(mask) == 1
    }

    /// Creates the handler's pipe and the thread that reads it and resumes the waiters for each signal.
    /// That thread blocks no signal, so a caught signal is handled even in a process whose other threads
    /// all block it (Dispatch's and NIO's threads do; only the main thread, parked by Dispatch, takes
    /// signals).
    private static func startReading() {
        let readEnd = cjumpgate_signals_open()
        precondition(readEnd >= 0, "cannot create the signal pipe: \(-readEnd)")
        DetachedThread.start {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            var byte: UInt8 = 0
            while true {
                let count = read(readEnd, &byte, 1)
                if count < 0, errno == EINTR { continue }
                guard count == 1 else { return }
                let number = Int32(byte)
                let woken = Self.state.withLockedValue { state -> [Waiter] in
                    let woken = state.waiters.filter { $0.signals.contains(number) }
                    state.waiters.removeAll { $0.signals.contains(number) }
                    return woken
                }
                for waiter in woken { waiter.continuation.resume(returning: number) }
            }
        }
    }
}
