import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import Testing

/// `--format json` on every command that talks to a gateway, checked for the shapes docs/CLIENT.md
/// documents: field names, types, ISO 8601 dates, `host:port` peers.
@Suite("JSON output: the shapes docs/CLIENT.md documents", .serialized)
struct JSONOutputTests {
    /// `2026-12-02T16:35:43Z` or with milliseconds.
    static func isISO8601(_ value: JSONValue?) -> Bool {
        guard let text = value?.stringValue else { return false }
        return text.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$"#, options: .regularExpression) != nil
    }

    static func json(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue {
        try JSONValue(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("forward: ready, accepted, closed and ended events, each with event, time and sessionId")
    func forwardEvents() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "[::1]:0:127.0.0.1:\(echoPort)", "--format", "json",
                    "--endpoint-url", lab.url, "--ca-file", lab.caFile, "--exec",
                    "python3 -c \"import os, socket; s = socket.create_connection(('::1', int(os.environ['JUMPGATE_PORT_1']))); s.sendall(b'hi'); assert s.recv(2) == b'hi'\"",
                ],
                environment: lab.environment
            )
            defer { forward.stop() }
            #expect(try forward.waitForExit(timeout: 30) == 0)
            forward.waitForOutputEnd()
            let events = try forward.output.map { try Self.json($0) }
            let names = events.compactMap { $0["event"]?.stringValue }
            #expect(names.first == "ready" && names.last == "ended", "\(names)")
            #expect(names.contains("accepted") && names.contains("closed"), "\(names)")
            for event in events {
                #expect(Self.isISO8601(event["time"]), "\(event.serialized())")
                #expect(event["sessionId"]?.stringValue?.isEmpty == false, "\(event.serialized())")
            }
            let ready = try #require(events.first)
            #expect(ready["localAddress"]?.stringValue == "::1")
            #expect((ready["localPort"]?.int64Value ?? 0) > 0)
            #expect(ready["target"]?.stringValue == lab.instanceID)
            #expect(ready["host"]?.stringValue == "127.0.0.1")
            #expect(ready["port"]?.int64Value == Int64(echoPort))
            #expect(ready["idleTimeoutSeconds"]?.int64Value == 1200)
            let accepted = try #require(events.first { $0["event"]?.stringValue == "accepted" })
            let peer = accepted["peer"]?.stringValue ?? ""
            #expect(peer.range(of: #"^\[::1\]:\d+$"#, options: .regularExpression) != nil, "peer \(peer)")
            let ended = try #require(events.last)
            #expect(ended["by"]?.stringValue == "user")
            #expect(ended["exitStatus"]?.int64Value == 0)
            #expect(ended["reason"]?.stringValue?.isEmpty == false)
        }
    }

    @Test("sessions list, show and terminate; start-session's events; ended by the other side is exit 2")
    func sessions() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let flags = ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
            let client = try ChildProcess(
                "start-session",
                [
                    "start-session", "--target", lab.instanceID, "--document-name",
                    "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
                    "host=127.0.0.1,portNumber=\(echoPort),localPortNumber=0", "--format", "json",
                ] + flags,
                environment: lab.environment
            )
            defer { client.stop() }
            let ready = try Self.json(try client.waitForLine { $0.contains(#""event":"ready""#) })
            let sessionID = try #require(ready["sessionId"]?.stringValue)
            #expect((ready["localPort"]?.int64Value ?? 0) > 0)
            #expect(ready["port"]?.int64Value == Int64(echoPort))
            #expect(Self.isISO8601(ready["time"]))

            var (status, output, errors) = try runJumpgate(
                ["sessions", "list", "--format", "json"] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            let listed = try #require(try Self.json(output)["Sessions"]?.arrayValue?.first)
            #expect(listed["SessionId"]?.stringValue == sessionID)
            #expect(listed["Target"]?.stringValue == lab.instanceID)
            #expect(listed["Status"]?.stringValue == "Connected")
            #expect(listed["JumpgateDestination"]?.stringValue == "127.0.0.1:\(echoPort)")
            #expect(Self.isISO8601(listed["StartDate"]))
            #expect(listed["EndDate"] == nil)
            #expect(listed["JumpgateBytesToTarget"]?.int64Value != nil)

            (status, output, errors) = try runJumpgate(
                ["sessions", "terminate", sessionID, "--format", "json"] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            #expect(try Self.json(output)["Terminated"] == .array([.string(sessionID)]))
            // The client is told: an ended event, by the remote side, exit status 2.
            #expect(try client.waitForExit(timeout: 20) == 2)
            client.waitForOutputEnd()
            let ended = try Self.json(try #require(client.output.last))
            #expect(ended["event"]?.stringValue == "ended")
            #expect(ended["by"]?.stringValue == "remote")
            #expect(ended["exitStatus"]?.int64Value == 2)

            (status, output, errors) = try runJumpgate(
                ["sessions", "show", sessionID, "--format", "json"] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            let shown = try #require(try Self.json(output)["Session"])
            #expect(shown["Status"]?.stringValue == "Terminated")
            #expect(Self.isISO8601(shown["EndDate"]))
            #expect(shown["Details"]?.stringValue?.contains("terminated") == true)
            (status, output, errors) = try runJumpgate(
                ["sessions", "show", sessionID] + flags,
                environment: lab.environment
            )
            #expect(status == 0)
            #expect(output.contains("Destination:   127.0.0.1:\(echoPort)"))
            #expect(output.contains("Duration:"))
            (status, output, errors) = try runJumpgate(
                ["sessions", "list", "--history"] + flags,
                environment: lab.environment
            )
            #expect(output.hasPrefix("SESSION ID"))
            #expect(output.contains("ENDED") && output.contains("DURATION") && output.contains("REASON"))
            (status, output, errors) = try runJumpgate(
                ["sessions", "show", "nope"] + flags,
                environment: lab.environment
            )
            #expect(status == 1)
            #expect(errors.contains("No session nope on this gateway"))
        }
    }

    @Test("create-activation, agent register, instances list and deregister; DefaultInstanceName names the agent")
    func instances() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let flags = ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
            var (status, output, errors) = try runJumpgate(
                [
                    "admin", "create-activation", "--default-instance-name", "jump-7", "--expiration-date", "2h",
                    "--format", "json",
                ] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            let activation = try Self.json(output)
            let id = try #require(activation["ActivationId"]?.stringValue)
            let code = try #require(activation["ActivationCode"]?.stringValue)
            (status, output, errors) = try runJumpgate(
                [
                    "agent", "register", "--activation-id", id, "--activation-code", code, "--state-dir",
                    lab.directory + "/agent-7", "--format", "json",
                ] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            #expect(errors.contains("Warning: no --allow given"))
            let registered = try Self.json(output)
            let instanceID = try #require(registered["InstanceId"]?.stringValue)
            #expect(registered["Allow"] == .array([]))

            (status, output, errors) = try runJumpgate(
                ["instances", "list", "--format", "json"] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            let list = try #require(try Self.json(output)["InstanceInformationList"]?.arrayValue)
            let online = try #require(list.first { $0["InstanceId"]?.stringValue == lab.instanceID })
            #expect(Self.isISO8601(online["LastPingDateTime"]))
            #expect(Self.isISO8601(online["RegistrationDate"]))
            let new = try #require(list.first { $0["InstanceId"]?.stringValue == instanceID })
            #expect(new["Name"]?.stringValue == "jump-7")
            #expect(new["LastPingDateTime"] == nil)
            (status, output, errors) = try runJumpgate(["instances", "list"] + flags, environment: lab.environment)
            let row = try #require(output.split(separator: "\n").first { $0.hasPrefix(instanceID) })
            #expect(row.contains("NeverConnected") && row.contains("never"))

            (status, output, errors) = try runJumpgate(
                ["instances", "deregister", instanceID, "--format", "json"] + flags,
                environment: lab.environment
            )
            #expect(status == 0, "\(errors)")
            #expect(try Self.json(output)["Deregistered"] == .array([.string(instanceID)]))
            let after = try await lab.ssm.call("DescribeInstanceInformation", [:])
            #expect(
                after["InstanceInformationList"]?.arrayValue?.contains { $0["InstanceId"]?.stringValue == instanceID }
                    == false
            )

            // The gateway refuses an expiry in the past, as AWS does (the CLI refuses it before sending), and
            // a number past Int64's range (converting 1e300 trapped: one request stopped the gateway).
            let expirations: [JSONValue] = [
                .integer(1_000_000), .integer(WallClock.nowSeconds() + 31 * 86400), .double(1e300), .double(-1e300),
            ]
            for expiration in expirations {
                do {
                    _ = try await lab.ssm.call("CreateActivation", ["IamRole": "R", "ExpirationDate": expiration])
                    Issue.record("the gateway accepted ExpirationDate \(expiration)")
                } catch let error as ClientError {
                    #expect(error.awsErrorType == "ValidationException", "\(error)")
                }
            }
            for key in ["StartTime", "EndTime"] {
                do {
                    _ = try await lab.ssm.call("ListAuditEvents", [key: .double(9.3e18)], api: "JumpgateAdmin")
                    Issue.record("the gateway accepted \(key) 9.3e18")
                } catch let error as ClientError {
                    #expect(error.awsErrorType == "ValidationException", "\(error)")
                }
            }
            // A fractional timestamp in range is still one (the AWS CLI sends them so).
            _ = try await lab.ssm.call("ListAuditEvents", ["StartTime": .double(1_700_000_000.5)], api: "JumpgateAdmin")
            #expect(lab.gateway.process.isRunning)
            (status, output, errors) = try runJumpgate(
                ["admin", "create-activation", "--expiration-date", "31d"] + flags,
                environment: lab.environment
            )
            #expect(status == 64)
            #expect(errors.contains("at most 30 days from now"))
        }
    }

    @Test("server --format json: the ready line, and DATA_DIR/aws.config for the AWS tools")
    func serverReady() async throws {
        let directory = NSTemporaryDirectory() + "jumpgate-ready-" + MessageID.random().description
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gateway = try ChildProcess(
            "gateway",
            ["server", "--data-dir", directory, "--listen", "127.0.0.1:0", "--format", "json"]
        )
        defer { gateway.stop() }
        let ready = try Self.json(try gateway.waitForLine { $0.hasPrefix("{") })
        let url = try #require(ready["url"]?.stringValue)
        #expect(ready["pid"]?.int64Value == Int64(gateway.process.processIdentifier))
        #expect(ready["profile"]?.stringValue == "jumpgate-admin")
        #expect(ready["caFile"]?.stringValue == directory + "/tls/ca.pem")
        #expect(ready["credentialsFile"]?.stringValue == directory + "/admin.credentials")
        let configFile = try #require(ready["configFile"]?.stringValue)
        let config = try String(contentsOfFile: configFile, encoding: .utf8)
        #expect(config.contains("[profile jumpgate-admin]\nregion = us-east-1\nendpoint_url = \(url)\n"))
        #expect(config.contains("ca_bundle = \(directory)/tls/ca.pem"))
        // The profile alone (no --endpoint-url, --ca-file or region) reaches the gateway.
        let (status, output, errors) = try runJumpgate(
            ["sessions", "list", "--format", "json"],
            environment: [
                "AWS_CONFIG_FILE": configFile, "AWS_SHARED_CREDENTIALS_FILE": directory + "/admin.credentials",
                "AWS_PROFILE": "jumpgate-admin", "AWS_CA_BUNDLE": "", "AWS_ENDPOINT_URL_SSM": "",
                "AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "",
            ]
        )
        #expect(status == 0, "\(errors)")
        #expect(try Self.json(output) == ["Sessions": []])
    }
}
