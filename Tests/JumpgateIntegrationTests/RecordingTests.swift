import Crypto
import Foundation
import JumpgateAgent
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// Recordings of shell sessions through real processes: the agent records what the shell's terminal
/// showed, delivers it to the gateway, which keeps it sealed; `jumpgate sessions replay` plays it to the
/// same screen, reading it is its own permission and audited, and a gateway killed mid-session loses none.
@Suite("Recordings: a shell recorded, replayed, read with permission, and kept across a gateway kill", .serialized)
struct RecordingTests {
    static func gatewayArguments(_ lab: EndToEndTests.Lab) -> [String] {
        ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
    }

    /// The recording's state in DescribeSessions, once it is complete (bounded wait: 30 s).
    static func completeRecording(_ lab: EndToEndTests.Lab, _ sessionID: String) async throws -> JSONValue? {
        for _ in 0..<300 {
            let sessions = try await lab.ssm.call(
                "DescribeSessions",
                ["State": "History", "Filters": [["key": "SessionId", "value": .string(sessionID)]]]
            )
            let recording = sessions["Sessions"]?.arrayValue?.first?["JumpgateRecording"]
            if recording?["Complete"]?.boolValue == true { return recording }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return nil
    }

    /// The session's SessionRecordingStored audit record (bounded wait: it follows the last upload).
    static func storedRecord(_ lab: EndToEndTests.Lab, _ sessionID: String) async throws -> JSONValue? {
        for _ in 0..<100 {
            let events = try await AccessControlTests.admin(
                lab,
                "ListAuditEvents",
                ["SessionId": .string(sessionID), "EventName": "SessionRecordingStored"]
            )
            if let record = events["Events"]?.arrayValue?.last { return record }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return nil
    }

    /// Sets the account's preferences (SSM-SessionManagerRunShell) to record what clients type.
    static func recordInput(_ lab: EndToEndTests.Lab) async throws {
        try await ShellSessionTests.setPreferences(lab, #"{"recordInput": true}"#)
    }

    /// A recording piece posted to the gateway as the agent does, signed with `credentials`.
    static func upload(
        _ lab: EndToEndTests.Lab,
        _ credentials: AWSCredentials,
        sessionID: String,
        offset: Int,
        final: Bool,
        _ bytes: [UInt8]
    ) async throws -> (status: Int, answer: JSONValue) {
        let endpoint = try GatewayAPITests.endpoint(lab)
        let path = "/v1/recordings/\(lab.instanceID)/\(sessionID)"
        let query = "final=\(final)&offset=\(offset)"
        var headers: [(name: String, value: String)] = [("Host", endpoint.hostHeader)]
        headers += SigV4Signer(credentials: credentials, region: "us-east-1", service: "ssmmessages")
            .signatureHeaders(
                for: SigV4Request(method: "POST", path: path, query: query, headers: headers, body: bytes),
                epochSeconds: WallClock.nowSeconds()
            )
        let response = try await endpoint.request(
            method: "POST",
            path: path + "?" + query,
            headers: headers,
            body: ByteBuffer(bytes: bytes)
        )
        return (response.status, (try? JSONValue(parsing: response.body.readableBytesView)) ?? .null)
    }

    @Test("the upload endpoint: signed by the session's instance, from where the recording ends, never past its end")
    func uploadEndpoint() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            // A shell session no client joins: recorded, with nothing delivered yet.
            let started = try await lab.ssm.call("StartSession", ["Target": .string(lab.instanceID)])
            let sessionID = try #require(started["SessionId"]?.stringValue)
            #expect(started["JumpgateRecorded"]?.stringValue == "output")
            let state = try AgentStateDirectory.load(from: lab.directory + "/agent")
            let instance = AWSCredentials(accessKeyID: state.instanceID, secretAccessKey: state.secret)
            let gap = try await Self.upload(lab, instance, sessionID: sessionID, offset: 5, final: false, [1])
            #expect(gap.status == 409 && gap.answer["Length"]?.int64Value == 0, "\(gap)")
            let piece = Array("{\"version\": 2, \"width\": 80, \"height\": 24}\n".utf8)
            let first = try await Self.upload(lab, instance, sessionID: sessionID, offset: 0, final: false, piece)
            #expect(first.status == 200 && first.answer["Length"]?.int64Value == Int64(piece.count), "\(first)")
            // The same piece again (its answer lost): 409 with the length, so the agent goes on from there.
            let resent = try await Self.upload(lab, instance, sessionID: sessionID, offset: 0, final: false, piece)
            #expect(resent.status == 409 && resent.answer["Length"]?.int64Value == Int64(piece.count))
            let end = try await Self.upload(lab, instance, sessionID: sessionID, offset: piece.count, final: true, [])
            #expect(end.status == 200 && end.answer["Complete"]?.boolValue == true, "\(end)")
            let (read, _) = try await lab.ssm.sessionRecording(sessionID)
            #expect(read == piece)
            // Neither a user's key nor a session id that is not the instance's.
            let admin = try GatewayAPITests.adminCredentials(lab)
            let user = try await Self.upload(lab, admin, sessionID: sessionID, offset: piece.count, final: true, [])
            #expect(user.status == 400 && user.answer["__type"]?.stringValue == "UnrecognizedClientException")
            let unknown = try await Self.upload(lab, instance, sessionID: "nobody-0", offset: 0, final: true, [])
            #expect(unknown.status == 404, "\(unknown)")
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
        }
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        Hex.encode(digest)
    }

    @Test(
        "a recorded shell replays to the same screen; get-recording writes the cast; reading needs its own permission and is audited; the bytes are sealed at rest"
    )
    func recordReplayRead() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            let terminal = try ShellSessionTests.terminal(lab)
            try terminal.type(ShellSessionTests.startSession(lab))
            let started = try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            let sessionID = String(started.dropFirst("Starting session with SessionId: ".count))
            try terminal.waitForLine { $0.contains("this session is recorded (its output)") }
            try terminal.type("echo ready-$((1+1))")
            try terminal.waitForLine(timeout: 30) { $0 == "ready-2" }
            // A screen drawn with escapes: cleared, bold text, UTF-8, the cursor moved.
            try terminal.type(
                "clear; printf 'sealed-%s \\033[1mbold\\033[0m caf\\303\\251\\n' $((123*1000+456)); seq 1 3; "
                    + "printf '\\033[13;31Hmoved-%s\\n' $((2+2))"
            )
            try terminal.waitForLine { $0.hasSuffix("moved-4") }
            let live = try terminal.stableScreen()
            let drawn = live.contains { $0.hasPrefix("sealed-123456 bold café") }
            #expect(drawn, "\(live)")
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            let recording = try #require(
                try await Self.completeRecording(lab, sessionID),
                "the recording never completed"
            )
            #expect(recording["Truncated"]?.boolValue == false)

