import Foundation
import JumpgateWire
import Testing

@testable import JumpgateAgent

/// A program on a pseudo-terminal of its own, started as shell sessions will start theirs: a real `sh`.
@Suite("Pseudo-terminal processes", .serialized)
struct PseudoTerminalTests {
    /// What the program wrote to its terminal, read until `until` appears in it (or, if nil, until the
    /// terminal closes), bounded by 10 s.
    static func read(_ master: CInt, until: String? = nil) -> String {
        var output: [UInt8] = []
        let deadline = Date().addingTimeInterval(10)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while deadline.timeIntervalSinceNow > 0 {
            if let until, String(decoding: output, as: UTF8.self).contains(until) { break }
            var descriptor = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { break }
            let count = Glibc.read(master, &buffer, buffer.count)
            if count < 0, errno == EINTR { continue }
            // EIO: every copy of the terminal is closed (the program ended).
            guard count > 0 else { break }
            output += buffer[0..<count]
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// How the program ended; one still running after 10 s is killed first (SIGKILL), so a test that
    /// fails never leaves a process behind or waits for ever.
    static func exitStatus(_ process: PseudoTerminalProcess) -> PseudoTerminalProcess.ExitStatus {
        for _ in 0..<1000 {
            if let status = process.process.exitStatusIfEnded() { return status }
            usleep(10_000)
        }
        kill(process.pid, SIGKILL)
        return process.process.waitForExit()
    }

    static func write(_ master: CInt, _ text: String) {
        let bytes = Array(text.utf8)
        #expect(Glibc.write(master, bytes, bytes.count) == bytes.count)
    }

    static func shell(_ script: String, size: TerminalSize? = nil) throws -> PseudoTerminalProcess {
        try PseudoTerminalProcess.spawn(
            .init(
                executable: "/bin/sh",
                arguments: ["sh", "-c", script],
                environment: ["PATH": "/usr/bin:/bin", "TERM": "xterm-256color"],
                workingDirectory: "/",
                size: size
            )
        )
    }

    @Test("the program has a terminal of the given size, the environment and directory it was given, and its exit code")
    func terminalAndExitCode() throws {
        let process = try Self.shell(
            #"stty size; tty; echo "term=$TERM dir=$(pwd)"; echo $((6*7)); exit 3"#,
            size: TerminalSize(columns: 120, rows: 40)
        )
        defer { close(process.master) }
        let output = Self.read(process.master)
        #expect(output.contains("40 120"), "\(output)")
        #expect(output.contains("/dev/pts/"), "\(output)")
        #expect(output.contains("term=xterm-256color dir=/"), "\(output)")
        #expect(output.contains("42"), "\(output)")
        #expect(Self.exitStatus(process) == .exited(3))
    }

    @Test("Ctrl+C typed into the terminal interrupts the foreground job: the terminal is the program's own")
    func controlC() throws {
        // Without a controlling terminal, the 0x03 byte would be plain input and the loop would run on.
        let process = try Self.shell(#"trap 'echo interrupted; exit 5' INT; echo ready; while :; do sleep 0.1; done"#)
        defer { close(process.master) }
        #expect(Self.read(process.master, until: "ready").contains("ready"))
        Self.write(process.master, "\u{03}")
        #expect(Self.read(process.master).contains("interrupted"))
        #expect(Self.exitStatus(process) == .exited(5))
    }

    @Test("a resize reaches the program, and input typed into the terminal reaches it")
    func resizeAndInput() throws {
        let process = try Self.shell(#"echo ready; read line; stty size; echo "got $line""#)
        defer { close(process.master) }
        #expect(Self.read(process.master, until: "ready").contains("ready"))
        try PseudoTerminalProcess.resize(master: process.master, to: TerminalSize(columns: 100, rows: 30))
        // Enter arrives as CR (the terminal turns it into a newline, ICRNL), as the official plugin sends it.
        Self.write(process.master, "hello\r")
        let output = Self.read(process.master)
        #expect(output.contains("30 100"), "\(output)")
        #expect(output.contains("got hello"), "\(output)")
        #expect(Self.exitStatus(process) == .exited(0))
    }

    @Test("signals the agent ignores start at their defaults: SIGPIPE ends a writer to a closed pipe")
    func signalDefaults() throws {
        // The agent's process ignores SIGPIPE (as NIO sets it up); the program must not inherit that.
        signal(SIGPIPE, SIG_IGN)
        let process = try Self.shell(
            #"kill -PIPE $$; echo survived"#
        )
        defer { close(process.master) }
        let output = Self.read(process.master)
        #expect(!output.contains("survived"), "\(output)")
        #expect(Self.exitStatus(process) == .signalled(SIGPIPE))
    }

    @Test("a program that cannot be started is a clear error, and leaves no descriptor behind")
    func missingProgram() throws {
        let before = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        #expect(throws: PseudoTerminalProcess.Failure.self) {
            try PseudoTerminalProcess.spawn(.init(executable: "/nonexistent/sh", arguments: ["sh"], environment: [:]))
        }
        let after = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        #expect(after == before)
    }
}
