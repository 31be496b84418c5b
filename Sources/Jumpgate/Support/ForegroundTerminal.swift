import CJumpgatePTY
import Glibc
import JumpgateNIO

/// The terminal `jumpgate forward` was started from, lent to its `--exec` command as an interactive shell
/// lends it to a job: while `forward`'s job is in the foreground, the command's process group is the
/// terminal's foreground group, so it can read the terminal (an interactive `psql` or `mysql`) and Ctrl+C,
/// Ctrl+\ and Ctrl+Z reach it as if it ran alone. When the command stops (Ctrl+Z, or it needs the terminal
/// while the job is in the background), `forward` takes the terminal back, with the modes it had, and stops
/// its whole job, so the user's shell reports it stopped; `fg` lends the terminal again. When the command
/// ends, `forward` takes the terminal back.
///
/// Only when `forward` starts in the terminal's foreground, typed at a shell's prompt or from a script typed
/// there, and not in a pipeline (``current()``); otherwise the command runs as before, in a background
/// process group of its own.
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
    /// after a stop until `forward` is in the foreground again.
    private(set) var lent = false

    /// The terminal on standard input, if `forward`'s group is its foreground group (a shell watches the
    /// job, so a stopped `forward` can be continued) and holds nothing but `forward` and its ancestors (a
    /// wrapper script): a pipeline's other programs (`| less`) read the terminal too, and must keep it.
    static func current() -> ForegroundTerminal? {
        let descriptor = STDIN_FILENO
        guard isatty(descriptor) == 1, tcgetpgrp(descriptor) == getpgrp() else { return nil }
        let ancestors = ProcessTable.ancestors()
        let others = ProcessTable.processes(inGroup: getpgrp()).filter { member in
            member != getpid() && !ancestors.contains { $0.pid == member }
        }
        guard others.isEmpty else { return nil }
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

    /// Makes the command's group the terminal's foreground group if `forward`'s group has the terminal, and
    /// then continues the command's group: whatever in it read or set the terminal before was stopped by
    /// SIGTTIN or SIGTTOU (or is about to be: SIGCONT also discards a pending stop signal).
    mutating func lendIfForeground(to command: pid_t) {
        guard self.isForeground, tcsetpgrp(self.descriptor, command) == 0 else { return }
        self.lent = true
        kill(-command, SIGCONT)
    }

    /// Takes the terminal back from the command's side (whichever of its groups holds it), with `forward`'s
    /// modes, if it was lent; never from the user's shell (the group of one of `forward`'s ancestors), which
    /// holds it if `forward` was stopped and continued in the background by someone else meanwhile.
    mutating func takeBack() {
        guard self.lent else { return }
        self.lent = false
        let holder = tcgetpgrp(self.descriptor)
        if holder != self.group {
            guard !ProcessTable.ancestorGroups().contains(holder) else { return }
            tcsetpgrp(self.descriptor, self.group)
        }
        var modes = self.modes
        tcsetattr(self.descriptor, TCSADRAIN, &modes)
    }

    /// The command's group leader stopped with `signal`.
    ///
    /// SIGTTIN or SIGTTOU while `forward` is in the foreground (the command read the terminal before `fg`
    /// lent it back): it gets the terminal and goes on. Anything else (Ctrl+Z, or reading the terminal while
    /// the user's shell holds it) stops `forward`'s job too: ``suspend(command:with:ending:)``.
    mutating func commandStopped(_ command: pid_t, by signal: CInt, ending: () -> Bool) {
        let needsTerminal = signal == SIGTTIN || signal == SIGTTOU
        if needsTerminal {
            self.lendIfForeground(to: command)
            // Holding the terminal (lent just now, or a stop decided before it was lent): go on.
            if tcgetpgrp(self.descriptor) == command {
                kill(-command, SIGCONT)
                return
            }
        }
        self.suspend(command: command, with: needsTerminal ? signal : SIGTSTP, ending: ending)
    }

    /// `forward` takes the terminal back and stops its own process group with `signal` (SIGTSTP, or the
    /// SIGTTIN or SIGTTOU the command got, so the shell says why), as the terminal would have: the user's
    /// shell sees the job stopped and gets the terminal. Returns once `forward` is continued: in the
    /// foreground (`fg`) it lends the terminal again and continues the command; in the background (`bg`) it
    /// continues a command stopped by Ctrl+Z, and leaves one that needs the terminal stopped until `forward`
    /// is in the foreground again (``lendIfForeground(to:)``, from the wait loop). A `forward` whose process
    /// group is orphaned (no shell could continue it) is not stopped: the kernel drops the signal.
    ///
    /// `forward` sends the signal to its own thread while the thread blocks it, then to the group's other
    /// processes (the script or pipeline it runs in), then unblocks it: the thread stops right there, before
    /// anything after it runs, and a SIGCONT that comes first (the user's `fg` after seeing the script stop)
    /// discards it instead of leaving `forward` stopped behind a running job. (The calling thread may have
    /// had the signal blocked anyway: threads started from Swift's concurrency pool inherit Dispatch's mask.)
    ///
    /// `kill %1` also continues a stopped job, right after its SIGTERM: `ending` (true once that signal
    /// arrived, ``ForwardExec/isEndingOnceContinued()``) keeps the command stopped then, until `forward`
    /// ends it, rather than continuing it in the background, where a program that resets the terminal
    /// (psql) is stopped by SIGTTOU at once.
    mutating func suspend(command: pid_t, with signal: CInt, ending: () -> Bool) {
        self.takeBack()
        // SIGTTOU is ignored in `forward` (current()), so it stops itself with SIGTTIN for both.
        let own = signal == SIGTTOU ? SIGTTIN : signal
        var stop = sigset_t()
        sigemptyset(&stop)
        sigaddset(&stop, own)
        pthread_sigmask(SIG_BLOCK, &stop, nil)
        pthread_kill(pthread_self(), own)
        for member in ProcessTable.processes(inGroup: self.group) where member != getpid() {
            kill(member, signal)
        }
        pthread_sigmask(SIG_UNBLOCK, &stop, nil)
        self.lendIfForeground(to: command)
        guard !self.lent, signal == SIGTSTP else { return }
        if !ending() { kill(-command, SIGCONT) }
    }
}

