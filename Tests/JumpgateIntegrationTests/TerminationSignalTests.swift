import Glibc
import JumpgateClient
import Testing

/// `TerminationSignal` with signals this test process can take (SIGUSR1, SIGUSR2: never SIGTERM, which
/// must go on ending a test run that overran).
@Suite("TerminationSignal", .serialized)
struct TerminationSignalTests {
    @Test("a waiter gets the signal it waits for, and the signal counts as arrived from then on")
    func waiterAndRecord() async throws {
        #expect(!TerminationSignal.hasArrived([SIGUSR2]))
        let waiter = Task { await TerminationSignal.wait([SIGUSR2]) }
        try Self.waitUntilCaught(SIGUSR2)
        kill(getpid(), SIGUSR2)
        #expect(await waiter.value == SIGUSR2)
        #expect(TerminationSignal.hasArrived([SIGUSR2]))
        #expect(TerminationSignal.hasArrived([SIGINT, SIGUSR2]))
    }

    @Test(
        "a signal sent but not yet handled (blocked in the only thread it was sent to) has arrived already; once unblocked, the handler runs and the waiter gets it"
    )
    func pendingCounts() async throws {
        let waiter = Task { await TerminationSignal.wait([SIGUSR1]) }
        try Self.waitUntilCaught(SIGUSR1)
        #expect(Self.pendingThenHandled(SIGUSR1) == [false, true, true])
        #expect(await waiter.value == SIGUSR1)
    }

    /// In one thread, without suspending: whether `number` had arrived before it was sent, while it is
    /// sent to this thread and blocked (pending, not handled), and after unblocking it (handled here).
    static func pendingThenHandled(_ number: Int32) -> [Bool] {
        var answers = [TerminationSignal.hasArrived([number])]
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, number)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &set, &previous)
        pthread_kill(pthread_self(), number)
        answers.append(TerminationSignal.hasArrived([number]))
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        answers.append(TerminationSignal.hasArrived([number]))
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        return answers
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
