import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// Session documents through the AWS CLI against a real gateway and agent: the document lifecycle, and a
/// custom port-forwarding document that fixes the host and limits the port, as SSM users restrict tunnels.
@Suite("Session documents through the AWS CLI", .serialized)
struct DocumentsCLITests {
    /// Runs the AWS CLI; its exit status, its JSON answer (or nil) and its standard error.
    static func aws(_ lab: EndToEndTests.Lab, _ arguments: [String]) throws -> (Int32, JSONValue?, String) {
        let child = try ChildProcess(
            "aws \(arguments.prefix(2).joined(separator: " "))",
            arguments + ["--endpoint-url", lab.url, "--output", "json"],
            executable: "aws",
            environment: EndToEndTests.awsEnvironment(lab)
        )
        defer { child.stop() }
        let status = try child.waitForExit(timeout: 60)
        _ = child.waitForOutputEnd()
        let text = child.output.joined(separator: "\n")
        return (status, text.isEmpty ? nil : try? JSONValue(parsing: text), child.standardError)
    }

    static func tunnel(port: Int, description: String) -> String {
        JSONValue.object([
            ("schemaVersion", "1.0"), ("description", .string(description)), ("sessionType", "Port"),
            (
                "parameters",
                [
                    "portNumber": ["type": "String", "description": "The port", "allowedPattern": .string("\(port)")],
                    "localPortNumber": ["type": "String", "description": "Local port", "default": "0"],
                ]
            ),
            (
                "properties",
                [
                    "host": "127.0.0.1", "portNumber": "{{ portNumber }}", "type": "LocalPortForwarding",
                    "localPortNumber": "{{ localPortNumber }}",
                ]
            ),
        ]).serialized()
    }