            // Played in a terminal of the same size, the recording ends on the same screen.
            let replay = try ShellSessionTests.terminal(lab)
            try replay.type(
                (["jumpgate", "sessions", "replay", sessionID, "--speed", "20"] + Self.gatewayArguments(lab))
                    .joined(separator: " ") + " && read"
            )
            try replay.waitForLine(timeout: 30) { $0.hasSuffix("moved-4") }
            let replayed = try replay.stableScreen()
            #expect(
                replayed == live,
                "live:\n\(live.joined(separator: "\n"))\nreplayed:\n\(replayed.joined(separator: "\n"))"
            )

            // get-recording writes the asciicast file; its digest is the one the audit trail links to the session.
            let path = lab.directory + "/session.cast"
            let (status, _, errors) = try runJumpgate(
                ["sessions", "get-recording", sessionID, "--output", path] + Self.gatewayArguments(lab),
                environment: EndToEndTests.awsEnvironment(lab)
            )
            #expect(status == 0, "\(errors)")
            let cast = try Data(contentsOf: URL(fileURLWithPath: path))
            let playback = try AsciicastPlayback(parsing: String(decoding: cast, as: UTF8.self))
            #expect(playback.header.width == 100 && playback.header.height == 30)
            let played = playback.output.map(\.text).joined()
            let ending = playback.markers.last ?? ""
            #expect(played.contains("sealed-123456"))
            #expect(ending.contains("terminated"), "\(playback.markers)")
            let stored = try #require(try await Self.storedRecord(lab, sessionID))
            let digest = Self.hex(SHA256.hash(data: cast))
            #expect(stored["serviceEventDetails"]?["sha256"]?.stringValue == digest, "\(stored.serialized())")
            #expect(stored["serviceEventDetails"]?["bytes"]?.int64Value == Int64(cast.count))
            // Again: the file exists, so it is not replaced without --force.
            let (again, _, refusal) = try runJumpgate(
                ["sessions", "get-recording", sessionID, "--output", path] + Self.gatewayArguments(lab),
                environment: EndToEndTests.awsEnvironment(lab)
            )
            #expect(again == 1 && refusal.contains("--force"), "\(refusal)")

            // Reading is its own permission: a user without it is refused, and both reads are audited.
            let viewer = try await AccessControlTests.user(lab, "viewer", policies: [])
            let client = try AccessControlTests.client(lab, viewer)
            await AccessControlTests.refused("AccessDeniedException", "no jumpgate:GetSessionRecording") {
                try await client.call("GetSessionRecording", ["SessionId": .string(sessionID)], api: "JumpgateAdmin")
            }
            try await AccessControlTests.expectAudited(
                lab,
                user: "viewer",
                event: "GetSessionRecording",
                errorCode: "AccessDeniedException",
                "the refused read"
            )
            _ = try await AccessControlTests.admin(
                lab,
                "PutPolicy",
                [
                    "PolicyName": "recordings",
                    "PolicyDocument":
                        #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "jumpgate:GetSessionRecording", "Resource": "arn:aws:ssm:*:*:session/*"}}"#,
                ]
            )
            _ = try await AccessControlTests.admin(
                lab,
                "AttachPolicy",
                ["UserName": "viewer", "PolicyName": "recordings"]
            )
            let (readBack, _) = try await client.sessionRecording(sessionID)
            #expect(Data(readBack) == cast)
            try await AccessControlTests.expectAudited(
                lab,
                user: "viewer",
                event: "GetSessionRecording",
                errorCode: nil,
                "the read"
            )

            // Sealed at rest: the output is nowhere in the gateway's files in clear.
            let gatewayDirectory = lab.directory + "/gw"
            for file in try FileManager.default.contentsOfDirectory(atPath: gatewayDirectory) {
                guard let bytes = FileManager.default.contents(atPath: gatewayDirectory + "/" + file) else { continue }
                #expect(bytes.range(of: Data("sealed-123456".utf8)) == nil, "\(file) holds the output in clear")
            }
            // Delivered: the agent keeps no copy.
            let left = (try? FileManager.default.contentsOfDirectory(atPath: lab.directory + "/agent/recordings")) ?? []
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test(
        "a gateway killed (SIGKILL) mid-session loses nothing of the recording: before and after, once each, and the end"
    )
    func survivesGatewayKill() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            // The account's preferences ask for input too.
            try await Self.recordInput(lab)
            let terminal = try ShellSessionTests.terminal(lab)
            try terminal.type(ShellSessionTests.run(ShellSessionTests.startSession(lab), marker: "1"))
            let started = try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            let sessionID = String(started.dropFirst("Starting session with SessionId: ".count))
            try terminal.type("echo before-$((1+1))")
            try terminal.waitForLine(timeout: 30) { $0 == "before-2" }
            // Some of the recording is in the store before the kill (bounded wait: 10 s).
            var delivered: Int64 = 0
            for _ in 0..<100 where delivered == 0 {
                let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
                delivered = sessions["Sessions"]?.arrayValue?.first?["JumpgateRecording"]?["Bytes"]?.int64Value ?? 0
                if delivered == 0 { try await Task.sleep(nanoseconds: 100_000_000) }
            }
            #expect(delivered > 0)
            lab.gateway.signal(SIGKILL)
            _ = try lab.gateway.waitForExit()
            let gateway = try GatewayRestartTests.restartGateway(lab, name: "gateway-restarted")
            defer { gateway.stop() }
            // Typed while the session resumes: it reaches the shell once the data channels are back.
            try terminal.type("echo after-$((2+2))")
            try terminal.waitForLine(timeout: 60) { $0 == "after-4" }
            try terminal.type("exit 5")
            try terminal.waitForLine(timeout: 30) { $0 == "EXIT1=5" }

            let recording = try #require(
                try await Self.completeRecording(lab, sessionID),
                "the recording never completed"
            )
            #expect(recording["Truncated"]?.boolValue == false)
            let (bytes, answer) = try await lab.ssm.sessionRecording(sessionID)
            #expect(answer["Complete"]?.boolValue == true)
            let playback = try AsciicastPlayback(parsing: String(decoding: bytes, as: UTF8.self))
            // The preferences asked for input too: what was typed is there.
            #expect(playback.input.contains("echo after-$((2+2))"), "\(playback.input)")
            let text = playback.output.map(\.text).joined()
            let (befores, afters) = (
                text.components(separatedBy: "before-2").count, text.components(separatedBy: "after-4").count
            )
            #expect(befores == 2 && afters == 2, "once each: \(text)")
            let before = try #require(text.range(of: "before-2"))
            let after = try #require(text.range(of: "after-4"))
            #expect(before.upperBound <= after.lowerBound)
            let ending = playback.markers.last ?? ""
            #expect(ending.contains("exited with status 5"), "\(playback.markers)")
            let stored = try await Self.storedRecord(lab, sessionID)
            #expect(stored != nil)
        }
    }

    @Test(
        "an agent killed (SIGKILL) mid-session: the agent that starts again delivers the recording, closed with a marker"
    )
    func survivesAgentKill() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            let terminal = try ShellSessionTests.terminal(lab)
            try terminal.type(ShellSessionTests.startSession(lab))
            let started = try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            let sessionID = String(started.dropFirst("Starting session with SessionId: ".count))
            try terminal.type("echo kept-$((3*3))")
            try terminal.waitForLine(timeout: 30) { $0 == "kept-9" }
            lab.agent.signal(SIGKILL)
            _ = try lab.agent.waitForExit()
            let agent = try ChildProcess(
                "agent (restarted)",
                ["agent", "run", "--state-dir", lab.directory + "/agent", "--allow-shell"]
            )
            defer { agent.stop() }
            let recording = try #require(
                try await Self.completeRecording(lab, sessionID),
                "the recording never completed"
            )
            #expect(recording["Truncated"]?.boolValue == false)
            let (bytes, _) = try await lab.ssm.sessionRecording(sessionID)
            let playback = try AsciicastPlayback(parsing: String(decoding: bytes, as: UTF8.self))
            let text = playback.output.map(\.text).joined()
            #expect(text.contains("kept-9"), "\(text)")
            #expect(playback.input.isEmpty, "input is recorded only when a document asks")
            let ending = playback.markers.last ?? ""
            #expect(ending.contains("agent stopped before the session ended"), "\(playback.markers)")
        }
    }

    @Test("with --recordings off nothing is recorded, and asking for a recording says why there is none")
    func recordingsOff() async throws {
        try await EndToEndTests.withLab(gatewayArguments: ["--recordings", "off"], agentArguments: ["--allow-shell"]) {
            lab,
            _ in
            let terminal = try ShellSessionTests.terminal(lab)
            try terminal.type(ShellSessionTests.run(ShellSessionTests.startSession(lab), marker: "1"))
            let started = try terminal.waitForLine { $0.hasPrefix("Starting session with SessionId: ") }
            let sessionID = String(started.dropFirst("Starting session with SessionId: ".count))
            try terminal.type("echo plain-$((1+1)); exit")
            try terminal.waitForLine(timeout: 30) { $0 == "EXIT1=0" }
            let screen = try terminal.lines()
            let announced = screen.contains { $0.contains("this session is recorded") }
            #expect(!announced, "\(screen.joined(separator: "\n"))")
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "History"])
            let session = sessions["Sessions"]?.arrayValue?.first { $0["SessionId"]?.stringValue == sessionID }
            #expect(session != nil && session?["JumpgateRecording"] == nil)
            let message = await AccessControlTests.refused("DoesNotExistException", "not recorded") {
                try await AccessControlTests.admin(lab, "GetSessionRecording", ["SessionId": .string(sessionID)])
            }
            #expect(message.contains("--recordings"), "\(message)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: lab.directory + "/agent/recordings")) ?? []
            #expect(left.isEmpty)
        }
    }
}
