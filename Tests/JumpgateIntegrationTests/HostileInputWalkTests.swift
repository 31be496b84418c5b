import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateTestUtilities
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The gateway's surface walked with hostile input, one attacker address per kind of refusal (the
/// legitimate client stays on 127.0.0.1): HTTP that is not HTTP, channel upgrades without a signature,
/// data and control channels with bad tokens, bad opening frames, frames before the opening one, no
/// opening frame at all, WebSocket protocol violations, a flood of bad opening handshakes, and, after
/// authentication, a client sending the agent every kind of hostile SSM message. Each refusal is counted
/// under its type in /metrics and summed up in one log line per source, never logged one by one; the
/// agent stays online and the legitimate tunnel keeps working throughout.
@Suite("Hostile input, walked: every refusal counted, summed up once per source", .serialized)
struct HostileInputWalkTests {
    /// A TLS connection from `source` whose WebSocket upgrade of `path` was answered. RFC 6455 has the
    /// client wait for the answer before it sends a frame (the gateway's HTTP decoder drops bytes that
    /// follow a request in the same read; they could only come from a client that breaks that rule).
    static func upgraded(_ lab: EndToEndTests.Lab, from source: String, path: String) async throws -> any Channel {
        let channel = try await GatewayAttackTests.connect(lab, from: source, tls: true)
        let watcher = try await channel.pipeline.handler(type: GatewayAttackTests.Watcher.self).get()
        try await channel.writeAndFlush(GatewayAttackTests.upgradeRequest(path: path)).get()
        let answered = await BackpressureTests.eventually(seconds: 5) { watcher.received.withLockedValue { $0 } > 0 }
        try #require(answered, "the upgrade from \(source) was not answered")
        return channel
    }

