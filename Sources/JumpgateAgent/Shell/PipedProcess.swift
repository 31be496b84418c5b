import CJumpgatePTY
import FoundationEssentials
import Glibc

/// A program whose output is read through pipes, as a non-interactive command runs (docs/SESSIONS.md):
/// standard input is /dev/null (as in SSM), standard output and standard error are two pipes whose read
/// ends the caller owns. No terminal: the program is in a session of its own without one.
public struct PipedProcess: Sendable {
    public let process: SpawnedProcess
    /// The read ends (close-on-exec, owned by the caller).
    public let standardOutput: CInt
    public let standardError: CInt

    public static func spawn(_ launch: SpawnedProcess.Launch) throws(SpawnedProcess.Failure) -> PipedProcess {
        var output: [CInt] = [-1, -1]
        var errors: [CInt] = [-1, -1]
        let opened = cjumpgate_pipe_cloexec(&output)
        guard opened == 0 else { throw .init("pipe", -opened, what: "the command") }
        let openedErrors = cjumpgate_pipe_cloexec(&errors)
        guard openedErrors == 0 else {
            close(output[0])
            close(output[1])
            throw .init("pipe", -openedErrors, what: "the command")
        }
        // The write ends are the program's only: closed here whatever happens, so the read ends see the end
        // of its output when it (and whatever inherited them) is gone.
        defer {
            close(output[1])
            close(errors[1])
        }
        do {
            let process = try SpawnedProcess.spawn(launch, what: "the command") { actions in
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_adddup2(&actions, output[1], 1)
                posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
            }
            return PipedProcess(process: process, standardOutput: output[0], standardError: errors[0])
        } catch {
            close(output[0])
            close(errors[0])
            throw error
        }
    }
}
