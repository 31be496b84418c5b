import CJumpgatePTY
import Glibc
import JumpgateNIO

/// The terminal `jumpgate forward` runs in the foreground of, lent to its `--exec` command as an
/// interactive shell lends it to a job: the command's process group becomes the terminal's foreground group,
/// so it can read the terminal (an interactive `psql` or `mysql`) and Ctrl+C, Ctrl+\ and Ctrl+Z reach it as
/// if it ran alone. `forward` takes the terminal back, with the modes it had, when the command stops or ends.
///
/// Only when standard input is a terminal whose foreground group is `forward`'s own (an interactive shell's
/// job, alone or in a script or pipeline the shell runs); under a pipe on standard input or in the
/// background the command runs as before, in a background process group of its own.
///
/// One thread uses it after the command started: the one that waits for the command.
struct ForegroundTerminal: Sendable {
    let descriptor: CInt
    /// `forward`'s own process group.
    let group: pid_t
    /// The terminal's modes when `forward` started, put back when the command leaves it (a command killed
    /// in raw mode would leave the terminal unusable).
    let modes: termios
    /// Whether the command's side holds the terminal because `forward` lent it: not before the lending, nor
    /// after a stop until `forward` is continued in the foreground (after `bg` the user's shell holds it).
    private(set) var lent = false

    /// The terminal on standard input, if `forward` is in its foreground.
    static func current() -> ForegroundTerminal? {
        let descriptor = STDIN_FILENO
        guard isatty(descriptor) == 1, tcgetpgrp(descriptor) == getpgrp() else { return nil }
        var modes = termios()
        guard tcgetattr(descriptor, &modes) == 0 else { return nil }
        // While the command has the terminal, `forward` is a background group: taking the terminal back,
        // setting its modes, and any line it writes (a failed connection) must not stop it with SIGTTOU.
        // Its children start with every signal at its default (SpawnedProcess).
        signal(SIGTTOU, SIG_IGN)
        return ForegroundTerminal(descriptor: descriptor, group: getpgrp(), modes: modes)
    }

    /// Whether `forward`'s group is the terminal's foreground group (it is not after the user's `bg`).
    var isForeground: Bool { tcgetpgrp(self.descriptor) == self.group }

    /// Makes the command's group the terminal's foreground group, if `forward`'s group has the terminal.
    mutating func lend(to command: pid_t) {
        guard self.isForeground, tcsetpgrp(self.descriptor, command) == 0 else { return }
        self.lent = true
    }

    /// Takes the terminal back from the command's side (whichever of its groups holds it), with `forward`'s
    /// modes, if it was lent.
    mutating func takeBack() {
        guard self.lent else { return }
        self.lent = false
        tcsetpgrp(self.descriptor, self.group)
        var modes = self.modes
        tcsetattr(self.descriptor, TCSADRAIN, &modes)
    }

    /// The command's group leader stopped with `signal`.
    ///
    /// SIGTTIN or SIGTTOU while the terminal is (or can be) the command's: it read or set the terminal just
    /// before it was lent, or after `bg` and then `fg`; it gets the terminal and goes on. Anything else (Ctrl+Z,
    /// or reading the terminal while the user's shell holds it after `bg`) stops `forward`'s job too:
    /// ``suspend(command:)``.
    mutating func commandStopped(_ command: pid_t, by signal: CInt) {
        if signal == SIGTTIN || signal == SIGTTOU {
            self.lend(to: command)
            if self.lent {
                kill(-command, SIGCONT)
                return
            }
        }
        self.suspend(command: command)
    }

    /// `forward` takes the terminal back and stops its own process group, so the user's shell sees its job
    /// stopped and gets the terminal. Returns once `forward` is continued (`fg` or `bg`), after lending the
    /// terminal again if `forward` is in the foreground, and continuing the command. A `forward` whose
    /// process group is orphaned (no shell could continue it) is not stopped: the kernel drops SIGTSTP, and
    /// the command goes on at once.
    ///
    /// The other processes of the group (the script or pipeline `forward` runs in) get SIGTSTP first, as the
    /// terminal would have sent it; `forward` itself stops through `raise`, so that it is stopped before the
    /// call returns (a signal sent to the process may be taken by another thread a moment later, after the
    /// command was already continued) and stops once (SIGCONT discards a stop signal still pending). The
    /// calling thread may have SIGTSTP blocked (threads started from Swift's concurrency pool inherit
    /// Dispatch's mask), so it is unblocked here first.
    mutating func suspend(command: pid_t) {
        self.takeBack()
        for member in Self.processes(inGroup: self.group) where member != getpid() {
            kill(member, SIGTSTP)
        }
        var stop = sigset_t()
        sigemptyset(&stop)
        sigaddset(&stop, SIGTSTP)
        pthread_sigmask(SIG_UNBLOCK, &stop, nil)
        raise(SIGTSTP)
        self.lend(to: command)
        kill(-command, SIGCONT)
    }

    /// The processes whose process group is `group` (from /proc; field 5 of each `stat`).
    static func processes(inGroup group: pid_t) -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var members: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = pid_t(name) else { continue }
            let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            let stat = FileDescriptorIO.readToEnd(descriptor)
            close(descriptor)
            // After the command name in parentheses (which may hold spaces): state, ppid, pgrp.
            guard let end = stat.lastIndex(of: UInt8(ascii: ")")) else { continue }
            let fields = stat[(end + 1)...].split(separator: UInt8(ascii: " "))
            if fields.count > 2, pid_t(String(decoding: fields[2], as: UTF8.self)) == group {
                members.append(pid)
            }
        }
        return members
    }
}
