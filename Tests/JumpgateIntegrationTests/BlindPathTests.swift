import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// The relay-blind path (docs/BLIND-RELAY.md) through real processes: `jumpgate forward` and the agent
/// pair on the gateway's port and run TLS end to end; the gateway passes bytes it cannot read. Each way
/// it can be declined falls back to the WebSocket path; each way a pairing can be misused is refused.
@Suite("The relay-blind path: end-to-end TLS, the gateway passing bytes", .serialized)
struct BlindPathTests {
    /// Collects what a raw connection receives.
    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox(ByteBuffer())
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = self.unwrapInboundIn(data)
            self.received.withLockedValue { _ = $0.writeBuffer(&bytes) }
        }
        var text: String { self.received.withLockedValue { String(buffer: $0) } }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// A plain TCP connection to the gateway's port from `source`, with a collector.
    static func raw(_ lab: EndToEndTests.Lab, from source: String) async throws -> (any Channel, Collector) {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: lab.gatewayPort)
            .get()
        return (channel, collector)
    }

    static func pairs(_ lab: EndToEndTests.Lab) async throws -> Int {
        Int(GatewayLimitsTests.sample(try await GatewayLimitsTests.metrics(lab), "jumpgate_blind_pairs_total ") ?? 0)
    }

    static let port: JSONValue = "AWS-StartPortForwardingSessionToRemoteHost"

    /// Whether every byte the gateway relayed, each way, went through a relay-blind pair (none through a
    /// WebSocket data channel, as they would had the end-to-end TLS failed and the sides fallen back).
    static func allBlind(_ lab: EndToEndTests.Lab, atLeast bytes: Double = 1) async throws -> Bool {
        let text = try await GatewayLimitsTests.metrics(lab)
        return ["to_agent", "to_client"].allSatisfy { direction in
            let blind = GatewayLimitsTests.sample(text, "jumpgate_blind_bytes_total{direction=\"\(direction)\"}")
            let all = GatewayLimitsTests.sample(text, "jumpgate_relay_bytes_total{direction=\"\(direction)\"}")
            return (blind ?? 0) >= bytes && blind == all
        }
    }

    @Test("forward pairs with the agent: bytes arrive whole both ways, connection records still come, Ctrl+C ends it")
    func forwardTakesTheBlindPath() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (forward, localPort) = try lab.forward(to: echoPort)
            defer { forward.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 8, baseSize: 65_536, step: 4099) == 8)
            let large = randomBuffer(24 << 20)
            #expect(try await echoRoundTrip(port: localPort, bytes: large) == large)
            #expect(try await Self.pairs(lab) == 1, "the session did not take the relay-blind path")
            // The pair carried the bytes (TLS records, more than the payload) both ways.
            let carried = try await Self.allBlind(lab, atLeast: Double(24 << 20))
            let text = try await GatewayLimitsTests.metrics(lab)
            #expect(carried, "\(text)")
            let ready = try #require(forward.output.first { $0.contains("\"event\":\"ready\"") })
            let sessionID = try #require(try JSONValue(parsing: ready)["sessionId"]?.stringValue)
            // The agent's connection records reach the audit trail as on the WebSocket path.
            try await ConnectionRecordsTests.eventually("the session's connection records") {
                try await ConnectionRecordsTests.records(lab, session: sessionID).count >= 9
            }
            // The offer's secrets are not in the audit trail: whoever read it in time could pair.
            let events = try await lab.ssm.call(
                "ListAuditEvents",
                ["SessionId": .string(sessionID)],
                api: "JumpgateAdmin"
            )
            let start = try #require(
                events["Events"]?.arrayValue?.first { $0["eventName"]?.stringValue == "StartSession" }
            )
            let offer = try #require(start["responseElements"]?["JumpgateBlindPath"], "\(start)")
            #expect(offer["PairingToken"]?.stringValue == "HIDDEN_DUE_TO_SECURITY_REASONS", "\(offer)")
            #expect(offer["ClientSecret"]?.stringValue == "HIDDEN_DUE_TO_SECURITY_REASONS", "\(offer)")
            forward.signal(SIGINT)
            #expect(try forward.waitForExit() == 0)
            #expect(try await EndToEndTests.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
        }
    }

    @Test("TerminateSession ends a session on the relay-blind path: the gateway closes the pair, forward ends")
    func terminateEndsIt() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (forward, localPort) = try lab.forward(to: echoPort)
            defer { forward.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1000, step: 1) == 2)
            #expect(try await Self.allBlind(lab, atLeast: 2000))
            let ready = try #require(forward.output.first { $0.contains("\"event\":\"ready\"") })
            let sessionID = try #require(try JSONValue(parsing: ready)["sessionId"]?.stringValue)
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            // Ended by the other side with the gateway's reason, passed on by the agent inside TLS (the
            // gateway's own close of the pair comes 2 s later and would mean a failed resume instead).
            #expect(try forward.waitForExit(timeout: 30) == 2, "\(forward.standardError)")
            let ended = try #require(forward.output.first { $0.contains("\"event\":\"ended\"") })
            #expect(ended.contains("\"by\":\"remote\""), "\(ended)")
            #expect(try await EndToEndTests.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
        }
    }

    @Test(
        "kill -9 of the gateway under a paced transfer on the relay-blind path: both sides resume, pair again, byte-exact"
    )
    func gatewayKilledUnderTransfer() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (forward, localPort) = try lab.forward(to: echoPort)
            defer { forward.stop() }
            let payload = randomBuffer(12 << 20)
            // About 2.5 MB/s: the transfer spans the kill and the restart.
            let transfer = Task {
                try await pacedEchoRoundTrip(
                    port: localPort,
                    bytes: payload,
                    chunk: 64 << 10,
                    interval: .milliseconds(25)
                )
            }
            // The transfer is under way on the pair when the gateway dies.
            try await ConnectionRecordsTests.eventually("2 MiB through the pair") {
                try await Self.allBlind(lab, atLeast: Double(2 << 20))
            }
            // The client resumes once the agent is back (a client is offered a re-pairing only while the
            // agent's control channel is connected; otherwise it resumes on the WebSocket path, as it would
            // with the agent gone): held meanwhile, as a laptop that was asleep.
            forward.signal(SIGSTOP)
            lab.gateway.signal(SIGKILL)
            _ = try lab.gateway.waitForExit()
            let gateway = try GatewayRestartTests.restartGateway(lab, name: "gateway-after-kill")
            defer { gateway.stop() }
            #expect(try await GatewayRestartTests.pingStatus(lab, waitingFor: "Online") == "Online")
            forward.signal(SIGCONT)
            let echoed = try await transfer.value
            #expect(echoed == payload)
            #expect(forward.process.isRunning, "\(forward.standardError.suffix(800))")
            // Both sides asked for the path again as they resumed, and the new gateway carried the rest of the
            // transfer through a new pair only (a side that fell back would have relayed on the WebSocket path).
            #expect(try await Self.pairs(lab) == 1, "\(lab.agent.standardError.suffix(1500))")
            let text = try await GatewayLimitsTests.metrics(lab)
            #expect(try await Self.allBlind(lab, atLeast: Double(1 << 20)), "\(text)")
            #expect(
                lab.agent.waitForStandardError(containing: "data channel reconnected"),
                "\(lab.agent.standardError.suffix(1500))"
            )
            // New connections through the resumed session work too, on the pair.
            #expect(try await parallelEchoes(port: localPort, count: 4, baseSize: 65536, step: 7) == 4)
            #expect(try await Self.allBlind(lab, atLeast: Double(1 << 20)))
            // The client's half came in ResumeSession's answer, whose audit record hides its secrets.
            let ready = try #require(forward.output.first { $0.contains("\"event\":\"ready\"") })
            let sessionID = try #require(try JSONValue(parsing: ready)["sessionId"]?.stringValue)
            var offered: JSONValue?
            try await ConnectionRecordsTests.eventually("ResumeSession's audit record with its offer") {
                let events = try await lab.ssm.call(
                    "ListAuditEvents",
                    ["SessionId": .string(sessionID)],
                    api: "JumpgateAdmin"
                )
                offered =
                    events["Events"]?.arrayValue?.lazy
                    .filter { $0["eventName"]?.stringValue == "ResumeSession" }
                    .compactMap { $0["responseElements"]?["JumpgateBlindPath"] }.first
                return offered != nil
            }
            #expect(offered?["PairingToken"]?.stringValue == "HIDDEN_DUE_TO_SECURITY_REASONS", "\(offered ?? .null)")
            #expect(offered?["ClientSecret"]?.stringValue == "HIDDEN_DUE_TO_SECURITY_REASONS", "\(offered ?? .null)")
        }
    }

    @Test(
        "declined: a gateway with --no-blind-relay, an agent with --no-blind-path, forward --no-blind-path",
        arguments: [
            (["--no-blind-relay"], [String](), [String]()), ([], ["--no-blind-path"], []),
            ([], [], ["--no-blind-path"]),
        ]
    )
    func declined(gateway: [String], agent: [String], forwardArguments: [String]) async throws {
        try await EndToEndTests.withLab(gatewayArguments: gateway, agentArguments: agent) { lab, echoPort in
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "--format", "json", "--endpoint-url",
                    lab.url, "--ca-file", lab.caFile,
                ] + forwardArguments,
                environment: lab.environment
            )
            defer { forward.stop() }
            let ready = try JSONValue(parsing: try forward.waitForLine { $0.contains("\"event\":\"ready\"") })
            let localPort = Int(try #require(ready["localPort"]?.int64Value))
            #expect(try await parallelEchoes(port: localPort, count: 4, baseSize: 100_000, step: 1) == 4)
            #expect(try await Self.pairs(lab) == 0)
        }
    }

    @Test("pairing lines that are not good are answered NO, closed, and counted under their refusal")
    func refusedLines() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let cases: [(String, String)] = [
                ("JGPAIR/1 client " + String(repeating: "A", count: 43) + "\n", "PairingUnknownToken"),
                ("JGPAIR/1 gateway " + String(repeating: "A", count: 43) + "\n", "PairingUnknownRole"),
                ("JGX\n", "PairingUnknownProtocol"),
                ("JGPAIR/1 client short\n", "PairingMalformedLine"),
            ]
            for (index, (line, type)) in cases.enumerated() {
                let (channel, collector) = try await Self.raw(lab, from: "127.0.0.\(20 + index)")
                try await channel.writeAndFlush(ByteBuffer(string: line)).get()
                #expect(await GatewayAttackTests.closes(channel, within: 5), "\(type): the connection was kept")
                #expect(collector.text.hasPrefix("NO "), "\(type): \(collector.text)")
                let text = try await GatewayLimitsTests.metrics(lab)
                #expect(GatewayLimitsTests.counter(text, "jumpgate_refusals_total", type: type) == 1, "\(type)")
            }
            // A pairing connection that never sends its line is closed too.
            let (silent, _) = try await Self.raw(lab, from: "127.0.0.30")
            try await silent.writeAndFlush(ByteBuffer(string: "J")).get()
            #expect(await GatewayAttackTests.closes(silent, within: 10))
            let text = try await GatewayLimitsTests.metrics(lab)
            #expect(GatewayLimitsTests.counter(text, "jumpgate_refusals_total", type: "PairingLineTimeout") == 1)
        }
    }

    @Test(
        "a peer that wins the pairing race with the client's token but not its secret gets nothing from the agent, which takes the WebSocket path"
    )
    func raceWithoutTheSecret() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            // The test is the client: it asks for the blind path, then plays someone who read the token.
            let request: JSONValue = [
                "Target": .string(lab.instanceID), "DocumentName": Self.port,
                "Parameters": ["host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")]],
                "JumpgateBlindPath": true,
            ]
            let grant = try SessionGrant(json: try await lab.ssm.call("StartSession", request))
            let offer = try #require(grant.blindPath, "the gateway offered no relay-blind path")
            let collector = Collector()
            let tls = try NIOSSLContext(
                configuration: {
                    var configuration = TLSConfiguration.makeClientConfiguration()
                    configuration.certificateVerification = .none
                    return configuration
                }()
            )
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
                }
                .connect(host: "127.0.0.1", port: lab.gatewayPort)
                .get()
            try await channel.writeAndFlush(ByteBuffer(string: "JGPAIR/1 client \(offer.pairingToken)\n")).get()
            try await ConnectionRecordsTests.eventually("the gateway's OK") { collector.text == "OK\n" }
            // Paired with the agent: TLS with it (no pin: this peer does not care who it is), then a wrong secret.
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(
                    try NIOSSLClientHandler(context: tls, serverHostname: nil),
                    position: .first
                )
            }.get()
            try await channel.writeAndFlush(ByteBuffer(string: String(repeating: "x", count: 43))).get()
            #expect(await GatewayAttackTests.closes(channel, within: 10), "the agent kept the connection")
            // Nothing after the gateway's OK: the agent said not a word (its handshake request names the target).
            #expect(collector.text == "OK\n", "the agent sent something: \(collector.text.count) bytes")
            // The agent counted it and reported it (the gateway's metrics, its audit trail on the session).
            try await ConnectionRecordsTests.eventually("the agent's ClientSecretMismatch in /metrics") {
                let text = try await GatewayLimitsTests.metrics(lab)
                return GatewayLimitsTests.counter(text, "jumpgate_agent_refusals_total", type: "ClientSecretMismatch")
                    == 1
            }
            // The agent went to the WebSocket path: the session is Connected there.
            try await ConnectionRecordsTests.eventually("the session Connected on the WebSocket path") {
                let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
                let session = active["Sessions"]?.arrayValue?.first {
                    $0["SessionId"]?.stringValue == grant.sessionID
                }
                return session?["Status"]?.stringValue == "Connected"
            }
            #expect(try await Self.pairs(lab) == 1)
        }
    }
}
