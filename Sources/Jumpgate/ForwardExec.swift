import CJumpgatePTY
import FoundationEssentials
import Glibc
import JumpgateAgent
import JumpgateNIO
import NIOConcurrencyHelpers

/// `jumpgate forward --exec`'s command: `/bin/sh -c COMMAND` with the bound ports in its environment, in a
/// process group of its own, so that `forward` can stop it with everything it started.
///
/// On a terminal whose foreground `forward` holds, the command gets the terminal as a shell's job would
/// (``ForegroundTerminal``): it can read it, and Ctrl+C, Ctrl+\ and Ctrl+Z reach the command, not `forward`.
/// Anywhere else (a script, a pipe, the background), the terminal's signals reach `forward`, which ends the
/// sessions and then stops the command.
enum ForwardExec {
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
        let terminal = ForegroundTerminal.current()
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess.spawn(launch, what: "/bin/sh") { actions in
                // The child takes the terminal before it runs anything (glibc does it with every signal
                // blocked): no moment where the command reads the terminal from the background.
                if let terminal { cjumpgate_spawn_file_actions_addtcsetpgrp(&actions, terminal.descriptor) }
            }
        } catch {
            StatusLine.withLineCleared {
                StandardStream.error.write("Error: cannot run /bin/sh for --exec '\(command)': \(error).\n")
            }
            return 127
        }
        // Reaped under the lock, so a cancellation never signals a group whose leader was reaped (its pid
        // maybe reused).
        let reaped = NIOLockedValueBox(false)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                DetachedThread.start {
                    Self.waitUntilEnded(process, terminal: terminal)
                    let status = reaped.withLockedValue { reaped in
                        reaped = true
                        return process.exitStatusIfEnded()
                    }
                    terminal?.takeBack(from: process.pid)
                    continuation.resume(returning: status?.shellCode ?? 1)
                }
            }
        } onCancel: {
            // A session ended first, or the user ended forward: the command loses its tunnel, so it is
            // stopped too, with everything it started (its process group); SIGCONT in case it is stopped.
            reaped.withLockedValue { reaped in
                if !reaped {
                    kill(-process.pid, SIGTERM)
                    kill(-process.pid, SIGCONT)
                }
            }
            // A command that ignores SIGTERM gets SIGKILL 5 s later, as the agent's programs do.
            DetachedThread.start {
                usleep(5_000_000)
                reaped.withLockedValue { reaped in
                    if !reaped { kill(-process.pid, SIGKILL) }
                }
            }
        }
    }

    /// Blocks until the command's shell has ended, without reaping it. With a terminal, a stop of the shell
    /// (Ctrl+Z) suspends `forward` too, as a shell's job: ``ForegroundTerminal/suspend(command:)``.
    private static func waitUntilEnded(_ process: SpawnedProcess, terminal: ForegroundTerminal?) {
        guard let terminal else {
            process.waitUntilEnded()
            return
        }
        while true {
            var info = siginfo_t()
            guard waitid(P_PID, id_t(process.pid), &info, WEXITED | WSTOPPED | WNOWAIT) == 0 else {
                if errno == EINTR { continue }
                return
            }
            guard info.si_code == CLD_STOPPED else { return }
            // Consumes the stop (WNOWAIT left it), so the next wait reports what comes after it.
            var consumed = siginfo_t()
            _ = waitid(P_PID, id_t(process.pid), &consumed, WSTOPPED | WNOHANG)
            terminal.suspend(command: process.pid)
        }
    }
}
