import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// Shells and commands through AWS's own session-manager-plugin, driven by the AWS CLI in a real terminal.
/// Runs when JUMPGATE_OFFICIAL_PLUGIN_DIR names a directory holding that plugin (built from its public
/// source with `scripts/build-official-plugin SOURCE_DIR DIR`); the plugin's source is not in this
/// repository, so CI skips it and says so.
@Suite("Shells and commands through the official session-manager-plugin", .serialized)
struct OfficialPluginShellTests {
    static var pluginDirectory: String? {
        guard let directory = ProcessInfo.processInfo.environment["JUMPGATE_OFFICIAL_PLUGIN_DIR"],
            FileManager.default.isExecutableFile(atPath: directory + "/session-manager-plugin")
        else { return nil }
        return directory
    }

    @Test("a shell: the prompt, 6*7, the terminal's size, Ctrl+C, exit; a non-interactive command's output")
    func officialPlugin() async throws {
        guard let plugin = Self.pluginDirectory else {
            print("OfficialPluginShellTests skipped: set JUMPGATE_OFFICIAL_PLUGIN_DIR (scripts/build-official-plugin)")
            return
        }
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            var environment = EndToEndTests.awsEnvironment(lab)
            environment["PATH"] = plugin + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
            environment["LANG"] = "C.UTF-8"
            // Go's TLS trusts the gateway's CA through SSL_CERT_FILE (the AWS CLI through AWS_CA_BUNDLE).
            environment["SSL_CERT_FILE"] = lab.caFile
            let terminal = try Tmux(columns: 100, rows: 30, environment: environment, directory: lab.directory)
            try terminal.type("command -v session-manager-plugin")
            try terminal.waitForLine { $0 == plugin + "/session-manager-plugin" }
            let cli = "aws ssm start-session --target \(lab.instanceID) --endpoint-url \(lab.url)"
            try terminal.type(ShellSessionTests.run(cli, marker: "1"))
            try terminal.waitForLine(timeout: 60) { $0.hasPrefix("Starting session with SessionId: ") }
            try terminal.type("echo official-$((6*7))")
            try terminal.waitForLine(timeout: 30) { $0 == "official-42" }
            try terminal.type("stty size")
            try terminal.waitForLine { $0 == "30 100" }
            try terminal.type("sleep 100")
            try terminal.waitForLine { $0.hasSuffix("sleep 100") }
            try terminal.press("C-c")
            try terminal.type("echo alive-$((1+1))")
            try terminal.waitForLine { $0 == "alive-2" }
            try terminal.type("exit 3")
            // The official plugin prints no exit status and exits 0. (It sets its own idea of a sane terminal
            // on exit rather than the settings it found, so `stty -g` may differ: its behaviour, not ours.)
            // A shell's normal end reaches it as an end without a reason, so it says it is exiting.
            try terminal.waitForLine(timeout: 20) { $0 == "EXIT1=0" }
            #expect(try terminal.count { $0.hasPrefix("Exiting session with sessionId: ") } == 1)
            #expect(try terminal.count { $0.contains("Ended by the client") } == 0)

            let parameters = #"{"command":["echo official-command-$((2*3)); echo to-stderr >&2"]}"#
            try terminal.type(
                ShellSessionTests.run(
                    cli + " --document-name AWS-StartNonInteractiveCommand --parameters '\(parameters)'",
                    marker: "2"
                )
            )
            try terminal.waitForLine(timeout: 60) { $0 == "official-command-6" }
            try terminal.waitForLine { $0 == "to-stderr" }
            try terminal.waitForLine(timeout: 20) { $0 == "EXIT2=0" }
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(sessions["Sessions"]?.arrayValue?.isEmpty ?? true)
            #expect(lab.agent.childPIDs().isEmpty)
        }
    }
}
