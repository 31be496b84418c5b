import CJumpgatePTY
import FoundationEssentials
import Glibc
import JumpgateAgent
import JumpgateClient
import JumpgateNIO
import NIOConcurrencyHelpers

/// `jumpgate forward --exec`'s command: `/bin/sh -c COMMAND` with the bound ports in its environment, in a
/// process group of its own, so that `forward` can stop it with everything it started.
///
/// When `forward` starts in the foreground of the terminal on its standard input (directly or from a script,
/// not in a pipeline), the command gets the terminal as a shell's job would (``ForegroundTerminal``): it can
/// read it, and Ctrl+C, Ctrl+\ and Ctrl+Z reach the command, not `forward`. Otherwise the terminal's signals
/// reach `forward`, which ends the sessions and then stops the command.
enum ForwardExec {
    /// Set when `forward` starts ending (its termination signal, ``ForwardCommand``, or a session that ended
    /// first). One `forward` per process.
    static let ending = NIOLockedValueBox(false)

    /// The signals that end `forward --exec` (``ForwardCommand``): also a hangup (the terminal closed) and
    /// Ctrl+\, which do not reach the command's own process group off a terminal.
    static let endingSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// Whether `forward` is ending: ``ending`` is set, or one of ``endingSignals`` arrived and the task that
    /// waits for it may not have run yet (a `kill %1` sends SIGTERM, then continues the stopped job: the
    /// thread that waits for the command runs on at once). From then on a stop of the command is not the
    /// user's job control: the command stays stopped until `forward` sends it SIGTERM.
    static var isEnding: Bool {
        Self.ending.withLockedValue { $0 } || TerminationSignal.hasArrived(Self.endingSignals)
    }

    /// ``isEnding``, asked as `forward` runs again after its job was stopped: a `kill %1` sent SIGTERM
    /// before the SIGCONT, so the signal is pending or recorded, unless the thread the kernel handed it to
    /// was preempted before its handler ran. For that case a "no" is asked again for up to 20 ms (a `bg`
    /// continues the command that much later).
    static func isEndingOnceContinued() -> Bool {
        for _ in 0..<20 {
            if Self.isEnding { return true }
            usleep(1_000)
        }
        return Self.isEnding
    }

