import CJumpgatePTY
import FoundationEssentials
import Glibc

#if canImport(Glibc)
import Glibc
#endif

/// `--detach` (`jumpgate server`, `jumpgate agent run`): starts this same command without `--detach` in
/// a session of its own (no terminal signals reach it), its standard output and log in `logPath`, waits
/// for the ready line it writes to file descriptor 3 (JUMPGATE_READY_FD) and prints it. Returns when the
/// process is ready; fails, with the log's last lines, when it exits first or is not ready in time.
/// It blocks its thread while it waits (poll), which is fine: it is all this process does.
enum Detach {
    /// The variable naming the descriptor a detached gateway writes its ready line to, then closes.
    static let readyVariable = "JUMPGATE_READY_FD"

    /// In the detached process, first thing (before other threads read the environment): the descriptor
    /// to write the ready line to, if a `--detach` command waits for it.
    static func takeReadyDescriptor() -> Int32? {
        guard let text = ProcessInfo.processInfo.environment[Self.readyVariable], let fd = Int32(text) else {
            return nil
        }
        unsetenv(Self.readyVariable)
        return fd
    }

    /// Hands the ready line to the waiting `--detach` command, once.
    static func announceReady(_ line: String, to descriptor: Int32?) {
        guard let descriptor else { return }
        _ = line.withCString { write(descriptor, $0, strlen($0)) }
        close(descriptor)
    }

    static func start(directory: String, flag: String, logPath: String, timeoutSeconds: Int32 = 60) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw CommandFailure(
                "The directory \(directory) cannot be created: a parent is a file, or the disk is read-only. Give another \(flag)."
            )
        }
        // Above 3 (as the pipe's ends): a parent started with 0, 1 or 2 closed must not get one of them.
        let opened = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        let log = opened >= 0 ? fcntl(opened, F_DUPFD_CLOEXEC, 10) : -1
        if opened >= 0 { close(opened) }
        guard log >= 0 else {
            throw CommandFailure("Cannot write \(logPath): \(String(cString: strerror(errno))). Give another \(flag).")
        }
        defer { close(log) }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw CommandFailure("Cannot start in the background: no pipe could be created.")
        }
        // Above 3, so that moving the write end to 3 never lands on itself (which would keep O_CLOEXEC).
        let readEnd = fcntl(fds[0], F_DUPFD_CLOEXEC, 10)
        let writeEnd = fcntl(fds[1], F_DUPFD_CLOEXEC, 10)
        close(fds[0])
        close(fds[1])
        guard readEnd >= 0, writeEnd >= 0 else {
            throw CommandFailure("Cannot start in the background: no descriptor could be set up.")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, log, 1)
        posix_spawn_file_actions_adddup2(&actions, log, 2)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A session of its own: Ctrl+C in this terminal, or the terminal closing, does not stop it.
        posix_spawnattr_setflags(&attributes, cjumpgate_posix_spawn_setsid())

        let executable = "/proc/self/exe"
        let arguments = [CommandLine.arguments[0]] + CommandLine.arguments.dropFirst().filter { $0 != "--detach" }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let variables =
            ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
            + ["\(Self.readyVariable)=3"]
        var environment: [UnsafeMutablePointer<CChar>?] = variables.map { strdup($0) } + [nil]
        defer { for pointer in environment { free(pointer) } }
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, &argv, &environment)
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            throw CommandFailure("Cannot start in the background: \(String(cString: strerror(spawned))).")
        }
        // The ready line, or end of file when the process exited before it was ready.
        var line: [UInt8] = []
        var byte: UInt8 = 0
        let deadline = Date().addingTimeInterval(TimeInterval(timeoutSeconds))
        var timedOut = false
        reading: while true {
            var descriptor = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            switch poll(&descriptor, 1, wait) {
            case 0:
                timedOut = true
                break reading
            case -1 where errno == EINTR:
                continue
            default:
                guard read(readEnd, &byte, 1) == 1, byte != UInt8(ascii: "\n") else { break reading }
                line.append(byte)
            }
        }
        close(readEnd)
        let tail = {
            (try? String(contentsOfFile: logPath, encoding: .utf8))?
                .split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
        }
        if timedOut {
            throw CommandFailure(
                "Started (pid \(pid)) but not ready after \(timeoutSeconds) s; it keeps trying. The end of \(logPath):\n\(tail())"
            )
        }
        guard !line.isEmpty else {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw CommandFailure("It exited before it was ready. The end of \(logPath):\n\(tail())")
        }
        emit(String(decoding: line, as: UTF8.self) + "\n")
    }
}
