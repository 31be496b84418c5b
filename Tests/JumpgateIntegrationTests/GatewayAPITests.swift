import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// The gateway's API and channel endpoints driven with real SigV4 signatures, from Swift and from botocore,
/// the AWS CLI against it, and what happens when an agent dies or another agent reaches for a session.
@Suite("Gateway API: signatures, rejections, the AWS CLI, agents", .serialized)
struct GatewayAPITests {
    static func adminCredentials(_ lab: EndToEndTests.Lab) throws -> AWSCredentials {
        let text = try String(
            contentsOfFile: try #require(lab.environment["AWS_SHARED_CREDENTIALS_FILE"]),
            encoding: .utf8
        )
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        return AWSCredentials(
            accessKeyID: try #require(values["aws_access_key_id"]),
            secretAccessKey: try #require(values["aws_secret_access_key"])
        )
    }

    static func endpoint(_ lab: EndToEndTests.Lab) throws -> HTTPSEndpoint {
        HTTPSEndpoint(
            host: "127.0.0.1",
            port: lab.gatewayPort,
            sslContext: try JumpgateTLS.clientContext(caFile: lab.caFile),
            serverHostname: JumpgateTLS.serverHostname(for: "127.0.0.1")
        )
    }

    /// One API call signed by Jumpgate's own signer; returns status and the error type (empty on success).
    static func call(
        _ endpoint: HTTPSEndpoint,
        operation: String,
        body: [UInt8],
        credentials: AWSCredentials,
        clockOffset: Int64 = 0
    ) async throws -> (status: Int, type: String) {
        var headers: [(name: String, value: String)] = [
            ("Host", endpoint.hostHeader), ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "AmazonSSM.\(operation)"),
        ]
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "ssm")
        headers += signer.signatureHeaders(
            for: SigV4Request(method: "POST", path: "/", headers: headers, body: body),
            epochSeconds: WallClock.nowSeconds() + clockOffset
        )
        let response = try await endpoint.request(
            method: "POST",
            path: "/",
            headers: headers,
            body: ByteBuffer(bytes: body)
        )
        let json = try? JSONValue(parsing: response.body.readableBytesView)
        return (response.status, json?["__type"]?.stringValue ?? "")
    }

    @Test("Swift-signed bad requests get AWS's errors, concurrently with valid calls that all succeed")
    func swiftSignedRejections() async throws {
        try await EndToEndTests.withLab(allow: ["127.0.0.1:1"]) { lab, _ in
            let endpoint = try Self.endpoint(lab)
            let good = try Self.adminCredentials(lab)
            let valid = Array(#"{"State":"Active"}"#.utf8)
            let cases: [(String, String, [UInt8], AWSCredentials, Int64, Int, String)] = [
                (
                    "wrong key", "DescribeSessions", valid,
                    AWSCredentials(accessKeyID: "AKJGNOPE", secretAccessKey: "x"), 0, 400,
                    "UnrecognizedClientException"
                ),
                (
                    "bad signature", "DescribeSessions", valid,
                    AWSCredentials(accessKeyID: good.accessKeyID, secretAccessKey: good.secretAccessKey + "x"), 0, 400,
                    "InvalidSignatureException"
                ),
                ("stale date", "DescribeSessions", valid, good, -600, 400, "InvalidSignatureException"),
                (
                    "malformed JSON", "DescribeSessions", Array(#"{"State":"#.utf8), good, 0, 400,
                    "SerializationException"
                ),
                ("unknown operation", "Nope", Array("{}".utf8), good, 0, 400, "UnknownOperationException"),
                (
                    "oversized body", "DescribeSessions", [UInt8](repeating: 32, count: 2 << 20), good, 0, 413,
                    "RequestEntityTooLargeException"
                ),
            ]
            try await withThrowingTaskGroup(of: (String, Int, String, Int, String).self) { group in
                for (name, operation, body, credentials, offset, status, type) in cases {
                    group.addTask {
                        let got = try await Self.call(
                            endpoint,
                            operation: operation,
                            body: body,
                            credentials: credentials,
                            clockOffset: offset
                        )
                        return (name, got.status, got.type, status, type)
                    }
                }
                for index in 0..<12 {
                    group.addTask {
                        let got = try await Self.call(
                            endpoint,
                            operation: "DescribeSessions",
                            body: valid,
                            credentials: good
                        )
                        return ("valid \(index)", got.status, got.type, 200, "")
                    }
                }
                for try await (name, status, type, wantedStatus, wantedType) in group {
                    #expect(status == wantedStatus, "\(name)")
                    #expect(type == wantedType, "\(name)")
                }
            }
        }
    }

    @Test("botocore-signed bad requests get AWS's errors and do not disturb the next call")
    func botocoreRejections() async throws {
        try await EndToEndTests.withLab(allow: ["127.0.0.1:1"]) { lab, _ in
            let credentials = try Self.adminCredentials(lab)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/testing/api_rejections.py")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [
                "python3", script.path, lab.url, lab.caFile, credentials.accessKeyID, credentials.secretAccessKey,
            ]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let results = try JSONValue(parsing: [UInt8](data))
            let expected: [(String, Int64, String, String)] = [
                ("wrong_key", 400, "UnrecognizedClientException", "security token"),
                ("bad_signature", 400, "InvalidSignatureException", "does not match"),
                ("stale_date", 400, "InvalidSignatureException", "Signature expired"),
                ("future_date", 400, "InvalidSignatureException", "Signature expired"),
                ("malformed_json", 400, "SerializationException", "not valid JSON"),
                ("not_an_object", 400, "SerializationException", "JSON object"),
                ("unknown_operation", 400, "UnknownOperationException", "NoSuchOperation"),
                ("oversized_body", 413, "RequestEntityTooLargeException", "larger than"),
                ("bad_parameter", 400, "InvalidDocument", "AWS-RunShellScript"),
            ]
            for (name, status, type, words) in expected {
                let result = results[name]
                #expect(result?["status"]?.int64Value == status, "\(name)")
                #expect(result?["type"]?.stringValue == type, "\(name)")
                #expect(
                    result?["message"]?.stringValue?.contains(words) == true,
                    "\(name): \(String(describing: result))"
                )
                #expect(results[name + "/then_valid"]?["status"]?.int64Value == 200, "\(name) then a valid call")
            }
        }
    }

    @Test("the AWS CLI: create-activation, describe-instance-information, describe-sessions, terminate-session")
    func awsCLIOperations() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--log-level", "debug"]) { lab, echoPort in
            var environment = lab.environment
            environment["AWS_CA_BUNDLE"] = lab.caFile
            environment["AWS_DEFAULT_REGION"] = "us-east-1"
            func aws(_ arguments: [String]) throws -> JSONValue {
                let child = try ChildProcess(
                    "aws \(arguments.prefix(2).joined(separator: " "))",
                    arguments + ["--endpoint-url", lab.url, "--output", "json"],
                    executable: "aws",
                    environment: environment
                )
                let status = try child.waitForExit(timeout: 60)
                Thread.sleep(forTimeInterval: 0.1)
                #expect(status == 0, "\(arguments): \(child.standardError)")
                let text = child.output.joined(separator: "\n")
                return text.isEmpty ? [:] : try JSONValue(parsing: text)
            }
            let activation = try aws(["ssm", "create-activation", "--iam-role", "SSMServiceRole"])
            #expect(activation["ActivationId"]?.stringValue?.count == 36)
            #expect(activation["ActivationCode"]?.stringValue?.count == 20)
            let instances = try aws(["ssm", "describe-instance-information"])
            let instance = instances["InstanceInformationList"]?.arrayValue?.first
            #expect(instance?["InstanceId"]?.stringValue == lab.instanceID)
            #expect(instance?["PingStatus"]?.stringValue == "Online")
            #expect(instance?["Name"]?.stringValue == "e2e-jump")

            let (client, _, sessionID) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let active = try aws(["ssm", "describe-sessions", "--state", "Active"])
            #expect(active["Sessions"]?.arrayValue?.map { $0["SessionId"]?.stringValue } == [sessionID])
            let terminated = try aws(["ssm", "terminate-session", "--session-id", sessionID])
            #expect(terminated["SessionId"]?.stringValue == sessionID)
            #expect(try client.waitForExit() == 2, "terminated from the API: exit status 2")
            #expect(try await EndToEndTests.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
            let history = try aws(["ssm", "describe-sessions", "--state", "History"])
            #expect(history["Sessions"]?.arrayValue?.contains { $0["SessionId"]?.stringValue == sessionID } == true)
            // Filters, as the AWS CLI sends them.
            let filtered = try aws([
                "ssm", "describe-sessions", "--state", "History", "--filters", "key=Status,value=Terminated",
                "key=Target,value=\(lab.instanceID)",
            ])
            #expect(filtered["Sessions"]?.arrayValue?.map { $0["SessionId"]?.stringValue } == [sessionID])
            #expect(filtered["Sessions"]?.arrayValue?.first?["Details"]?.stringValue?.contains("terminated") == true)
            let none = try aws([
                "ssm", "describe-sessions", "--state", "History", "--filters", "key=Owner,value=someone-else",
            ])
            #expect(none["Sessions"]?.arrayValue?.isEmpty == true)
            // The agent's agent_task_complete for the session was acknowledged by the gateway.
            #expect(lab.agent.waitForStandardError(containing: "agent_task_complete acknowledged"))
            #expect(!lab.agent.standardError.contains("not acknowledged; sending again"))
        }
    }

    @Test("DescribeSessions: filters by SessionId, Target, Status and date, pages with MaxResults/NextToken")
    func describeSessionsFilters() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            var ids: [String] = []
            var clients: [ChildProcess] = []
            defer { for client in clients { client.stop() } }
            for _ in 0..<3 {
                let (client, _, sessionID) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
                clients.append(client)
                ids.append(sessionID)
            }
            func describe(_ input: JSONValue) async throws -> (ids: [String], next: String?) {
                let result = try await lab.ssm.call("DescribeSessions", input)
                return (
                    result["Sessions"]?.arrayValue?.compactMap { $0["SessionId"]?.stringValue } ?? [],
                    result["NextToken"]?.stringValue
                )
            }
            #expect(try await describe(["State": "Active"]).ids == ids)
            #expect(
                try await describe(["State": "Active", "Filters": [["key": "SessionId", "value": .string(ids[1])]]]).ids
                    == [ids[1]]
            )
            #expect(
                try await describe([
                    "State": "Active", "Filters": [["key": "Target", "value": "mi-00000000000000000"]],
                ])
                .ids.isEmpty
            )
            #expect(
                try await describe([
                    "State": "Active", "Filters": [["key": "InvokedAfter", "value": "2000-01-01T00:00:00Z"]],
                ])
                .ids == ids
            )
            #expect(
                try await describe([
                    "State": "Active", "Filters": [["key": "InvokedBefore", "value": "2000-01-01T00:00:00Z"]],
                ]).ids.isEmpty
            )
            let first = try await describe(["State": "Active", "MaxResults": 2])
            #expect(first.ids == Array(ids.prefix(2)))
            let second = try await describe([
                "State": "Active", "MaxResults": 2, "NextToken": .string(first.next ?? ""),
            ])
            #expect(second.ids == [ids[2]])
            #expect(second.next == nil)
            await #expect(throws: (any Error).self) {
                _ = try await describe(["State": "Active", "Filters": [["key": "Colour", "value": "blue"]]])
            }
        }
    }

    /// StartSession to the echo target, signed by the lab's admin; returns the request and the response the
    /// AWS CLI would hand the plugin.
    static func startSession(_ lab: EndToEndTests.Lab, echoPort: Int) async throws -> (JSONValue, JSONValue) {
        let request: JSONValue = [
            "Target": .string(lab.instanceID), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
            "Parameters": [
                "host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")], "localPortNumber": ["0"],
            ],
        ]
        return (request, try await lab.ssm.call("StartSession", request))
    }

    /// The session-manager-plugin as the AWS CLI runs it (argv contract of spec §2.1), trusting the lab's CA.
    static func plugin(
        _ lab: EndToEndTests.Lab,
        request: JSONValue,
        response: JSONValue,
        environment extra: [String: String] = [:]
    ) throws -> ChildProcess {
        var environment = lab.environment.merging(extra) { _, new in new }
        environment["AWS_CA_BUNDLE"] = lab.caFile
        return try ChildProcess(
            "session-manager-plugin",
            [response.serialized(), "us-east-1", "StartSession", "jumpgate-admin", request.serialized(), lab.url],
            executable: ChildProcess.productsDirectory.appendingPathComponent("session-manager-plugin").path,
            environment: environment
        )
    }

    @Test("the plugin given an expired data-channel token says so and exits non-zero (the official one exits 0)")
    func expiredToken() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (request, response) = try await Self.startSession(lab, echoPort: echoPort)
            let sessionID = try #require(response["SessionId"]?.stringValue)
            // The session ends before the plugin uses its token: the token opens nothing, and says why.
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            let plugin = try Self.plugin(lab, request: request, response: response)
            defer { plugin.stop() }
            #expect(try plugin.waitForExit(timeout: 30) == 1)
            try await Task.sleep(nanoseconds: 100_000_000)  // let the output readers drain
            let text = plugin.output.joined(separator: "\n")
            #expect(
                text.contains(
                    "Cannot perform start session: The gateway refused the data channel: the session has ended: Session terminated by jumpgate-admin."
                ),
                "\(text)"
            )
        }
    }

    @Test("no secret and no token appears in any log, even at trace level")
    func secretsStayOutOfLogs() async throws {
        try await EndToEndTests.withLab(
            gatewayArguments: ["--log-level", "trace"],
            agentArguments: ["--log-level", "trace"]
        ) { lab, echoPort in
            let (request, response) = try await Self.startSession(lab, echoPort: echoPort)
            let token = try #require(response["TokenValue"]?.stringValue)
            let plugin = try Self.plugin(
                lab,
                request: request,
                response: response,
                environment: ["JUMPGATE_LOG_LEVEL": "trace"]
            )
            defer { plugin.stop() }
            let line = try plugin.waitForLine { $0.hasPrefix("Port ") && $0.contains(" opened for sessionId ") }
            let port = try #require(Int(line.split(separator: " ")[1]))
            #expect(try await parallelEchoes(port: port, count: 2, baseSize: 10_000, step: 1) == 2)
            // A resume mints another token: it must stay out of the logs too.
            let resumed = try await lab.ssm.call("ResumeSession", ["SessionId": response["SessionId"]!])
            let resumedToken = try #require(resumed["TokenValue"]?.stringValue)
            plugin.signal(SIGINT)
            _ = try plugin.waitForExit()
            try await Task.sleep(nanoseconds: 200_000_000)
            let adminSecret = try Self.adminCredentials(lab).secretAccessKey
            let instanceSecret = try String(contentsOfFile: lab.directory + "/agent/instance.secret", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let logs = [
                ("gateway", lab.gateway.standardError), ("agent", lab.agent.standardError),
                ("plugin", plugin.standardError),
            ]
            #expect(lab.gateway.standardError.contains(" debug "), "the gateway logged verbosely")
            for (name, log) in logs {
                for (what, secret) in [
                    ("admin secret", adminSecret), ("instance secret", instanceSecret), ("session token", token),
                    ("resume token", resumedToken),
                ] {
                    #expect(!log.contains(secret), "\(what) in the \(name) log")
                }
            }
        }
    }

    @Test("a killed agent is ConnectionLost within seconds and StartSession to it fails with TargetNotConnected")
    func killedAgent() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            lab.agent.signal(SIGKILL)
            _ = try lab.agent.waitForExit()
            #expect(
                try await GatewayRestartTests.pingStatus(lab, waitingFor: "ConnectionLost", seconds: 10)
                    == "ConnectionLost"
            )
            let error = await #expect(throws: (any Error).self) {
                _ = try await lab.ssm.call(
                    "StartSession",
                    [
                        "Target": .string(lab.instanceID), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                        "Parameters": ["host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")]],
                    ]
                )
            }
            #expect("\(String(describing: error))".contains("(TargetNotConnected)"))
        }
    }

    @Test("another registered agent cannot take a session that targets someone else")
    func otherAgentCannotAttach() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            // A second agent, registered with its own activation.
            let activation = try await lab.ssm.call("CreateActivation", ["IamRole": "SSMServiceRole"])
            let (status, output, errors) = try runJumpgate([
                "agent", "register", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                "--activation-id", try #require(activation["ActivationId"]?.stringValue),
                "--activation-code", try #require(activation["ActivationCode"]?.stringValue),
                "--state-dir", lab.directory + "/intruder", "--allow", "127.0.0.1:*",
            ])
            #expect(status == 0, "\(errors)")
            let intruderID = output.trimmingCharacters(in: .whitespacesAndNewlines)
            let intruderSecret = try String(
                contentsOfFile: lab.directory + "/intruder/instance.secret",
                encoding: .utf8
            )
            .trimmingCharacters(in: .whitespacesAndNewlines)

            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            let endpoint = try Self.endpoint(lab)
            let signer = SigV4Signer(
                credentials: AWSCredentials(accessKeyID: intruderID, secretAccessKey: intruderSecret),
                region: "us-east-1",
                service: "ssmmessages"
            )
            let path = "/v1/data-channel/\(sessionID)"
            let body = Array(#"{"MessageSchemaVersion":"1.0","RequestId":"r","ClientId":""}"#.utf8)
            var headers: [(name: String, value: String)] = [
                ("Host", endpoint.hostHeader), ("Content-Type", "application/json"),
            ]
            headers += signer.signatureHeaders(
                for: SigV4Request(method: "POST", path: path, headers: headers, body: body),
                epochSeconds: WallClock.nowSeconds()
            )
            let response = try await endpoint.request(
                method: "POST",
                path: path,
                headers: headers,
                body: ByteBuffer(bytes: body)
            )
            #expect(response.status == 403)
            #expect(String(buffer: response.body).contains("AccessDenied"))
            // The session is untouched.
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1000, step: 1) == 2)
        }
    }
}
