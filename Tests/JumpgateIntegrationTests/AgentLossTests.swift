import Foundation
import JumpgateClient
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

/// A killed agent must not leave its sessions hanging: a new agent process ends them at once, and an agent
/// that never comes back ends them after the gateway's --agent-loss-timeout; either way Failed with a
/// reason, local connections closed, and a client that exits non-zero.
@Suite("Agent loss: killed agents end their sessions", .serialized)
struct AgentLossTests {
    /// The session's History entry once its status is `wanted` (polled, bounded).
    static func history(
        _ lab: EndToEndTests.Lab,
        _ sessionID: String,
        waitingFor wanted: String
    ) async throws -> JSONValue? {
        for _ in 0..<100 {
            let history = try await lab.ssm.call("DescribeSessions", ["State": "History"])
            if let session = history["Sessions"]?.arrayValue?.first(where: { $0["SessionId"]?.stringValue == sessionID }
            ),
                session["Status"]?.stringValue == wanted
            {
                return session
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return nil
    }

    /// A transfer that never finishes on its own (1 GiB through the echo): it ends when the tunnel closes
    /// the local connection, with the error that says so.
    static func endlessTransfer(port: Int) -> Task<Int, any Error> {
        Task { try await streamingEcho(port: port, total: 1 << 30, seed: 16, chunk: 256 << 10) }
    }

    static func expectClosedLocally(_ transfer: Task<Int, any Error>) async {
        do {
            let verified = try await transfer.value
            Issue.record("the transfer completed (\(verified) bytes) although the agent was killed")
        } catch {
            // The tunnel closed the local connection: the writer's next write, or the reader, notices.
            #expect(
                error as? ChannelError == .ioOnClosedChannel || "\(error)".contains("the connection closed after"),
                "\(error)"
            )
        }
    }

    @Test("an agent killed (SIGKILL) mid-transfer and restarted at once: the session ends Failed at once")
    func killedAndRestarted() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            let transfer = Self.endlessTransfer(port: localPort)
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1 << 20, step: 1) == 2)
            lab.agent.signal(SIGKILL)
            _ = try lab.agent.waitForExit()
            let killedAt = Date()
            let restarted = try ChildProcess(
                "agent (restarted)",
                ["agent", "run", "--state-dir", lab.directory + "/agent"]
            )
            defer { restarted.stop() }
            // The new process's control channel tells the gateway the old one's sessions are gone.
            #expect(try client.waitForExit(timeout: 30) == 2, "ended by the other side: exit status 2")
            let elapsed = Date().timeIntervalSince(killedAt)
            #expect(elapsed < 20, "the session ended \(elapsed) s after the restart (the loss timeout is 2 minutes)")
            await Self.expectClosedLocally(transfer)
            let line = client.output.first { $0.contains("SessionId: \(sessionID) :") } ?? ""
            #expect(line.contains("The agent on \(lab.instanceID) restarted"), "\(client.output)")
            let entry = try await Self.history(lab, sessionID, waitingFor: "Failed")
            #expect(entry?["Details"]?.stringValue?.contains("restarted") == true, "\(String(describing: entry))")
            // The restarted agent serves new sessions.
            let (second, secondPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { second.stop() }
            #expect(try await parallelEchoes(port: secondPort, count: 3, baseSize: 4096, step: 1) == 3)
        }
    }

    @Test("an agent killed and not restarted: the client is told, then the session ends Failed at the loss timeout")
    func killedForGood() async throws {
        try await EndToEndTests.withLab(gatewayArguments: ["--agent-loss-timeout", "4s"]) { lab, echoPort in
            // jumpgate forward with JSON events: agent-lost, then the end with its reason.
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "--endpoint-url", lab.url,
                    "--ca-file", lab.caFile, "--format", "json",
                ],
                environment: lab.environment
            )
            defer { forward.stop() }
            let ready = try JSONValue(parsing: try forward.waitForLine { $0.contains("\"event\":\"ready\"") })
            let port = Int(try #require(ready["localPort"]?.int64Value))
            let sessionID = try #require(ready["sessionId"]?.stringValue)
            let transfer = Self.endlessTransfer(port: port)
            #expect(try await parallelEchoes(port: port, count: 2, baseSize: 1 << 20, step: 1) == 2)
            lab.agent.signal(SIGKILL)
            _ = try lab.agent.waitForExit()
            let killedAt = Date()
            let lost = try JSONValue(parsing: try forward.waitForLine(timeout: 10) { $0.contains("\"agent-lost\"") })
            #expect(lost["sessionId"]?.stringValue == sessionID)
            #expect(lost["waitSeconds"]?.int64Value == 4)
            #expect(lost["reason"]?.stringValue?.contains("is unreachable") == true)
            #expect(try forward.waitForExit(timeout: 30) == 2, "ended by the other side: exit status 2")
            let elapsed = Date().timeIntervalSince(killedAt)
            #expect(elapsed >= 3 && elapsed < 15, "the session ended \(elapsed) s after the kill (timeout 4 s)")
            await Self.expectClosedLocally(transfer)
            #expect(
                forward.output.contains {
                    $0.contains("Session \(sessionID) ended: The agent on \(lab.instanceID) was lost")
                },
                "\(forward.output)"
            )
            let entry = try await Self.history(lab, sessionID, waitingFor: "Failed")
            #expect(entry?["Details"]?.stringValue?.contains("was lost") == true, "\(String(describing: entry))")
        }
    }

    @Test("through the AWS CLI and the plugin: a killed, restarted agent ends the session and the CLI exits non-zero")
    func awsCLIKilledAgent() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (aws, localPort, sessionID) = try EndToEndTests.awsStartSession(lab, port: echoPort)
            defer { aws.stop() }
            let transfer = Self.endlessTransfer(port: localPort)
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1 << 20, step: 1) == 2)
            lab.agent.signal(SIGKILL)
            _ = try lab.agent.waitForExit()
            let restarted = try ChildProcess(
                "agent (restarted)",
                ["agent", "run", "--state-dir", lab.directory + "/agent"]
            )
            defer { restarted.stop() }
            let status = try aws.waitForExit(timeout: 30)
            #expect(status != 0, "the AWS CLI passes on the plugin's non-zero status")
            await Self.expectClosedLocally(transfer)
            #expect(aws.output.contains { $0.contains("restarted") }, "\(aws.output)")
            #expect(try await Self.history(lab, sessionID, waitingFor: "Failed") != nil)
        }
    }

    @Test(
        "exit statuses: Ctrl+C 0, terminated from the API 2, a session that cannot start 1 (start-session and forward)"
    )
    func exitStatuses() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            // start-session: Ctrl+C is 0, TerminateSession is 2.
            let (interrupted, _, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { interrupted.stop() }
            interrupted.signal(SIGINT)
            #expect(try interrupted.waitForExit() == 0)
            let (terminated, _, sessionID) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { terminated.stop() }
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            #expect(try terminated.waitForExit() == 2)

            // forward: the same two, and 1 when the session cannot start (an unknown target).
            func forward(_ target: String) throws -> ChildProcess {
                try ChildProcess(
                    "forward",
                    [
                        "forward", target, "-L", "0:127.0.0.1:\(echoPort)", "--endpoint-url", lab.url, "--ca-file",
                        lab.caFile, "--format", "json",
                    ],
                    environment: lab.environment
                )
            }
            let stopped = try forward(lab.instanceID)
            defer { stopped.stop() }
            _ = try stopped.waitForLine { $0.contains("\"event\":\"ready\"") }
            stopped.signal(SIGINT)
            #expect(try stopped.waitForExit() == 0)
            let ended = try forward(lab.instanceID)
            defer { ended.stop() }
            let ready = try JSONValue(parsing: try ended.waitForLine { $0.contains("\"event\":\"ready\"") })
            let endedID = try #require(ready["sessionId"]?.stringValue)
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(endedID)])
            #expect(try ended.waitForExit() == 2)
            let refused = try forward("mi-00000000000000000")
            defer { refused.stop() }
            #expect(try refused.waitForExit() == 1)
        }
    }

    @Test("the plugin failing early (a bad JUMPGATE_RESUME_TIMEOUT) terminates the session it was given")
    func pluginEarlyFailureTerminates() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (request, response) = try await GatewayAPITests.startSession(lab, echoPort: echoPort)
            let sessionID = try #require(response["SessionId"]?.stringValue)
            let plugin = try GatewayAPITests.plugin(
                lab,
                request: request,
                response: response,
                environment: ["JUMPGATE_RESUME_TIMEOUT": "soon"]
            )
            defer { plugin.stop() }
            #expect(try plugin.waitForExit() == 1)
            #expect(try await Self.history(lab, sessionID, waitingFor: "Terminated") != nil)
        }
    }
}
