import CJumpgatePTY
import Foundation
import JumpgateWire

/// A program on a pseudo-terminal of its own, as a shell session runs one (docs/PROTOCOL.md §8): a new
/// session whose controlling terminal is the PTY, so Ctrl+C typed into it interrupts the foreground job and
/// the program sees a terminal and its size. Started with `posix_spawn` (never `fork` in the agent's
/// multithreaded process); every signal starts at its default and unblocked, whatever the agent ignores.
public struct PseudoTerminalProcess: Sendable {
    public let pid: pid_t
    /// The PTY's master side, owned by the caller: what the program writes to its terminal is read here, and
    /// what is written here is typed into it. Reads fail with EIO once every copy of the terminal is closed.
    public let master: CInt

    public struct Launch: Sendable {
        public var executable: String
        /// The program's argv, its name first.
        public var arguments: [String]
        public var environment: [String: String]
        public var workingDirectory: String?
        public var size: TerminalSize?

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

    /// How the program ended.
    public enum ExitStatus: Hashable, Sendable {
        case exited(Int32)
        case signalled(Int32)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ step: String, _ code: Int32) {
            self.description = "cannot start a terminal: \(step) failed: \(String(cString: strerror(code)))"
        }
    }

    /// Opens a PTY, sets its size and starts `launch.executable` on it.
    public static func spawn(_ launch: Launch) throws(Failure) -> PseudoTerminalProcess {
        var name = [CChar](repeating: 0, count: 128)
        let master = cjumpgate_open_pty(&name, name.count)
        guard master >= 0 else { throw Failure("opening a pseudo-terminal", -master) }
        var spawned = false
        defer { if !spawned { close(master) } }
        if let size = launch.size { try Self.resize(master: master, to: size) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Opened after setsid, without O_NOCTTY: the terminal becomes the new session's controlling
        // terminal. The master is close-on-exec, so the program never holds it.
        posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        // Nothing else of the agent's reaches the program: not its sockets (the gateway's channels, other
        // sessions' targets), not other shells' terminals. NIO opens descriptors without close-on-exec.
        cjumpgate_spawn_file_actions_addclosefrom(&actions, 3)
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
        posix_spawnattr_setflags(
            &attributes,
            cjumpgate_posix_spawn_setsid() | Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        )

        var argv: [UnsafeMutablePointer<CChar>?] = launch.arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var environment: [UnsafeMutablePointer<CChar>?] =
            launch.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in environment { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, launch.executable, &actions, &attributes, &argv, &environment)
        guard result == 0 else { throw Failure("posix_spawn \(launch.executable)", result) }
        spawned = true
        return PseudoTerminalProcess(pid: pid, master: master)
    }

    /// Sets the terminal's size (TIOCSWINSZ); the program gets SIGWINCH.
    public static func resize(master: CInt, to size: TerminalSize) throws(Failure) {
        var window = winsize(ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0)
        guard ioctl(master, UInt(TIOCSWINSZ), &window) == 0 else { throw Failure("TIOCSWINSZ", errno) }
    }

    /// Waits for the program to end. Blocks: call it off the event loops.
    public func waitForExit() -> ExitStatus {
        var status: Int32 = 0
        while waitpid(self.pid, &status, 0) < 0, errno == EINTR {}
        return Self.decode(status)
    }

    /// Waits until the program has ended, without reaping it (waitid with WNOWAIT): its pid stays taken until
    /// ``exitStatusIfEnded()`` reaps it, so whoever reaps decides when it may no longer be signalled. Blocks:
    /// call it off the event loops.
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
