import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// The packaged systemd units run the gateway and the agent as a dynamic user, and `jumpgate forward` runs
/// as whoever starts it: the product must work with no privilege at all. As root, the test runs every
/// process as `nobody`; without root it is skipped, since then every other test already runs unprivileged.
@Suite("Unprivileged: gateway, agent and jumpgate forward as an account without privileges", .serialized)
struct UnprivilegedTests {
    @Test(
        "a tunnel works end to end, API calls and bulk included, with no process running as root",
        .enabled(if: UnprivilegedAccount.available, "needs root to switch to another account")
    )
    func tunnelWithoutRoot() async throws {
        try await EndToEndTests.withLab(unprivileged: UnprivilegedAccount.nobody) { lab, echoPort in
            // The gateway answered the lab's API calls (CreateActivation, DescribeInstanceInformation) and the
            // agent came Online through it: its TLS connections were accepted and made without root.
            let info = try await lab.ssm.call("DescribeInstanceInformation", [:])
            #expect(info["InstanceInformationList"]?.arrayValue?.first?["PingStatus"]?.stringValue == "Online")
            let (forward, port) = try lab.forward(to: echoPort)
            defer { forward.stop() }
            for process in [lab.gateway, lab.agent, forward] {
                let identity = try #require(UnprivilegedAccount.identity(of: process), "\(process.name)")
                #expect(identity.uid == UnprivilegedAccount.nobody.uid, "\(process.name)")
                #expect(identity.capabilities == 0, "\(process.name)")
            }
            // Accepted by the client, dialled by the agent, relayed by the gateway: echoes of 1 byte to 768 KiB.
            #expect(try await parallelEchoes(port: port, count: 4, baseSize: 1, step: 1 << 18) == 4)
        }
    }

    @Test(
        "an agent without root whose account has no login shell (nobody: nologin) refuses a command session and says what to do",
        .enabled(if: UnprivilegedAccount.available, "needs root to switch to another account")
    )
    func commandWithoutLoginShell() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"], unprivileged: UnprivilegedAccount.nobody) {
            lab,
            _ in
            let script = try CommandSessionTests.runCommand(lab, "id -u; exit 5", name: "u")
            #expect(try CommandSessionTests.shell(lab, script) == 0)
            let output = String(decoding: try CommandSessionTests.read(lab, "outu"), as: UTF8.self)
            let errors = String(decoding: try CommandSessionTests.read(lab, "erru"), as: UTF8.self)
            #expect(output.isEmpty, "\(output)")
            #expect(errors.contains("has no login shell"), "\(errors)")
            #expect(errors.contains("usermod -s /bin/bash nobody"), "\(errors)")
            #expect(try CommandSessionTests.status(lab, "u") != "0", "\(errors)")
            #expect(lab.agent.waitForStandardError(containing: "has no login shell"), "\(lab.agent.standardError)")
            let refusal = try await ConnectionRecordsTests.sessionRefusal(lab)
            #expect(refusal["refusedBy"]?.stringValue == "shell-account")
            #expect(refusal["reason"]?.stringValue?.contains("usermod -s /bin/bash nobody") == true)
        }
    }

    @Test(
        "an agent without root serves shells and commands as its own account, which has a login shell",
        .enabled(if: UnprivilegedAccount.available, "needs root to switch to another account")
    )
    func shellsAsTheAgentsAccount() async throws {
        try await UnprivilegedAccount.withShellAccount { name, user in
            try await EndToEndTests.withLab(agentArguments: ["--allow-shell"], unprivileged: user) { lab, _ in
                let script = try CommandSessionTests.runCommand(lab, "id -u; id -g; echo err >&2; exit 5", name: "s")
                #expect(try CommandSessionTests.shell(lab, script) == 0)
                let output = String(decoding: try CommandSessionTests.read(lab, "outs"), as: UTF8.self)
                let errors = String(decoding: try CommandSessionTests.read(lab, "errs"), as: UTF8.self)
                #expect(output == "\(user.uid)\n\(user.gid)\n", "\(output); \(errors)")
                #expect(errors.contains("err\n"), "\(errors)")
                #expect(try CommandSessionTests.status(lab, "s") == "5", "\(errors)")
                // A shell on a terminal (a PTY opened without root): prompt, resize, Ctrl+C, exit status.
                try ShellSessionTests.driveShells(lab, user: name)
            }
        }
    }
}