    /// One masked client frame.
    static func frame(_ opcode: WebSocketOpcode, _ payload: ByteBuffer) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeWebSocketFrame(opcode: opcode, payload: payload, maskingKey: WebSocketMaskingKey(1, 2, 3, 4))
        return frame
    }

    static func opening(token: String) -> ByteBuffer {
        ByteBuffer(string: OpenDataChannelInput(tokenValue: token, clientID: "attacker").json.serialized())
    }

    /// The lab agent's control channel upgrade, signed with its own instance credentials (so the refusal
    /// is the token's, not the signature's).
    static func signedControlUpgrade(_ lab: EndToEndTests.Lab) throws -> (path: String, headers: [(String, String)]) {
        let secret = try String(contentsOfFile: lab.directory + "/agent/instance.secret", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: lab.instanceID, secretAccessKey: secret),
            region: "us-east-1",
            service: "ssmmessages"
        )
        let path = "/v1/control-channel/\(lab.instanceID)"
        let query = "role=subscribe&stream=input"
        let endpoint = try GatewayAPITests.endpoint(lab)
        let request = SigV4Request(
            method: "GET",
            path: path,
            query: query,
            headers: [("Host", endpoint.hostHeader)],
            body: []
        )
        let headers = signer.signatureHeaders(for: request, epochSeconds: WallClock.nowSeconds())
        return ("\(path)?\(query)", headers.map { ($0.name, $0.value) })
    }

    @Test("each refusal is counted under its type and summed up once per source; the agent and the tunnel go on")
    func walk() async throws {
        // The agent summarises a session's refusals once an hour here, so the one line it logs comes at SIGTERM.
        try await EndToEndTests.withLab(agentArguments: ["--refusal-summary-interval", "3600"]) { lab, echoPort in
            let seed = UInt64.random(in: 1...UInt64.max)
            print("HostileInputWalkTests: seed \(seed)")
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let before = GatewayAttackTests.residentMegabytes(lab)
            let request: JSONValue = [
                "Target": .string(lab.instanceID), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                "Parameters": ["host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")]],
            ]
            let grant = try SessionGrant(json: try await lab.ssm.call("StartSession", request))
            let (_, _, streamPath) = try #require(HTTPSEndpoint.parse(url: grant.streamURL))

            // 127.0.0.5: a data channel that never sends its opening frame (the 10 s deadline closes it).
            let silent = try await Self.upgraded(lab, from: "127.0.0.5", path: streamPath)

            // 127.0.0.2: a wrong token, an opening frame that is not JSON, a binary frame first.
            var refusedHere: [any Channel] = []
            for first in [
                Self.frame(.text, Self.opening(token: "not-the-token")),
                Self.frame(.text, ByteBuffer(string: "{{{{")),
                Self.frame(.binary, ByteBuffer(string: "binary before the opening frame")),
            ] {
                let channel = try await Self.upgraded(lab, from: "127.0.0.2", path: streamPath)
                try await channel.writeAndFlush(first).get()
                refusedHere.append(channel)
            }

            // 127.0.0.3: WebSocket protocol violations: a reserved opcode, an unmasked client frame (both
            // refused by the frame reader), and a continuation frame with nothing to continue (refused by
            // the connection's state machine).
            var violations: [any Channel] = []
            for bytes: [UInt8] in [[0x83, 0x80, 1, 2, 3, 4], [0x82, 0x01, 0x41], [0x80, 0x80, 1, 2, 3, 4]] {
                let channel = try await Self.upgraded(lab, from: "127.0.0.3", path: streamPath)
                try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
                violations.append(channel)
            }

            // 127.0.0.4: a flood of 300 opening handshakes with bad tokens, 50 at a time.
            var flood: [any Channel] = []
            for _ in 0..<6 {
                var batch: [any Channel] = []
                for _ in 0..<50 {
                    let channel = try await Self.upgraded(lab, from: "127.0.0.4", path: streamPath)
                    channel.writeAndFlush(Self.frame(.text, Self.opening(token: "flood")), promise: nil)
                    batch.append(channel)
                }
                for channel in batch {
                    #expect(await GatewayAttackTests.closes(channel, within: 5), "a flood connection was kept")
                }
                flood += batch
            }

            // 127.0.0.6: not HTTP at all; a control channel upgrade with no signature; a signed one with a
            // bad token.
            let garbage = try await GatewayAttackTests.connect(lab, from: "127.0.0.6", tls: true)
            try await garbage.writeAndFlush(ByteBuffer(string: "\u{1}\u{2}GARBAGE \u{7f}\r\n\r\n")).get()
            let unsigned = try await Self.upgraded(
                lab,
                from: "127.0.0.6",
                path: "/v1/control-channel/\(lab.instanceID)?role=subscribe&stream=input"
            )
            let nowhere = try await GatewayAttackTests.connect(lab, from: "127.0.0.6", tls: true)
            try await nowhere.writeAndFlush(GatewayAttackTests.upgradeRequest(path: "/v1/data-channel/no-such")).get()
            let control = try Self.signedControlUpgrade(lab)
            var endpoint = try GatewayAPITests.endpoint(lab)
            endpoint.sourceAddress = "127.0.0.6"
            let controlChannel = try await endpoint.connectWebSocket(
                pathAndQuery: control.path,
                headers: control.headers.map { (name: $0.0, value: $0.1) },
                eventLoop: MultiThreadedEventLoopGroup.singleton.next()
            ) { _ in [OpeningFrameWriter(json: ["TokenValue": "not-a-control-token", "AgentVersion": "3.3"])] }

            for channel in refusedHere + violations + [garbage, unsigned, nowhere, controlChannel] {
                #expect(await GatewayAttackTests.closes(channel, within: 5), "a refused connection was kept")
            }

            // 127.0.0.7, after authentication: the attacker's own session (a new one: the first has failed its
            // handshake by now), opened with its real token, then every kind of hostile SSM message towards
            // the agent.
            let own = try SessionGrant(json: try await lab.ssm.call("StartSession", request))
            let (_, _, ownPath) = try #require(HTTPSEndpoint.parse(url: own.streamURL))
            let hostile = try await Self.upgraded(lab, from: "127.0.0.7", path: ownPath)
            try await hostile.writeAndFlush(Self.frame(.text, Self.opening(token: own.tokenValue))).get()
            let frames = HostileFrames.make(towardsAgent: true, seed: seed)
            for (index, payload) in frames.enumerated() {
                hostile.write(Self.frame(.binary, payload), promise: nil)
                if index % 50 == 49 { try await hostile.writeAndFlush(ByteBuffer()).get() }
            }
            try await hostile.writeAndFlush(ByteBuffer()).get()
            print("HostileInputWalkTests: \(frames.count) hostile SSM frames sent after authentication")

            // Meanwhile and after: the legitimate tunnel and API work, and the agent stays online.
            #expect(try await parallelEchoes(port: localPort, count: 4, baseSize: 65536, step: 1) == 4)
            #expect(await GatewayAttackTests.legitimateCallWorks(lab))
            #expect(await GatewayAttackTests.closes(silent, within: 15), "a silent data channel was kept")
            #expect(lab.agent.process.isRunning, "the agent died")
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(own.sessionID)])
            let status = try await EndToEndTests.historyStatus(lab, own.sessionID, waitingFor: "Terminated")
            #expect(status == "Terminated")
            hostile.close(promise: nil)
            #expect(try await parallelEchoes(port: localPort, count: 4, baseSize: 65536, step: 1) == 4)
            let after = GatewayAttackTests.residentMegabytes(lab)
            print("HostileInputWalkTests: gateway RSS \(before) -> \(after) MiB")
            #expect(!MemoryBound.applies || after - before < 64, "the gateway grew by \(after - before) MiB")

            // /metrics: each refusal under its type, exactly.
            let text = try await GatewayLimitsTests.metrics(lab)
            func refusals(_ type: String) -> Int {
                GatewayLimitsTests.counter(text, "jumpgate_refusals_total", type: type)
            }
            #expect(refusals("DataChannelRefused") == 3 + 300, "\(text)")
            #expect(refusals("WebSocketProtocolError") == 3, "\(text)")
            #expect(refusals("DoesNotExistException") == 1, "\(text)")
            #expect(refusals("OpeningFrameTimeout") == 1, "\(text)")
            #expect(refusals("HTTPParseError") == 1, "\(text)")
            #expect(refusals("MissingAuthenticationTokenException") == 1, "\(text)")
            #expect(refusals("ControlChannelRefused") == 1, "\(text)")

            // The agent's refusals of the hostile session's messages (its garbage and broken headers, the
            // message types a client never sends) reach /metrics with its uploads. It reports as it refuses,
            // so an early report can hold the garbage (the first 200 frames) but not yet the misdirected types
            // that follow 42 MB of frames far ahead: wait for both.
            var agentText = text
            func agentRefusals(_ type: String) -> Int {
                GatewayLimitsTests.counter(agentText, "jumpgate_agent_refusals_total", type: type)
            }
            try await ConnectionRecordsTests.eventually("the agent's refusals in /metrics: \(agentText)") {
                agentText = try await GatewayLimitsTests.metrics(lab)
                return agentRefusals("InvalidMessage") >= 200 && agentRefusals("UnexpectedMessage") >= 5
            }
            // The agent logs them as one summary line for the session (its interval is an hour here, so the
            // line comes at SIGTERM), never one line per message.
            lab.agent.signal(SIGTERM)
            _ = try lab.agent.waitForExit()
            let agentLines = lab.agent.standardError.split(separator: "\n").filter {
                $0.contains("refused session messages")
            }
            #expect(agentLines.count == 1, "\(agentLines)")
            #expect(agentLines.first?.contains(own.sessionID) == true, "\(agentLines)")
            #expect(agentLines.first?.contains("InvalidMessage=") == true, "\(agentLines)")
            // Its count is what it reported (at SIGTERM it sends what it had not): nothing lost, nothing twice.
            let final = try await GatewayLimitsTests.metrics(lab)
            let reported = SessionRefusal.allCases.map {
                GatewayLimitsTests.counter(final, "jumpgate_agent_refusals_total", type: $0.rawValue)
            }.reduce(0, +)
            let tokens = agentLines.first?.split(separator: " ").map(String.init) ?? []
            #expect(reported > 0 && tokens.contains("count=\(reported)"), "reported \(reported): \(agentLines)")

            // The log: one summary line per attacking source with its count, and no line per refusal.
            lab.gateway.signal(SIGTERM)
            _ = try lab.gateway.waitForExit()
            let log = lab.gateway.standardError
            let lines = log.split(separator: "\n").filter { $0.contains("refused requests") }
            for (source, count) in [
                ("127.0.0.2", 3), ("127.0.0.3", 3), ("127.0.0.4", 300), ("127.0.0.5", 1), ("127.0.0.6", 4),
            ] {
                let fromSource = lines.filter { $0.contains("source=\(source)") }
                #expect(fromSource.count == 1, "\(source): \(lines)")
                #expect(fromSource.first?.contains("count=\(count)") == true, "\(source): \(lines)")
            }
            #expect(
                !lines.contains { $0.contains("source=127.0.0.7") },
                "an authenticated client was refused: \(lines.filter { $0.contains("source=127.0.0.7") })"
            )
            #expect(!log.contains("channel refused"), "refusals are summed up, not logged one by one")
            #expect(!log.contains("not-a-control-token") && !log.contains(own.tokenValue), "a token reached the log")
        }
    }

    @Test("the agent's summary of what a session's client sent it refused reaches the audit trail, on the session")
    func agentRefusalsAudited() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--refusal-summary-interval", "1"]) { lab, echoPort in
            let request: JSONValue = [
                "Target": .string(lab.instanceID), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                "Parameters": ["host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")]],
            ]
            let grant = try SessionGrant(json: try await lab.ssm.call("StartSession", request))
            let (_, _, path) = try #require(HTTPSEndpoint.parse(url: grant.streamURL))
            let hostile = try await Self.upgraded(lab, from: "127.0.0.7", path: path)
            defer { hostile.close(promise: nil) }
            try await hostile.writeAndFlush(Self.frame(.text, Self.opening(token: grant.tokenValue))).get()
            // Seven frames that are not SSM messages, and three message types a client never sends.
            for length in 1...7 {
                hostile.write(Self.frame(.binary, ByteBuffer(repeating: 0x5A, count: length)), promise: nil)
            }
            for type in [MessageType.agentJob, .agentTaskComplete, .interactiveShell] {
                let message = SSMMessage(
                    messageType: type,
                    createdDate: 1_700_000_000_000,
                    payload: ByteBuffer(string: "x")
                )
                hostile.write(Self.frame(.binary, message.encoded()), promise: nil)
            }
            try await hostile.writeAndFlush(ByteBuffer()).get()

            var refused: [JSONValue] = []
            try await ConnectionRecordsTests.eventually("the agent's refusal summary in the audit trail") {
                let answer = try await lab.ssm.call(
                    "ListAuditEvents",
                    ["SessionId": .string(grant.sessionID)],
                    api: "JumpgateAdmin"
                )
                refused = (answer["Events"]?.arrayValue ?? []).filter {
                    $0["eventName"]?.stringValue == "SessionMessagesRefused"
                }
                let total = refused.compactMap { $0["serviceEventDetails"]?["count"]?.int64Value }.reduce(0, +)
                return total >= 10
            }
            let details = refused.compactMap { $0["serviceEventDetails"] }
            let total = details.compactMap { $0["count"]?.int64Value }.reduce(0, +)
            let invalid = details.compactMap { $0["refusalTypes"]?["InvalidMessage"]?.int64Value }.reduce(0, +)
            let unexpected = details.compactMap { $0["refusalTypes"]?["UnexpectedMessage"]?.int64Value }.reduce(0, +)
            #expect(total == 10 && invalid == 7 && unexpected == 3, "\(refused)")
            #expect(details.allSatisfy { $0["instanceId"]?.stringValue == lab.instanceID }, "\(refused)")
            #expect(
                refused.allSatisfy { $0["userIdentity"]?["userName"]?.stringValue != nil },
                "the record names the session's owner: \(refused)"
            )
            let text = try await GatewayLimitsTests.metrics(lab)
            #expect(GatewayLimitsTests.counter(text, "jumpgate_agent_refusals_total", type: "InvalidMessage") == 7)
            #expect(GatewayLimitsTests.counter(text, "jumpgate_agent_refusals_total", type: "UnexpectedMessage") == 3)
        }
    }
}
