import Foundation
import JumpgateAgent
import JumpgateClient
import JumpgateWire
import Testing

/// Shell sessions through real processes: a gateway, an agent run with `--allow-shell`, and clients typed
/// into a real terminal (tmux). When the tests run as root (CI), the agent runs shells as its default
/// account, which it creates on first use (useradd), so that path is exercised too.
@Suite("Shell sessions: jumpgate start-session and the AWS CLI in a terminal", .serialized)
struct ShellSessionTests {
    /// The shell's account as `whoami` prints it.
    static var expectedUser: String {
        geteuid() == 0 ? ShellAccounts.defaultUser : (ShellAccounts.current()?.name ?? "")
    }

    /// A terminal whose shell has the lab's credentials, Jumpgate's binaries first on PATH (so the AWS CLI
    /// finds Jumpgate's session-manager-plugin), and the lab's CA for the AWS CLI.
    static func terminal(_ lab: EndToEndTests.Lab, columns: Int = 100, rows: Int = 30) throws -> Tmux {
        var environment = EndToEndTests.awsEnvironment(lab)
        environment["LANG"] = "C.UTF-8"
        return try Tmux(columns: columns, rows: rows, environment: environment, directory: lab.directory)
    }

    /// The client command line, then its exit status as `EXIT<marker>=n` and whether the terminal's settings
    /// are as before (`RESTORED<marker>` or `CHANGED<marker>`).
    static func run(_ command: String, marker: String) -> String {
        "stty -g > before\(marker); \(command); echo EXIT\(marker)=$?; stty -g > after\(marker); "
            + "cmp -s before\(marker) after\(marker) && echo RESTORED\(marker) || echo CHANGED\(marker)"
    }

    static func startSession(_ lab: EndToEndTests.Lab) -> String {
        "jumpgate start-session --target \(lab.instanceID) --endpoint-url \(lab.url) --ca-file \(lab.caFile)"
    }