    /// Runs the command and returns its status as a shell gives it (128 + n for a signal n); 127 if `/bin/sh`
    /// cannot be started. Cancelling the task (a session ended, or the user ended `forward`) stops the
    /// command's group: SIGTERM, then SIGKILL 5 s later.
    static func run(_ command: String, ports: [Int]) async -> Int32 {
        var environment = ProcessInfo.processInfo.environment
        for (index, port) in ports.enumerated() { environment["JUMPGATE_PORT_\(index + 1)"] = String(port) }
        environment["JUMPGATE_PORTS"] = ports.map(String.init).joined(separator: ",")
        var launch = SpawnedProcess.Launch(
            executable: "/bin/sh",
            arguments: ["sh", "-c", command],
            environment: environment
        )
        launch.grouping = .newProcessGroup
        var terminal = ForegroundTerminal.current()
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess.spawn(launch, what: "/bin/sh") { _ in }
        } catch {
            StatusLine.withLineCleared {
                StandardStream.error.write("Error: cannot run /bin/sh for --exec '\(command)': \(error).\n")
            }
            return 127
        }
        // Lent from here rather than by the child before it runs (posix_spawn_file_actions_addtcsetpgrp_np
        // needs glibc 2.35; Amazon Linux 2023 and RHEL 9 have 2.34); whatever in the group touched the
        // terminal before is continued once it has it.
        terminal?.lendIfForeground(to: process.pid)
        let lentTerminal = terminal
        // Reaped under the lock, so a cancellation never signals a group whose leader was reaped (its pid
        // maybe reused).
        let reaped = NIOLockedValueBox(false)
        // Set once the command was sent SIGTERM.
        let terminated = NIOLockedValueBox(false)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                DetachedThread.start {
                    var terminal = lentTerminal
                    Self.waitUntilEnded(process, terminal: &terminal, terminated: terminated)
                    // Before the reap, so that no new process can take the ended leader's pid (and its
                    // group's id) while the terminal may still name that group.
                    terminal?.takeBack()
                    let status = reaped.withLockedValue { reaped in
                        reaped = true
                        return process.exitStatusIfEnded()
                    }
                    continuation.resume(returning: status?.shellCode ?? 1)
                }
            }
        } onCancel: {
            // A session ended first, or the user ended forward: the command loses its tunnel, so it is
            // stopped too, with everything it started (its process group); SIGCONT in case it is stopped.
            Self.ending.withLockedValue { $0 = true }
            reaped.withLockedValue { reaped in
                if !reaped {
                    kill(-process.pid, SIGTERM)
                    kill(-process.pid, SIGCONT)
                }
            }
            terminated.withLockedValue { $0 = true }
            // A command that ignores SIGTERM gets SIGKILL 5 s later, as the agent's programs do.
            DetachedThread.start {
                usleep(5_000_000)
                reaped.withLockedValue { reaped in
                    if !reaped { kill(-process.pid, SIGKILL) }
                }
            }
        }
    }

    /// Blocks until the command's shell has ended, without reaping it. With a terminal, each stop of the
    /// shell is handled as a shell handles its job's (``ForegroundTerminal/commandStopped(_:by:ending:)``), and while
    /// the terminal is not lent (`forward` in the background) the wait polls every 100 ms, to lend it as soon
    /// as `fg` brings `forward` back to the foreground.
    ///
    /// Once ``ending``, a stop no longer stops `forward`'s job: a command that touches the terminal in the
    /// background as it is continued (psql resets its modes) or as it handles SIGTERM (a trap, a program
    /// asking "save?") would otherwise leave `forward` stopped again after the user's `kill %1`, needing a
    /// second one. The command waits stopped until it was sent SIGTERM (`terminated`), then is continued,
    /// with the terminal if `forward` has it (so the signal acts), at most 20 times a second, until it
    /// ends or SIGKILL ends it.
    private static func waitUntilEnded(
        _ process: SpawnedProcess,
        terminal: inout ForegroundTerminal?,
        terminated: NIOLockedValueBox<Bool>
    ) {
        guard terminal != nil else {
            process.waitUntilEnded()
            return
        }
        while true {
            var info = siginfo_t()
            let polling = terminal?.lent == false
            guard waitid(P_PID, id_t(process.pid), &info, WEXITED | WSTOPPED | WNOWAIT | (polling ? WNOHANG : 0)) == 0
            else {
                if errno == EINTR { continue }
                return
            }
            if cjumpgate_siginfo_pid(&info) == 0 {
                // Nothing happened (WNOHANG).
                terminal?.lendIfForeground(to: process.pid)
                if terminal?.lent == false { usleep(100_000) }
                continue
            }
            guard info.si_code == CLD_STOPPED else { return }
            if Self.isEnding {
                if terminated.withLockedValue({ $0 }) {
                    terminal?.lendIfForeground(to: process.pid)
                    kill(-process.pid, SIGCONT)
                }
                usleep(50_000)
                continue
            }
            // Consumes the stop (WNOWAIT left it), so the next wait reports what comes after it. Nothing to
            // consume means it is gone already (a SIGCONT from a session's end continued the command).
            var consumed = siginfo_t()
            guard waitid(P_PID, id_t(process.pid), &consumed, WSTOPPED | WNOHANG) == 0,
                cjumpgate_siginfo_pid(&consumed) == process.pid
            else { continue }
            terminal?.commandStopped(process.pid, by: cjumpgate_siginfo_status(&consumed)) {
                Self.isEndingOnceContinued()
            }
        }
    }
}
