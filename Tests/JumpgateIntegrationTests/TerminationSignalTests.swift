import Glibc
import JumpgateClient
import NIOConcurrencyHelpers
import Testing

/// `TerminationSignal` with signals this test process can take (SIGUSR1, SIGUSR2: never SIGTERM, which
/// must go on ending a test run that overran). Each signal is sent once per process: its record is never
/// cleared. The pending case is pending for one thread (`pthread_kill`), which `hasArrived` reads through the
/// same call (`sigpending`) as a signal pending for the whole process. That `hasArrived` blocks the signal
/// around that call (the kernel reports only what the calling thread blocks) is not tested: a signal that
/// this thread does not block is delivered to it at once, so it is never seen pending here.
@Suite("TerminationSignal", .serialized)
struct TerminationSignalTests {
    @Test("a waiter gets the signal it waits for, and the signal counts as arrived from then on")
    func waiterAndRecord() async throws {
        #expect(!TerminationSignal.hasArrived([SIGUSR2]))
        let waiter = Self.waiter([SIGUSR2])
        try Self.waitUntilCaught(SIGUSR2)
        kill(getpid(), SIGUSR2)
        #expect(try Self.result(of: waiter) == SIGUSR2)
        #expect(TerminationSignal.hasArrived([SIGUSR2]))
        // Any of the signals asked about.
        #expect(TerminationSignal.hasArrived([SIGINT, SIGUSR2]))
    }

    @Test(
        "a signal sent but not yet handled (blocked in the only thread it was sent to) has arrived already; once unblocked, the handler runs and the waiter gets it"
    )
    func pendingCounts() async throws {
        let waiter = Self.waiter([SIGUSR1])
        try Self.waitUntilCaught(SIGUSR1)
        #expect(Self.pendingThenHandled(SIGUSR1) == [false, true, true])
        #expect(try Self.result(of: waiter) == SIGUSR1)
    }

    @Test("a signal pending but never caught by TerminationSignal (nohup's SIGHUP, say) has not arrived")
    func uncaughtPendingDoesNotCount() {
        #expect(Self.pendingUncaught(SIGURG) == [true, false])
    }

    /// In one thread: `number` (not caught) sent to this thread while it blocks it: whether the thread sees
    /// it pending, and whether `hasArrived` counts it. It is then taken with `sigwait`, never delivered.
    static func pendingUncaught(_ number: Int32) -> [Bool] {
        Self.sentWhileBlocked(number) { set in
            var pending = sigset_t()
            sigpending(&pending)
            let answers = [sigismember(&pending, number) == 1, TerminationSignal.hasArrived([number])]
            var taken: Int32 = 0
            sigwait(&set, &taken)  // pending: returns at once
            return answers
        }
    }

    /// In one thread, without suspending: whether `number` had arrived before it was sent, while it is
    /// sent to this thread and blocked (pending, not handled), and after unblocking it (handled here).
    static func pendingThenHandled(_ number: Int32) -> [Bool] {
        let before = TerminationSignal.hasArrived([number])
        return Self.sentWhileBlocked(number) { set in
            let pending = TerminationSignal.hasArrived([number])
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            return [before, pending, TerminationSignal.hasArrived([number])]
        }
    }

    /// Blocks `number` in this thread, sends it to this thread (so it is pending here), runs `body` with
    /// the one-signal set, then puts the thread's mask back.
    static func sentWhileBlocked(_ number: Int32, _ body: (inout sigset_t) -> [Bool]) -> [Bool] {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, number)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &set, &previous)
        pthread_kill(pthread_self(), number)
        let answers = body(&set)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        return answers
    }

    /// A task that waits for `signals`; its answer lands in the box. (Not awaited: a waiter that is never
    /// woken ignores cancellation, and would hang the run instead of failing the test.)
    static func waiter(_ signals: [Int32]) -> NIOLockedValueBox<Int32?> {
        let box = NIOLockedValueBox<Int32?>(nil)
        Task {
            let number = await TerminationSignal.wait(signals)
            box.withLockedValue { $0 = number }
        }
        return box
    }

    /// The waiter's answer, waited for (at most 10 s).
    static func result(of waiter: NIOLockedValueBox<Int32?>) throws -> Int32 {
        for _ in 0..<1000 {
            if let number = waiter.withLockedValue({ $0 }) { return number }
            usleep(10_000)
        }
        throw HarnessError("the waiter was not woken within 10 s")
    }

    /// Waits (at most 10 s) until `number` is caught by a handler: `wait` installs it once its task runs.
    static func waitUntilCaught(_ number: Int32) throws {
        for _ in 0..<1000 {
            var current = sigaction()
            sigaction(number, nil, &current)
            if unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) > 1 { return }
            usleep(10_000)
        }
        throw HarnessError("no handler for signal \(number) after 10 s")
    }
}
