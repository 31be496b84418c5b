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

    /// A target that sends without end (64 KiB at a time, as fast as it is read).
    final class EndlessSender: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelActive(context: ChannelHandlerContext) { self.send(context: context) }
        func channelWritabilityChanged(context: ChannelHandlerContext) { self.send(context: context) }
        private func send(context: ChannelHandlerContext) {
            while context.channel.isActive, context.channel.isWritable {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(repeating: 0x5A, count: 64 << 10)), promise: nil)
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// How a local connection ended: reset (RST, the bytes that were on their way are lost) or a FIN.
    enum LocalEnd: Equatable {
        case reset
        case finished
    }

    /// Reads (never writes) and reports how the connection ended, after how many bytes.
    final class EndWatcher: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let ended: EventLoopPromise<LocalEnd>
        var received = 0
        init(_ ended: EventLoopPromise<LocalEnd>) { self.ended = ended }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.received += self.unwrapInboundIn(data).readableBytes
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if let error = error as? IOError, error.errnoCode == ECONNRESET { self.ended.succeed(.reset) }
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) { self.ended.succeed(.finished) }
    }

    /// A download through the tunnel that never finishes on its own; returns how it ended.
    static func endlessDownload(port: Int) async throws -> (EventLoopFuture<LocalEnd>, EndWatcher) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let ended = loop.makePromise(of: LocalEnd.self)
        let watcher = EndWatcher(ended)
        _ = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(watcher) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        // Under way before the agent is killed.
        for _ in 0..<200 where try await loop.submit({ watcher.received }).get() < 1 << 20 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return (ended.futureResult, watcher)
    }

    /// The local connection was reset: a tool reading it sees an error, not a clean end of a short answer.
    static func expectReset(_ ended: EventLoopFuture<LocalEnd>, _ watcher: EndWatcher) async throws {
        #expect(watcher.received >= 1 << 20, "the download was under way")
        #expect(try await ended.get() == .reset)
    }

    /// Runs `body` with a lab whose agent may reach an echo target and a target that sends without end.
    static func withSenderLab(
        gatewayArguments: [String] = [],
        _ body: (EndToEndTests.Lab, _ echoPort: Int, _ senderPort: Int) async throws -> Void
    ) async throws {
        let sender = try await startServer { EndlessSender() }
        defer { sender.close(promise: nil) }
        let senderPort = try #require(sender.localAddress?.port)
        let echo = try await startEchoServer()
        defer { echo.close(promise: nil) }
        let echoPort = try #require(echo.localAddress?.port)
        try await EndToEndTests.withLab(
            allow: ["127.0.0.1:\(echoPort)", "127.0.0.1:\(senderPort)"],
            gatewayArguments: gatewayArguments
        ) { lab, _ in
            try await body(lab, echoPort, senderPort)
        }
    }

    @Test("an agent killed (SIGKILL) mid-transfer and restarted at once: the session ends Failed at once")
    func killedAndRestarted() async throws {
        try await Self.withSenderLab { lab, echoPort, senderPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: senderPort
            )
            defer { client.stop() }
            let (ended, watcher) = try await Self.endlessDownload(port: localPort)
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
            #expect(elapsed < 20, "the session ended \(elapsed) s after the restart (the loss timeout is 5 minutes)")
            try await Self.expectReset(ended, watcher)
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
        try await Self.withSenderLab(gatewayArguments: ["--agent-loss-timeout", "4s"]) { lab, _, senderPort in
            // jumpgate forward with JSON events: agent-lost, then the end with its reason.
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(senderPort)", "--endpoint-url", lab.url,
                    "--ca-file", lab.caFile, "--format", "json",
                ],
                environment: lab.environment
            )
            defer { forward.stop() }
            let ready = try JSONValue(parsing: try forward.waitForLine { $0.contains("\"event\":\"ready\"") })
            let port = Int(try #require(ready["localPort"]?.int64Value))
            let sessionID = try #require(ready["sessionId"]?.stringValue)
            let (ended, watcher) = try await Self.endlessDownload(port: port)
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
            try await Self.expectReset(ended, watcher)
            let end = try JSONValue(parsing: try forward.waitForLine { $0.contains("\"event\":\"ended\"") })
            #expect(end["sessionId"]?.stringValue == sessionID)
            #expect(end["reason"]?.stringValue?.contains("The agent on \(lab.instanceID) was lost") == true, "\(end)")
            let entry = try await Self.history(lab, sessionID, waitingFor: "Failed")
            #expect(entry?["Details"]?.stringValue?.contains("was lost") == true, "\(String(describing: entry))")
        }
    }

    @Test(
        "through the AWS CLI and the plugin: a killed agent, restarted or gone for good, ends the session; the CLI exits non-zero"
    )
    func awsCLIKilledAgent() async throws {
        for restart in [true, false] {
            try await Self.withSenderLab(gatewayArguments: ["--agent-loss-timeout", "4s"]) { lab, _, senderPort in
                let (aws, localPort, sessionID) = try EndToEndTests.awsStartSession(lab, port: senderPort)
                defer { aws.stop() }
                let (ended, watcher) = try await Self.endlessDownload(port: localPort)
                lab.agent.signal(SIGKILL)
                _ = try lab.agent.waitForExit()
                let restarted =
                    restart
                    ? try ChildProcess("agent (restarted)", ["agent", "run", "--state-dir", lab.directory + "/agent"])
                    : nil
                defer { restarted?.stop() }
                let status = try aws.waitForExit(timeout: 30)
                print("AgentLossTests.awsCLIKilledAgent: restart \(restart), the AWS CLI exited \(status)")
                #expect(status != 0, "the AWS CLI passes on the plugin's non-zero status")
                try await Self.expectReset(ended, watcher)
                #expect(aws.output.contains { $0.contains(restart ? "restarted" : "was lost") }, "\(aws.output)")
                if !restart { #expect(aws.output.contains { $0.contains("is unreachable") }, "\(aws.output)") }
                #expect(try await Self.history(lab, sessionID, waitingFor: "Failed") != nil)
            }
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
            let (failedStatus, _, _) = try runJumpgate(
                [
                    "start-session", "--target", "mi-00000000000000000", "--document-name",
                    "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
                    "host=127.0.0.1,portNumber=\(echoPort),localPortNumber=0", "--endpoint-url", lab.url, "--ca-file",
                    lab.caFile,
                ],
                environment: lab.environment
            )
            #expect(failedStatus == 1, "a session that cannot start: exit status 1")

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