    @Test(
        "a shell in a terminal: the prompt, 6*7, stty size following a resize, Ctrl+C, UTF-8, exit 3 as the client's status, the terminal restored; then piped input and the AWS CLI"
    )
    func shellInATerminal() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            try Self.driveShells(lab)
            // No shell outlives its session on the agent's host.
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(sessions["Sessions"]?.arrayValue?.isEmpty ?? true)
            #expect(lab.agent.childPIDs().isEmpty)
        }
    }

    /// The terminal part of ``shellInATerminal()``; `user` is the account the shells run as.
    static func driveShells(_ lab: EndToEndTests.Lab, user: String = Self.expectedUser) throws {
        do {
            let terminal = try Self.terminal(lab)
            try terminal.type(Self.run(Self.startSession(lab), marker: "1"))
            let started = try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            let sessionID = String(started.dropFirst("Starting session with SessionId: ".count))
            // Typed at once: keys typed while the shell starts reach it. The first answer is one only the
            // remote shell can give (the local one has no JUMPGATE_SESSION_ID).
            try terminal.type("echo remote-$JUMPGATE_SESSION_ID")
            try terminal.waitForLine(timeout: 30) { $0 == "remote-\(sessionID)" }
            // The shell holds nothing of the agent's: only its terminal (0, 1, 2) and what ls opens (3).
            try terminal.type("echo fds: $(ls /proc/self/fd | tr '\\n' ' ')")
            try terminal.waitForLine { $0.hasPrefix("fds: ") }
            let fds = try terminal.lines().filter { $0.hasPrefix("fds: ") }
            #expect(fds == ["fds: 0 1 2 3"], "\(fds)")
            try terminal.type("echo $((6*7))")
            try terminal.waitForLine(timeout: 30) { $0 == "42" }
            try terminal.type("whoami")
            try terminal.waitForLine { $0 == user }

            try terminal.type("stty size")
            try terminal.waitForLine { $0 == "30 100" }
            try terminal.resize(columns: 90, rows: 25)
            // The new size arrives after SIGWINCH; ask until the shell sees it.
            var resized = false
            for _ in 0..<40 {
                try terminal.type("stty size")
                if (try? terminal.waitForLine(timeout: 0.5) { $0 == "25 90" }) != nil {
                    resized = true
                    break
                }
            }
            #expect(resized, "stty size never said 25 90")

            // Ctrl+C interrupts the foreground job on the remote terminal, and the shell lives on.
            try terminal.type("sleep 100")
            try terminal.waitForLine { $0.hasSuffix("sleep 100") }
            try terminal.press("C-c")
            try terminal.type("echo alive-$((1+1))")
            try terminal.waitForLine { $0 == "alive-2" }

            // Multi-byte characters arrive whole.
            try terminal.type("printf 'caf\\303\\251 \\342\\202\\254 \\360\\237\\230\\200\\n'")
            try terminal.waitForLine { $0 == "café € 😀" }

            // The session ends when the shell exits, even with a job left in the background on its terminal.
            try terminal.type("sleep 20 & exit 3")
            try terminal.waitForLine(timeout: 10) { $0 == "EXIT1=3" }
            try terminal.waitForLine { $0 == "RESTORED1" }
            #expect(try terminal.count { $0.hasPrefix("Exiting session with sessionId: ") } == 1)

            // Input from a pipe: the commands run, then its end (Ctrl+D) ends the shell if nothing else did.
            try terminal.type(
                Self.run("printf 'echo piped-$((2*3))\\nexit 4\\n' | " + Self.startSession(lab), marker: "2")
            )
            try terminal.waitForLine(timeout: 30) { $0 == "piped-6" }
            try terminal.waitForLine { $0 == "EXIT2=4" }
            try terminal.waitForLine { $0 == "RESTORED2" }

            // The AWS CLI with Jumpgate's plugin: no --document-name opens a shell.
            try terminal.type(
                Self.run("aws ssm start-session --target \(lab.instanceID) --endpoint-url \(lab.url)", marker: "3")
            )
            try terminal.waitForLine(timeout: 60) { $0.hasPrefix("Starting session with SessionId: ") }
            try terminal.type("echo cli-$((6*7))")
            try terminal.waitForLine(timeout: 30) { $0 == "cli-42" }
            // A non-zero status is not passed through the AWS CLI (it would fail with a traceback): 0.
            try terminal.type("false; exit")
            try terminal.waitForLine { $0 == "EXIT3=0" }
            try terminal.waitForLine { $0 == "RESTORED3" }
            let screen = try terminal.lines()
            #expect(
                screen.count(where: { $0.hasPrefix("Exiting session with sessionId: ") }) == 3,
                "\(screen.joined(separator: "\n"))"
            )
        }
    }

    /// Sets the account's preferences (SSM-SessionManagerRunShell's `inputs`, as JSON) as a new default version.
    static func setPreferences(_ lab: EndToEndTests.Lab, _ inputs: String) async throws {
        let content =
            #"{"schemaVersion": "1.0", "description": "Preferences", "sessionType": "Standard_Stream", "inputs": "#
            + inputs + "}"
        let updated = try await lab.ssm.call(
            "UpdateDocument",
            ["Name": "SSM-SessionManagerRunShell", "Content": .string(content), "DocumentVersion": "$LATEST"]
        )
        let version = try #require(updated["DocumentDescription"]?["DocumentVersion"]?.stringValue)
        _ = try await lab.ssm.call(
            "UpdateDocumentDefaultVersion",
            ["Name": "SSM-SessionManagerRunShell", "DocumentVersion": .string(version)]
        )
    }

    @Test(
        "the account's preferences: shells run as runAsDefaultUser after the shell profile's commands; root is refused"
    )
    func preferencesRunAsAndProfile() async throws {
        // As root (CI): a second account, made here; otherwise the agent's own, the only one it can run.
        let user = geteuid() == 0 ? "jumpgate-runas" : (ShellAccounts.current()?.name ?? "")
        let created = geteuid() == 0 && ShellAccounts.lookup(user) == nil
        if created {
            try Self.runTool("/usr/sbin/useradd", ["--create-home", "--user-group", "--shell", "/bin/bash", user])
        }
        // The account made here goes again (its shells ended with the session).
        defer { if created { try? Self.runTool("/usr/sbin/userdel", ["--remove", user]) } }
        let runAs = geteuid() == 0 ? ["--allow-run-as", user] : []
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"] + runAs) { lab, _ in
            try await Self.setPreferences(
                lab,
                #"{"runAsEnabled": true, "runAsDefaultUser": ""# + user
                    + #"", "shellProfile": {"linux": "export JG_PROFILE=loaded-$((40+2))"}}"#
            )
            let terminal = try Self.terminal(lab)
            try terminal.type(Self.run(Self.startSession(lab), marker: "1"))
            try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            try terminal.type("echo who-$(whoami) $JG_PROFILE")
            try terminal.waitForLine(timeout: 30) { $0 == "who-\(user) loaded-42" }
            try terminal.type("exit")
            try terminal.waitForLine { $0 == "EXIT1=0" }
            // A document cannot ask for root: the session fails with why.
            try await Self.setPreferences(lab, #"{"runAsEnabled": true, "runAsDefaultUser": "root"}"#)
            try terminal.type(Self.run(Self.startSession(lab), marker: "2"))
            // As root the root check itself speaks; otherwise the agent's one account does.
            let reason = geteuid() == 0 ? "only the agent's operator can allow" : "runs them only as \(user)"
            try terminal.waitForLine(timeout: 30) { $0.contains(reason) }
            try terminal.waitForLine { $0 == "EXIT2=2" }  // ended by the agent, with its reason
        }
    }

    static func runTool(_ path: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
    }

    @Test("a shell nobody types into ends at the gateway's idle timeout, and the client says so (exit 2)")
    func idleShell() async throws {
        try await EndToEndTests.withLab(gatewayArguments: ["--idle-timeout", "3s"], agentArguments: ["--allow-shell"]) {
            lab,
            _ in
            let terminal = try Self.terminal(lab)
            try terminal.type(Self.run(Self.startSession(lab), marker: "1"))
            try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            try terminal.type("echo busy-$((2*2))")
            try terminal.waitForLine(timeout: 30) { $0 == "busy-4" }
            try terminal.waitForLine(timeout: 30) { $0.contains("was idle for 3 seconds") }
            try terminal.waitForLine { $0 == "EXIT1=2" }
            try terminal.waitForLine { $0 == "RESTORED1" }
        }
    }

    @Test("an agent without --allow-shell refuses a shell, and the client says why and what to do")
    func refusedWithoutAllowShell() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let client = try ChildProcess(
                "start-session",
                ["start-session", "--target", lab.instanceID, "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: lab.environment
            )
            defer { client.stop() }
            #expect(try client.waitForExit() == 1)
            let said = client.outputText + client.standardError
            #expect(said.contains("Shell sessions are off on this agent"), "\(said)")
            #expect(said.contains("jumpgate agent run --allow-shell"), "\(said)")
            #expect(lab.agent.childPIDs().isEmpty)
            // Audited as a refusal of its own, with the rule that refused.
            let refusal = try await ConnectionRecordsTests.sessionRefusal(lab)
            #expect(refusal["refusedBy"]?.stringValue == "allow-shell")
            #expect(refusal["reason"]?.stringValue == SessionAdmission.shellsOff)
        }
    }
}
