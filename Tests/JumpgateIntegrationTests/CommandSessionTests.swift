import Foundation
import JumpgateAgent
import JumpgateClient
import JumpgateWire
import Testing

/// Command sessions through real processes: a gateway, an agent run with `--allow-shell`, and clients run
/// from a shell that keeps their standard output and error apart (non-interactive commands) or typed into
/// a real terminal (interactive ones).
@Suite("Command sessions: AWS-StartNonInteractiveCommand and AWS-StartInteractiveCommand", .serialized)
struct CommandSessionTests {
    /// Runs `script` with /bin/sh in the lab's directory (the lab's credentials, Jumpgate's binaries first on
    /// PATH for the AWS CLI) and waits for it to end.
    static func shell(_ lab: EndToEndTests.Lab, _ script: String, timeout: Double = 60) throws -> Int32 {
        let child = try ChildProcess(
            "sh",
            ["-c", "cd '\(lab.directory)' && " + script],
            executable: "/bin/sh",
            environment: EndToEndTests.awsEnvironment(lab)
        )
        defer { child.stop() }
        return try child.waitForExit(timeout: timeout)
    }

    static func read(_ lab: EndToEndTests.Lab, _ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: lab.directory).appendingPathComponent(name))
    }

    /// `jumpgate start-session` with a non-interactive command, its output in OUT, its errors in ERR and its
    /// status in STATUS (files in the lab's directory, suffixed with `name`).
    static func runCommand(_ lab: EndToEndTests.Lab, _ command: String, name: String) throws -> String {
        let parameters = JSONValue.object([("command", .array([.string(command)]))]).serialized()
        return "jumpgate start-session --target \(lab.instanceID) --endpoint-url \(lab.url) --ca-file \(lab.caFile) "
            + "--document-name AWS-StartNonInteractiveCommand --parameters \(Self.quoted(parameters)) "
            + "> out\(name) 2> err\(name); echo $? > status\(name)"
    }

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    static func status(_ lab: EndToEndTests.Lab, _ name: String) throws -> String {
        String(decoding: try Self.read(lab, "status\(name)"), as: UTF8.self).trimmingCharacters(
            in: .whitespacesAndNewlines
        )
    }

    @Test(
        "a non-interactive command: its standard output byte for byte (and nothing else), its standard error apart, its exit code as the client's; then through the AWS CLI"
    )
    func nonInteractive() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            // 1.2 MB of output in many reads, standard error between, UTF-8, no newline at the end, status 7;
            // pipes and $(( )) show the account's shell runs it.
            let command =
                "echo start; seq 1 200000; echo café-$((6*7)) >&2; echo two | tr a-z A-Z; printf 'tail-€'; exit 7"
            #expect(try Self.shell(lab, Self.runCommand(lab, command, name: "1")) == 0)
            let expected = "start\n" + (1...200_000).map { "\($0)\n" }.joined() + "TWO\ntail-€"
            let output = String(decoding: try Self.read(lab, "out1"), as: UTF8.self)
            #expect(output.utf8.count == expected.utf8.count)
            #expect(output == expected)
            let errors = String(decoding: try Self.read(lab, "err1"), as: UTF8.self)
            #expect(errors.contains("café-42\n"), "\(errors)")
            #expect(errors.contains("Starting session with SessionId: "), "\(errors)")
            #expect(try Self.status(lab, "1") == "7")

            // Into a pipe rather than a file (NIO writes it itself), with a reader slower than the session.
            let piped = try Self.runCommand(lab, "seq 1 100000; exit 3", name: "5")
                .replacingOccurrences(of: "> out5 2> err5; echo $? > status5", with: "2> err5; echo $? > status5")
            #expect(try Self.shell(lab, "{ \(piped); } | { sleep 1; cat > out5; }") == 0)
            let pipedOutput = String(decoding: try Self.read(lab, "out5"), as: UTF8.self)
            let err5 = String(decoding: try Self.read(lab, "err5"), as: UTF8.self)
            #expect(pipedOutput == (1...100_000).map { "\($0)\n" }.joined(), "\(pipedOutput.utf8.count) bytes; \(err5)")
            #expect(try Self.status(lab, "5") == "3")

            // Standard error into the same slow pipe as standard output (2>&1: one file description, which
            // NIO made non-blocking): every line arrives, none dropped when the pipe is full.
            let merged = try Self.runCommand(lab, "seq 1 100000 >&2; echo done", name: "7")
                .replacingOccurrences(of: "> out7 2> err7; echo $? > status7", with: "2>&1; echo $? > status7")
            #expect(try Self.shell(lab, "{ \(merged); } | { sleep 1; cat > out7; }") == 0)
            let mergedLines = String(decoding: try Self.read(lab, "out7"), as: UTF8.self).split(separator: "\n")
            #expect(mergedLines.compactMap { Int($0) } == Array(1...100_000))
            #expect(mergedLines.contains("done"))
            #expect(try Self.status(lab, "7") == "0")

            // Into /dev/null (a device NIO cannot watch): run for the status alone.
            let discarded = try Self.runCommand(lab, "seq 1 50000; exit 5", name: "6")
                .replacingOccurrences(of: "> out6", with: "> /dev/null")
            #expect(try Self.shell(lab, discarded) == 0)
            #expect(try Self.status(lab, "6") == "5")

            // Status 0, and a command that writes nothing.
            #expect(try Self.shell(lab, Self.runCommand(lab, "true", name: "2")) == 0)
            #expect(try Self.read(lab, "out2").isEmpty)
            #expect(try Self.status(lab, "2") == "0")

            // Standard input is the agent's /dev/null: a command that reads it ends at once.
            #expect(try Self.shell(lab, Self.runCommand(lab, "cat; echo read-$?", name: "3")) == 0)
            #expect(String(decoding: try Self.read(lab, "out3"), as: UTF8.self) == "read-0\n")

            // The AWS CLI with Jumpgate's plugin: the output on standard output, the plugin's lines on standard
            // error (the AWS CLI cannot carry a remote status: it exits 0).
            let parameters = #"{"command":["echo cli-$((6*7)); echo cli-err >&2; exit 5"]}"#
            let cli =
                "aws ssm start-session --target \(lab.instanceID) --endpoint-url \(lab.url) "
                + "--document-name AWS-StartNonInteractiveCommand --parameters \(Self.quoted(parameters)) "
                + "> out4 2> err4; echo $? > status4"
            #expect(try Self.shell(lab, cli) == 0)
            #expect(String(decoding: try Self.read(lab, "out4"), as: UTF8.self) == "cli-42\n")
            #expect(String(decoding: try Self.read(lab, "err4"), as: UTF8.self).contains("cli-err\n"))
            #expect(try Self.status(lab, "4") == "0")

            // Every session ended, and no command outlives its session on the agent's host.
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(sessions["Sessions"]?.arrayValue?.isEmpty ?? true)
            #expect(lab.agent.childPIDs().isEmpty)
        }
    }

    @Test(
        "an interactive command on a terminal: it reads what is typed, sees the terminal's size, and its exit status is the client's"
    )
    func interactive() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            let terminal = try ShellSessionTests.terminal(lab)
            let parameters = #"{"command":["echo name?; read n; echo hello-$n; stty size; exit 5"]}"#
            try terminal.type(
                ShellSessionTests.run(
                    ShellSessionTests.startSession(lab) + " --document-name AWS-StartInteractiveCommand --parameters "
                        + Self.quoted(parameters),
                    marker: "1"
                )
            )
            try terminal.waitForLine(timeout: 30) { $0 == "name?" }
            try terminal.type("world")
            try terminal.waitForLine { $0 == "hello-world" }
            try terminal.waitForLine { $0 == "30 100" }
            try terminal.waitForLine { $0 == "EXIT1=5" }
            try terminal.waitForLine { $0 == "RESTORED1" }
            #expect(lab.agent.childPIDs().isEmpty)
        }
    }

    @Test("an agent without --allow-shell refuses commands, and the client says why and what to do")
    func refusedWithoutAllowShell() async throws {
        try await EndToEndTests.withLab { lab, _ in
            #expect(try Self.shell(lab, Self.runCommand(lab, "echo never", name: "1")) == 0)
            #expect(try Self.status(lab, "1") == "1")
            #expect(try Self.read(lab, "out1").isEmpty)
            let said = String(decoding: try Self.read(lab, "err1"), as: UTF8.self)
            #expect(said.contains("Command sessions are off on this agent"), "\(said)")
            #expect(said.contains("jumpgate agent run --allow-shell"), "\(said)")
            #expect(lab.agent.childPIDs().isEmpty)
            let refusal = try await ConnectionRecordsTests.sessionRefusal(lab)
            #expect(refusal["refusedBy"]?.stringValue == "allow-shell")
            #expect(refusal["reason"]?.stringValue == SessionAdmission.commandsOff)
        }
    }
}