/// What `/proc` says about processes: their process groups and parents.
enum ProcessTable {
    /// The processes whose process group is `group`.
    static func processes(inGroup group: pid_t) -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var members: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = pid_t(name), Self.parentAndGroup(of: pid)?.group == group { members.append(pid) }
        }
        return members
    }

    /// This process's ancestors (its parent, the parent's parent, ... up to init) and their process groups.
    static func ancestors() -> [(pid: pid_t, group: pid_t)] {
        var found: [(pid: pid_t, group: pid_t)] = []
        var pid = getppid()
        for _ in 0..<64 where pid > 1 {
            guard let (parent, group) = Self.parentAndGroup(of: pid) else { break }
            found.append((pid, group))
            pid = parent
        }
        return found
    }

    /// The process groups of this process's ancestors.
    static func ancestorGroups() -> Set<pid_t> {
        Set(Self.ancestors().map(\.group))
    }

    /// Fields 4 and 5 of `/proc/PID/stat`: after the command name in parentheses (which may hold spaces and
    /// parentheses), the state, the parent and the process group.
    static func parentAndGroup(of pid: pid_t) -> (parent: pid_t, group: pid_t)? {
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        let stat = FileDescriptorIO.readToEnd(descriptor)
        close(descriptor)
        guard let end = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(end + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 2, let parent = pid_t(String(decoding: fields[1], as: UTF8.self)),
            let group = pid_t(String(decoding: fields[2], as: UTF8.self))
        else { return nil }
        return (parent, group)
    }
}