    @Test(
        "create, describe, update (versions), the default version, get, list, delete; a built-in cannot be changed; StartSession enforces allowedPattern and the document's fixed host"
    )
    func lifecycle() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let file = lab.directory + "/tunnel.json"
            try Self.tunnel(port: echoPort, description: "first").write(toFile: file, atomically: true, encoding: .utf8)
            let (created, createdJSON, createdErrors) = try Self.aws(
                lab,
                [
                    "ssm", "create-document", "--name", "lab-echo", "--document-type", "Session", "--content",
                    "file://" + file,
                ]
            )
            #expect(created == 0, "\(createdErrors)")
            let description = createdJSON?["DocumentDescription"]
            #expect(description?["Name"] == "lab-echo" && description?["DocumentVersion"] == "1")
            #expect(
                description?["Parameters"]?.arrayValue?.compactMap { $0["Name"]?.stringValue }.sorted()
                    == ["localPortNumber", "portNumber"]
            )

            try Self.tunnel(port: echoPort, description: "second").write(
                toFile: file,
                atomically: true,
                encoding: .utf8
            )
            let (updated, updatedJSON, _) = try Self.aws(
                lab,
                [
                    "ssm", "update-document", "--name", "lab-echo", "--document-version", "$LATEST", "--content",
                    "file://" + file,
                ]
            )
            #expect(updated == 0)
            #expect(updatedJSON?["DocumentDescription"]?["DocumentVersion"] == "2")
            let (_, described, _) = try Self.aws(lab, ["ssm", "describe-document", "--name", "lab-echo"])
            #expect(described?["Document"]?["DefaultVersion"] == "1" && described?["Document"]?["LatestVersion"] == "2")
            #expect(
                try Self.aws(
                    lab,
                    ["ssm", "update-document-default-version", "--name", "lab-echo", "--document-version", "2"]
                ).0 == 0
            )
            let (_, current, _) = try Self.aws(lab, ["ssm", "describe-document", "--name", "lab-echo"])
            #expect(current?["Document"]?["DefaultVersion"] == "2" && current?["Document"]?["Description"] == "second")
            let (_, first, _) = try Self.aws(
                lab,
                ["ssm", "get-document", "--name", "lab-echo", "--document-version", "1"]
            )
            #expect(first?["Content"]?.stringValue?.contains("\"first\"") == true)

            let (_, mine, _) = try Self.aws(lab, ["ssm", "list-documents", "--filters", "Key=Owner,Values=Self"])
            #expect(mine?["DocumentIdentifiers"]?.arrayValue?.compactMap { $0["Name"]?.stringValue } == ["lab-echo"])
            let (_, all, _) = try Self.aws(lab, ["ssm", "list-documents"])
            #expect(all?["DocumentIdentifiers"]?.arrayValue?.contains { $0["Name"] == "AWS-StartSSHSession" } == true)

            // A built-in document is read-only.
            let (refused, _, refusedErrors) = try Self.aws(
                lab,
                ["ssm", "update-document", "--name", "AWS-StartSSHSession", "--content", "file://" + file]
            )
            #expect(refused != 0 && refusedErrors.contains("InvalidDocumentOperation"), "\(refusedErrors)")

            // StartSession: a port outside allowedPattern is refused with AWS's error, through the AWS CLI and
            // through Jumpgate's client.
            let (outside, _, outsideErrors) = try Self.aws(
                lab,
                [
                    "ssm", "start-session", "--target", lab.instanceID, "--document-name", "lab-echo", "--parameters",
                    "portNumber=22",
                ]
            )
            #expect(outside != 0)
            #expect(
                outsideErrors.contains("InvalidParameters") && outsideErrors.contains("allowed pattern"),
                "\(outsideErrors)"
            )
            let (host, _, hostErrors) = try Self.aws(
                lab,
                [
                    "ssm", "start-session", "--target", lab.instanceID, "--document-name", "lab-echo", "--parameters",
                    "portNumber=\(echoPort),host=10.0.0.1",
                ]
            )
            #expect(host != 0 && hostErrors.contains("Parameter host is not defined in lab-echo"), "\(hostErrors)")

            // Within the document's rules: the tunnel reaches the fixed host.
            let client = try ChildProcess(
                "start-session",
                [
                    "start-session", "--target", lab.instanceID, "--document-name", "lab-echo", "--parameters",
                    "portNumber=\(echoPort)", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                ],
                environment: lab.environment
            )
            defer { client.stop() }
            let line = try client.waitForLine { $0.hasPrefix("Port ") && $0.contains(" opened for sessionId ") }
            let localPort = try #require(Int(line.split(separator: " ")[1]))
            #expect(try await streamingEcho(port: localPort, total: 1 << 20) == 1 << 20)
            client.signal(SIGINT)
            #expect(try client.waitForExit() == 0)

            // Deleted: gone from the catalog and from StartSession.
            #expect(try Self.aws(lab, ["ssm", "delete-document", "--name", "lab-echo"]).0 == 0)
            let (missing, _, missingErrors) = try Self.aws(lab, ["ssm", "describe-document", "--name", "lab-echo"])
            #expect(missing != 0 && missingErrors.contains("InvalidDocument"), "\(missingErrors)")
        }
    }

    @Test(
        "a policy that names the custom document by ARN: its user may open that tunnel and no other, may not change documents, and every call is audited"
    )
    func policyByARN() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            _ = try await lab.ssm.call(
                "CreateDocument",
                [
                    "Name": "lab-echo", "DocumentType": "Session",
                    "Content": .string(Self.tunnel(port: echoPort, description: "d")),
                ]
            )
            let policy = """
                {"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": [
                    "arn:aws:ssm:us-east-1:123456789012:managed-instance/*",
                    "arn:aws:ssm:us-east-1:123456789012:document/lab-echo"]},
                  {"Effect": "Allow", "Action": ["ssm:TerminateSession", "ssm:DescribeDocument"], "Resource": "*"}]}
                """
            _ = try await AccessControlTests.admin(
                lab,
                "PutPolicy",
                ["PolicyName": "echo-only", "PolicyDocument": .string(policy)]
            )
            let key = try await AccessControlTests.user(lab, "dev", policies: ["echo-only"])
            let dev = try AccessControlTests.client(lab, key)
            let started = try await AccessControlTests.startSession(
                dev,
                lab.instanceID,
                port: echoPort,
                document: "lab-echo"
            )
            let sessionID = try #require(started["SessionId"]?.stringValue)
            _ = try await dev.call("TerminateSession", ["SessionId": .string(sessionID)])
            await AccessControlTests.refused("AccessDeniedException", "an AWS document the policy does not name") {
                try await AccessControlTests.startSession(dev, lab.instanceID, port: echoPort)
            }
            #expect(try await dev.call("DescribeDocument", ["Name": "lab-echo"])["Document"]?["Name"] == "lab-echo")
            await AccessControlTests.refused("AccessDeniedException", "changing a document needs ssm:UpdateDocument") {
                try await dev.call(
                    "UpdateDocument",
                    ["Name": "lab-echo", "Content": .string(Self.tunnel(port: 1, description: "widened"))]
                )
            }
            try await AccessControlTests.expectAudited(
                lab,
                user: "dev",
                event: "UpdateDocument",
                errorCode: "AccessDeniedException",
                "the refused update"
            )
            try await AccessControlTests.expectAudited(
                lab,
                user: "jumpgate-admin",
                event: "CreateDocument",
                errorCode: nil,
                "the creation"
            )
        }
    }

    @Test(
        "the account's preferences: SSM-SessionManagerRunShell updated through the AWS CLI sets every session's idle timeout and maximum duration"
    )
    func preferences() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let file = lab.directory + "/preferences.json"
            try """
            {"schemaVersion": "1.0", "description": "Session Manager preferences", "sessionType": "Standard_Stream",
             "inputs": {"idleSessionTimeout": "1", "maxSessionDuration": "2", "runAsEnabled": false, "s3BucketName": ""},
             "properties": {}}
            """.write(toFile: file, atomically: true, encoding: .utf8)
            let (updated, answer, errors) = try Self.aws(
                lab,
                [
                    "ssm", "update-document", "--name", "SSM-SessionManagerRunShell", "--document-version", "$LATEST",
                    "--content", "file://" + file,
                ]
            )
            #expect(updated == 0, "\(errors)")
            #expect(answer?["DocumentDescription"]?["DocumentVersion"] == "2")
            #expect(
                try Self.aws(
                    lab,
                    [
                        "ssm", "update-document-default-version", "--name", "SSM-SessionManagerRunShell",
                        "--document-version", "2",
                    ]
                ).0 == 0
            )
            let started = try await AccessControlTests.startSession(lab.ssm, lab.instanceID, port: echoPort)
            #expect(started["JumpgateIdleTimeoutSeconds"]?.int64Value == 60)
            #expect(started["JumpgateMaxSessionDurationSeconds"]?.int64Value == 120)
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": started["SessionId"] ?? ""])
        }
    }

    @Test(
        "a custom command document: the client learns from the gateway that standard output is the command's, so it holds the command's bytes only; --format json is refused and the session ended"
    )
    func customCommandDocument() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--allow-shell"]) { lab, _ in
            let content: JSONValue = [
                "schemaVersion": "1.0", "description": "The date, and nothing else",
                "sessionType": "NonInteractiveCommands",
                "properties": ["linux": ["commands": "echo custom-$((6*7))"]],
            ]
            _ = try await lab.ssm.call(
                "CreateDocument",
                ["Name": "lab-custom", "DocumentType": "Session", "Content": .string(content.serialized())]
            )
            let start =
                "jumpgate start-session --target \(lab.instanceID) --endpoint-url \(lab.url) --ca-file \(lab.caFile) "
                + "--document-name lab-custom"
            #expect(try CommandSessionTests.shell(lab, start + " > out1 2> err1; echo $? > status1") == 0)
            #expect(String(decoding: try CommandSessionTests.read(lab, "out1"), as: UTF8.self) == "custom-42\n")
            #expect(try CommandSessionTests.status(lab, "1") == "0")
            let errors = String(decoding: try CommandSessionTests.read(lab, "err1"), as: UTF8.self)
            #expect(errors.contains("Starting session with SessionId: "), "\(errors)")

            #expect(try CommandSessionTests.shell(lab, start + " --format json > out2 2> err2; echo $? > status2") == 0)
            #expect(try CommandSessionTests.status(lab, "2") == "1")
            let refused = String(decoding: try CommandSessionTests.read(lab, "err2"), as: UTF8.self)
            #expect(refused.contains("--format json cannot be used with lab-custom"), "\(refused)")
            let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(active["Sessions"]?.arrayValue?.isEmpty ?? true)
        }
    }
}
