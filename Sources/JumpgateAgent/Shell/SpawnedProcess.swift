import CJumpgatePTY
import FoundationEssentials
import Glibc
import JumpgateWire

/// A program started for a session (the agent's shells and commands, `useradd`, `jumpgate forward --exec`'s
/// command), and how it is started: `posix_spawn` (never `fork` in a multithreaded process), in a new
/// session or a new process group (``Launch/grouping``), every signal at its default and
/// unblocked whatever the agent ignores, and no descriptor of the agent's above 2. Waiting and reaping are
/// separate, so that whoever reaps decides when its pid may no longer be signalled.
public struct SpawnedProcess: Sendable, Hashable {
    public let pid: pid_t

    public init(pid: pid_t) { self.pid = pid }

    public struct Launch: Sendable {
        public var executable: String
        /// The program's argv, its name first.
        public var arguments: [String]
        public var environment: [String: String]
        public var workingDirectory: String?
        /// The terminal's size (programs on a pseudo-terminal only).
        public var size: TerminalSize?
        /// Where the program runs: in a session of its own (the agent's programs), or in a process group
        /// of its own inside this process's session (`jumpgate forward --exec`'s command, which `forward`
        /// stops as a whole, and to which it lends the terminal as a shell lends it to a job).
        public var grouping = Grouping.newSession

        public init(
            executable: String,
            arguments: [String],
            environment: [String: String],
            workingDirectory: String? = nil,
            size: TerminalSize? = nil
        ) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
            self.workingDirectory = workingDirectory
            self.size = size
        }
    }

    public enum Grouping: Sendable {
        case newSession
        case newProcessGroup
    }

    /// How the program ended.
    public enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exited \(code)"
            case .signalled(let signal): "was killed by signal \(signal)"
            }
        }

        /// The status as a shell reports it: the exit code, or 128 plus the signal.
        public var shellCode: Int32 {
            switch self {
            case .exited(let code): code
            case .signalled(let signal): 128 + signal
            }
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ step: String, _ code: Int32, what: String = "a terminal") {
            self.description = "cannot start \(what): \(step) failed: \(String(cString: strerror(code)))"
        }
    }

    /// Starts `launch.executable` in a new session or process group. `fileActions` gives the program its descriptors 0, 1
    /// and 2; everything from 3 up is closed after them (NIO opens descriptors without close-on-exec).
    public static func spawn(
        _ launch: Launch,
        what: String,
        fileActions: (inout posix_spawn_file_actions_t) -> Void
    ) throws(Failure) -> SpawnedProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        fileActions(&actions)
        // Nothing else of the agent's reaches the program: not its sockets (the gateway's channels, other
        // sessions' targets), not other sessions' terminals or pipes.
        let closing = cjumpgate_spawn_file_actions_addclosefrom(&actions, 3)
        guard closing == 0 else { throw Failure("closing the agent's descriptors", closing, what: what) }
        if let directory = launch.workingDirectory {
            cjumpgate_spawn_file_actions_addchdir(&actions, directory)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        let grouping: Int16
        switch launch.grouping {
        case .newSession:
            grouping = cjumpgate_posix_spawn_setsid()
        case .newProcessGroup:
            posix_spawnattr_setpgroup(&attributes, 0)
            grouping = Int16(POSIX_SPAWN_SETPGROUP)
        }
        posix_spawnattr_setflags(&attributes, grouping | Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = launch.arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var environment: [UnsafeMutablePointer<CChar>?] =
            launch.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in environment { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, launch.executable, &actions, &attributes, &argv, &environment)
        guard result == 0 else { throw Failure("posix_spawn \(launch.executable)", result, what: what) }
        return SpawnedProcess(pid: pid)
    }

    /// Waits for the program to end and reaps it. Blocks: call it off the event loops.
    public func waitForExit() -> ExitStatus {
        var status: Int32 = 0
        while waitpid(self.pid, &status, 0) < 0, errno == EINTR {}
        return Self.decode(status)
    }

    /// Waits until the program has ended, without reaping it (waitid with WNOWAIT): its pid stays taken until
    /// ``exitStatusIfEnded()`` reaps it. Blocks: call it off the event loops.
    public func waitUntilEnded() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(self.pid), &info, WEXITED | WNOWAIT) < 0, errno == EINTR {}
    }

    /// How the program ended, or nil while it runs (does not block). Once it returned a status, the
    /// process is reaped: do not ask again.
    public func exitStatusIfEnded() -> ExitStatus? {
        var status: Int32 = 0
        guard waitpid(self.pid, &status, WNOHANG) == self.pid else { return nil }
        return Self.decode(status)
    }

    /// The wait(2) macros: the low 7 bits are the signal (0 when it exited), the exit code the byte above.
    static func decode(_ status: Int32) -> ExitStatus {
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signalled(signal)
    }
}
