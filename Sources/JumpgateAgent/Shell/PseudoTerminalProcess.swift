import CJumpgatePTY
import FoundationEssentials
import Glibc
import JumpgateWire

/// A program on a pseudo-terminal of its own, as a shell session runs one (docs/PROTOCOL.md §8): a new
/// session whose controlling terminal is the PTY, so Ctrl+C typed into it interrupts the foreground job and
/// the program sees a terminal and its size. Started as ``SpawnedProcess`` describes.
public struct PseudoTerminalProcess: Sendable {
    /// The program: waited for and reaped by its owner.
    public let process: SpawnedProcess
    public var pid: pid_t { self.process.pid }
    /// The PTY's master side, owned by the caller: what the program writes to its terminal is read here, and
    /// what is written here is typed into it. Reads fail with EIO once every copy of the terminal is closed.
    public let master: CInt

    public typealias Launch = SpawnedProcess.Launch
    public typealias ExitStatus = SpawnedProcess.ExitStatus
    public typealias Failure = SpawnedProcess.Failure

    /// Opens a PTY, sets its size and starts `launch.executable` on it.
    public static func spawn(_ launch: Launch) throws(Failure) -> PseudoTerminalProcess {
        var name = [CChar](repeating: 0, count: 128)
        let master = cjumpgate_open_pty(&name, name.count)
        guard master >= 0 else { throw Failure("opening a pseudo-terminal", -master) }
        var spawned = false
        defer { if !spawned { close(master) } }
        if let size = launch.size { try Self.resize(master: master, to: size) }
        let process = try SpawnedProcess.spawn(launch, what: "a terminal") { actions in
            // Opened after setsid, without O_NOCTTY: the terminal becomes the new session's controlling
            // terminal. The master is close-on-exec, so the program never holds it.
            posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0)
            posix_spawn_file_actions_adddup2(&actions, 0, 1)
            posix_spawn_file_actions_adddup2(&actions, 0, 2)
        }
        spawned = true
        return PseudoTerminalProcess(process: process, master: master)
    }

    /// Sets the terminal's size (TIOCSWINSZ); the program gets SIGWINCH.
    public static func resize(master: CInt, to size: TerminalSize) throws(Failure) {
        var window = winsize(ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0)
        guard ioctl(master, UInt(TIOCSWINSZ), &window) == 0 else { throw Failure("TIOCSWINSZ", errno) }
    }
}
