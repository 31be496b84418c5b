import CJumpgatePTY
import Glibc

/// The terminal `jumpgate forward` runs in the foreground of, lent to its `--exec` command as an
/// interactive shell lends it to a job: the command's process group becomes the terminal's foreground group,
/// so it can read the terminal (an interactive `psql` or `mysql`) and Ctrl+C, Ctrl+\ and Ctrl+Z reach it as
/// if it ran alone. `forward` takes the terminal back, with the modes it had, when the command stops or ends.
///
/// Only when standard input is a terminal whose foreground group is `forward`'s own: in a script, under a
/// pipe or in the background the command runs as before, in a background process group of its own.
struct ForegroundTerminal: Sendable {
    let descriptor: CInt
    /// `forward`'s own process group.
    let group: pid_t
    /// The terminal's modes when `forward` started, put back when the command leaves it (a command killed
    /// in raw mode would leave the terminal unusable).
    let modes: termios

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

    /// Takes the terminal back from the command's group, with `forward`'s modes, if the command has it.
    func takeBack(from command: pid_t) {
        guard tcgetpgrp(self.descriptor) == command else { return }
        tcsetpgrp(self.descriptor, self.group)
        var modes = self.modes
        tcsetattr(self.descriptor, TCSADRAIN, &modes)
    }

    /// The command's group stopped (Ctrl+Z, or it read the terminal while `forward` was in the background):
    /// `forward` takes the terminal back and stops itself, so the user's shell sees its job stopped and gets
    /// the terminal. Returns once `forward` is continued (`fg` or `bg`), after giving the terminal back to the
    /// command if `forward` is in the foreground again, and continuing the command. A `forward` whose
    /// process group is orphaned (no shell could continue it) is not stopped: the kernel drops SIGTSTP, and
    /// the command goes on at once.
    ///
    /// `raise`, not `kill`: a signal sent to the thread itself stops the process before this call returns,
    /// where one sent to the process may be taken by another thread a moment later, after the command was
    /// already continued. The calling thread may have SIGTSTP blocked (threads started from Swift's
    /// concurrency pool inherit Dispatch's mask), so it is unblocked here first.
    func suspend(command: pid_t) {
        self.takeBack(from: command)
        var stop = sigset_t()
        sigemptyset(&stop)
        sigaddset(&stop, SIGTSTP)
        pthread_sigmask(SIG_UNBLOCK, &stop, nil)
        raise(SIGTSTP)
        if self.isForeground {
            tcsetpgrp(self.descriptor, command)
        }
        kill(-command, SIGCONT)
    }
}
