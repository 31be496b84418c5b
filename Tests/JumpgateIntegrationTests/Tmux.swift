import Foundation
import JumpgateWire

/// A terminal a test can type into and read: a tmux server of its own (its own socket, so no other tmux is
/// touched), one window running `bash --norc` with `environment`. Waits poll the screen for the event, bounded.
final class Tmux {
    let socket: String
    let target = "jumpgate:0"

    init(columns: Int, rows: Int, environment: [String: String], directory: String) throws {
        self.socket = "jumpgate-test-" + MessageID.random().description.prefix(12)
        var variables = ["PS1=$ ", "HISTFILE=/dev/null", "TERM=xterm-256color"]
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) { variables.append("\(key)=\(value)") }
        try self.tmux(
            [
                "new-session", "-d", "-s", "jumpgate", "-x", "\(columns)", "-y", "\(rows)", "-c", directory,
                "env", "-i",
            ] + variables + ["bash", "--norc", "--noprofile"]
        )
        let pid = try self.tmux(["display-message", "-p", "#{pid}"])
        self.serverPID = pid_t(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// The tmux server's pid: it is stopped by pid (kill-server alone was seen to leave servers behind).
    var serverPID: pid_t = 0

    deinit {
        _ = try? self.tmux(["kill-server"])
        // Only while that pid is still a tmux server (it may have exited and the pid been reused).
        let name = (try? String(contentsOfFile: "/proc/\(self.serverPID)/comm", encoding: .utf8)) ?? ""
        if self.serverPID > 0, name.hasPrefix("tmux") {
            kill(self.serverPID, SIGTERM)
            kill(self.serverPID, SIGKILL)
        }
    }

    /// Runs tmux with this test's socket; fails with what it printed. Started with posix_spawn and waited
    /// for with waitpid, its output through a file: the tmux server that `new-session` starts keeps the
    /// descriptors it inherits, and Foundation's Process would wait for those to close.
    @discardableResult
    func tmux(_ arguments: [String]) throws -> String {
        let path = NSTemporaryDirectory() + "\(self.socket)-\(MessageID.random().description).out"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ["tmux", "-u", "-L", self.socket] + arguments
        var pointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, "tmux", &actions, nil, &pointers, environ)
        guard spawned == 0 else {
            throw HarnessError("tmux: posix_spawn failed: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw HarnessError("tmux \(arguments.joined(separator: " ")): \(text)")
        }
        return text
    }

    /// Types `text` literally, then Enter.
    func type(_ text: String) throws {
        try self.tmux(["send-keys", "-t", self.target, "-l", text])
        try self.tmux(["send-keys", "-t", self.target, "Enter"])
    }

    /// Presses keys by tmux name (`C-c`, `Enter`).
    func press(_ keys: String...) throws {
        try self.tmux(["send-keys", "-t", self.target] + keys)
    }

    func resize(columns: Int, rows: Int) throws {
        try self.tmux(["resize-window", "-t", self.target, "-x", "\(columns)", "-y", "\(rows)"])
    }

    /// The screen and its scrollback, one string per line, trailing spaces trimmed.
    func lines() throws -> [String] {
        try self.tmux(["capture-pane", "-p", "-J", "-S", "-200", "-t", self.target])
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in String(line.reversed().drop(while: { $0 == " " }).reversed()) }
    }

    /// The visible screen only (no scrollback), one string per row, trailing spaces trimmed.
    func screen() throws -> [String] {
        try self.tmux(["capture-pane", "-p", "-t", self.target])
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in String(line.reversed().drop(while: { $0 == " " }).reversed()) }
    }

    /// The visible screen once it stopped changing (the same for 300 ms; at most `timeout` seconds).
    func stableScreen(timeout: Double = 10) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var last = try self.screen()
        while true {
            usleep(300_000)
            let now = try self.screen()
            if now == last { return now }
            last = now
            guard Date() < deadline else { throw HarnessError("the screen kept changing for \(timeout) s") }
        }
    }

    /// Waits until a line satisfies `predicate` (polling the screen every 50 ms, at most `timeout` seconds)
    /// and returns it; fails with the screen.
    @discardableResult
    func waitForLine(timeout: Double = 20, _ predicate: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let screen = try self.lines()
            if let line = screen.first(where: predicate) { return line }
            guard Date() < deadline else {
                throw HarnessError(
                    "no such line on the screen after \(timeout) s:\n" + screen.joined(separator: "\n")
                )
            }
            usleep(50_000)
        }
    }

    /// How many lines satisfy `predicate` now.
    func count(_ predicate: (String) -> Bool) throws -> Int {
        try self.lines().count(where: predicate)
    }
}
