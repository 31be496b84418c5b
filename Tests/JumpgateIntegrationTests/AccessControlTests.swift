import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// Users, policies and the audit trail on real processes: the negative matrix (each refusal, its AWS
/// error and its audit record), and what a user's policy does allow.
@Suite("Access control: users, policies, the audit trail", .serialized)
struct AccessControlTests {
    @Test("the negative matrix: every refusal with its AWS error and its audit record; what is allowed works")
    func negativeMatrix() async throws {
        let auditLog = NSTemporaryDirectory() + "jumpgate-audit-" + MessageID.random().description + ".jsonl"
        defer { try? FileManager.default.removeItem(atPath: auditLog) }
        try await EndToEndTests.withLab(gatewayArguments: ["--audit-log", auditLog]) { lab, echoPort in
            let target = lab.instanceID
            _ = try await lab.ssm.call(
                "AddTagsToResource",
                [
                    "ResourceType": "ManagedInstance", "ResourceId": .string(target),
                    "Tags": [["Key": "Env", "Value": "lab"]],
                ]
            )
            _ = try await Self.admin(
                lab,
                "PutPolicy",
                ["PolicyName": "developer", "PolicyDocument": .string(Self.developerPolicy(echoPort: echoPort))]
            )
            _ = try await Self.admin(
                lab,
                "PutPolicy",
                [
                    "PolicyName": "remote-only",
                    "PolicyDocument": .string(Self.developerPolicy(echoPort: echoPort, sources: "10.0.0.0/8")),
                ]
            )
            _ = try await Self.admin(
                lab,
                "PutPolicy",
                [
                    "PolicyName": "start-only",
                    "PolicyDocument": .string(Self.developerPolicy(echoPort: echoPort, ownSessions: false)),
                ]
            )
            _ = try await Self.admin(
                lab,
                "PutPolicy",
                [
                    "PolicyName": "no-echo",
                    "PolicyDocument": .string(
                        """
                        {"Version": "2012-10-17", "Statement": {"Sid": "NoEcho", "Effect": "Deny", "Action": "ssm:StartSession",
                          "Resource": "*", "Condition": {"NumericEquals": {"jumpgate:RemotePort": "\(echoPort)"}}}}
                        """
                    ),
                ]
            )
            let devKey = try await Self.user(lab, "dev", policies: ["developer"])
            let dev = try Self.client(lab, devKey)
            let other = try Self.client(lab, try await Self.user(lab, "other", policies: ["developer"]))
            let nobody = try Self.client(lab, try await Self.user(lab, "nobody", policies: []))
            let denied = try Self.client(lab, try await Self.user(lab, "denied", policies: ["developer", "no-echo"]))
            let remote = try Self.client(lab, try await Self.user(lab, "remote", policies: ["remote-only"]))
            let starter = try Self.client(lab, try await Self.user(lab, "starter", policies: ["start-only"]))

            // What the policy allows works, and the session is the user's.
            let mine = try await Self.startSession(dev, target, port: echoPort)
            let mySession = try #require(mine["SessionId"]?.stringValue)
            #expect(mySession.hasPrefix("dev-"))
            try await Self.expectAudited(lab, user: "dev", event: "StartSession", errorCode: nil, "allowed start")
            let theirs = try #require(
                try await Self.startSession(other, target, port: echoPort)["SessionId"]?.stringValue
            )

            // Administrative calls by a non-administrator.
            await Self.refused("AccessDeniedException", "attach a policy to oneself") {
                try await dev.call(
                    "AttachPolicy",
                    ["UserName": "dev", "PolicyName": "developer"],
                    api: "JumpgateAdmin"
                )
            }
            try await Self.expectAudited(
                lab,
                user: "dev",
                event: "AttachPolicy",
                errorCode: "AccessDeniedException",
                "self-attach"
            )
            await Self.refused("AccessDeniedException", "a key for another user") {
                try await dev.call("CreateAccessKey", ["UserName": "other"], api: "JumpgateAdmin")
            }
            try await Self.expectAudited(
                lab,
                user: "dev",
                event: "CreateAccessKey",
                errorCode: "AccessDeniedException",
                "key"
            )

            // A user with no policy.
            await Self.refused("AccessDeniedException", "no policy") {
                try await nobody.call("DescribeSessions", ["State": "Active"])
            }
            try await Self.expectAudited(
                lab,
                user: "nobody",
                event: "DescribeSessions",
                errorCode: "AccessDeniedException",
                "none"
            )

            // An explicit deny beats the allow, and the record names it.
            let message = await Self.refused("AccessDeniedException", "explicit deny") {
                try await Self.startSession(denied, target, port: echoPort)
            }
            #expect(message.contains("explicit deny"), "\(message)")
            let deny = try await Self.lastRecord(lab, user: "denied", event: "StartSession")
            #expect(deny?["additionalEventData"]?["decision"]?["policy"]?.stringValue == "no-echo")
            #expect(deny?["additionalEventData"]?["decision"]?["statement"]?.stringValue == "NoEcho")

            // Wrong target, tag, document, host, port, source address.
            await Self.refused("AccessDeniedException", "wrong target") {
                try await Self.startSession(dev, "mi-00000000000000000", port: echoPort)
            }
            try await Self.expectRefusedStart(lab, target: "mi-00000000000000000", "wrong target")
            _ = try await lab.ssm.call(
                "AddTagsToResource",
                [
                    "ResourceType": "ManagedInstance", "ResourceId": .string(target),
                    "Tags": [["Key": "Env", "Value": "prod"]],
                ]
            )
            await Self.refused("AccessDeniedException", "wrong tag") {
                try await Self.startSession(dev, target, port: echoPort)
            }
            try await Self.expectRefusedStart(lab, target: target, "wrong tag")
            _ = try await lab.ssm.call(
                "AddTagsToResource",
                [
                    "ResourceType": "ManagedInstance", "ResourceId": .string(target),
                    "Tags": [["Key": "Env", "Value": "lab"]],
                ]
            )
            // The policy allows localhost too: only the document is wrong here.
            let wrongDocument = await Self.refused("AccessDeniedException", "wrong document") {
                try await Self.startSession(dev, target, port: echoPort, document: "AWS-StartPortForwardingSession")
            }
            #expect(wrongDocument.contains("document/AWS-StartPortForwardingSession"), "\(wrongDocument)")
            try await Self.expectRefusedStart(lab, target: target, "wrong document")
            await Self.refused("AccessDeniedException", "host outside") {
                try await Self.startSession(dev, target, host: "127.0.0.2", port: echoPort)
            }
            try await Self.expectRefusedStart(lab, target: target, "host outside")
            await Self.refused("AccessDeniedException", "port outside") {
                try await Self.startSession(dev, target, port: echoPort == 65535 ? 1 : echoPort + 1)
            }
            let outside = try await Self.lastRecord(lab, user: "dev", event: "StartSession")
            #expect(outside?["errorCode"]?.stringValue == "AccessDeniedException")
            #expect(
                outside?["requestParameters"]?["Parameters"]?["portNumber"]?.arrayValue?.first?.stringValue
                    != "\(echoPort)"
            )
            await Self.refused("AccessDeniedException", "source outside aws:SourceIp") {
                try await Self.startSession(remote, target, port: echoPort)
            }
            try await Self.expectAudited(
                lab,
                user: "remote",
                event: "StartSession",
                errorCode: "AccessDeniedException",
                "source"
            )

            // Another user's session: not listed, not terminated, not resumed; one's own is.
            let listed = try await dev.call("DescribeSessions", ["State": "Active"])["Sessions"]?.arrayValue ?? []
            #expect(listed.compactMap { $0["SessionId"]?.stringValue } == [mySession])
            await Self.refused("AccessDeniedException", "terminate another's") {
                try await dev.call("TerminateSession", ["SessionId": .string(theirs)])
            }
            try await Self.expectAudited(
                lab,
                user: "dev",
                event: "TerminateSession",
                errorCode: "AccessDeniedException",
                "end"
            )
            await Self.refused("AccessDeniedException", "resume another's") {
                try await dev.call("ResumeSession", ["SessionId": .string(theirs)])
            }
            try await Self.expectAudited(
                lab,
                user: "dev",
                event: "ResumeSession",
                errorCode: "AccessDeniedException",
                "resume"
            )
            #expect(try await dev.call("ResumeSession", ["SessionId": .string(mySession)])["TokenValue"] != nil)
            _ = try await dev.call("TerminateSession", ["SessionId": .string(mySession)])
            // An administrator may end anyone's session.
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(theirs)])
            // A session's owner may resume and end it with no policy that says so (a blip never strands
            // a user), but still cannot list it.
            let started = try #require(
                try await Self.startSession(starter, target, port: echoPort)["SessionId"]?.stringValue
            )
            #expect(try await starter.call("ResumeSession", ["SessionId": .string(started)])["TokenValue"] != nil)
            let resumed = try await Self.lastRecord(lab, user: "starter", event: "ResumeSession")
            #expect(resumed?["additionalEventData"]?["decision"]?["statement"]?.stringValue == "session owner")
            _ = try await starter.call("TerminateSession", ["SessionId": .string(started)])
            await Self.refused("AccessDeniedException", "owner without DescribeSessions") {
                try await starter.call("DescribeSessions", ["State": "History"])
            }

            // Agent credentials on the user API.
            let secret = try String(contentsOfFile: lab.directory + "/agent/instance.secret", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let agent = try Self.client(lab, (target, secret))
            await Self.refused("AccessDeniedException", "agent credentials") {
                try await agent.call("DescribeSessions", ["State": "Active"])
            }
            let byAgent = try await Self.admin(lab, "ListAuditEvents", ["EventName": "DescribeSessions"])["Events"]?
                .arrayValue
            #expect(
                byAgent?.contains {
                    $0["userIdentity"]?["accessKeyId"]?.stringValue == target
                        && $0["errorCode"]?.stringValue == "AccessDeniedException"
                } == true
            )

            // A malformed policy is refused when put, naming the part.
            let malformed = await Self.refused("MalformedPolicyDocument", "malformed policy") {
                try await Self.admin(
                    lab,
                    "PutPolicy",
                    [
                        "PolicyName": "broken",
                        "PolicyDocument":
                            #"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}"#,
                    ]
                )
            }
            #expect(malformed.contains("Action"), "\(malformed)")
            try await Self.expectAudited(
                lab,
                user: "jumpgate-admin",
                event: "PutPolicy",
                errorCode: "MalformedPolicyDocument",
                "malformed"
            )

            // Unauthenticated refusals: answered as AWS does, audited as one summary per source per minute.
            let rotatingKey = try await Self.user(lab, "rotating", policies: ["developer"])
            let second = try await Self.admin(lab, "CreateAccessKey", ["UserName": "rotating"])["AccessKey"]
            let disabled = (
                try #require(second?["AccessKeyId"]?.stringValue), try #require(second?["SecretAccessKey"]?.stringValue)
            )
            await Self.refused("LimitExceeded", "a third key") {
                try await Self.admin(lab, "CreateAccessKey", ["UserName": "rotating"])
            }
            _ = try await Self.admin(
                lab,
                "UpdateAccessKey",
                ["AccessKeyId": .string(disabled.0), "Status": "Inactive"]
            )
            _ = try await Self.admin(lab, "DeleteAccessKey", ["AccessKeyId": .string(rotatingKey.0)])
            let endpoint = try GatewayAPITests.endpoint(lab)
            let devKeyID = try Self.keyOf(lab, "dev")
            let adminKey = try GatewayAPITests.adminCredentials(lab)
            let body = Array(#"{"State":"Active"}"#.utf8)
            let unauthenticated: [(String, AWSCredentials, Int64, String)] = [
                (
                    "unknown key", AWSCredentials(accessKeyID: "AKJGUNKNOWN000000000", secretAccessKey: "x"), 0,
                    "UnrecognizedClientException"
                ),
                (
                    "disabled key", AWSCredentials(accessKeyID: disabled.0, secretAccessKey: disabled.1), 0,
                    "UnrecognizedClientException"
                ),
                (
                    "deleted key", AWSCredentials(accessKeyID: rotatingKey.0, secretAccessKey: rotatingKey.1), 0,
                    "UnrecognizedClientException"
                ),
                (
                    "wrong secret", AWSCredentials(accessKeyID: devKeyID, secretAccessKey: "wrong"), 0,
                    "InvalidSignatureException"
                ),
                ("stale signature", adminKey, -3600, "InvalidSignatureException"),
            ]
            for (name, credentials, offset, type) in unauthenticated {
                let (status, answer) = try await GatewayAPITests.call(
                    endpoint,
                    operation: "DescribeSessions",
                    body: body,
                    credentials: credentials,
                    clockOffset: offset
                )
                #expect(status == 400 && answer == type, "\(name): \(status) \(answer)")
            }

            // A user's key on the agent endpoints: the control channel's token and the connection records.
            let tokenBody = Array(#"{"MessageSchemaVersion":"1.0","RequestId":"r","ClientId":""}"#.utf8)
            let devCredentials = AWSCredentials(accessKeyID: devKey.0, secretAccessKey: devKey.1)
            for path in ["/v1/control-channel/\(target)", "/v1/connection-records/\(target)"] {
                var headers: [(name: String, value: String)] = [
                    ("Host", endpoint.hostHeader), ("Content-Type", "application/json"),
                ]
                headers += SigV4Signer(credentials: devCredentials, region: "us-east-1", service: "ssmmessages")
                    .signatureHeaders(
                        for: SigV4Request(method: "POST", path: path, headers: headers, body: tokenBody),
                        epochSeconds: WallClock.nowSeconds()
                    )
                let answer = try await endpoint.request(
                    method: "POST",
                    path: path,
                    headers: headers,
                    body: ByteBuffer(bytes: tokenBody)
                )
                #expect(
                    answer.status == 400 && String(buffer: answer.body).contains("UnrecognizedClientException"),
                    "\(path)"
                )
            }

            // Data-channel tokens: bound to their session and used once.
            let (request, response) = try await GatewayAPITests.startSession(lab, echoPort: echoPort)
            let (otherRequest, otherResponse) = try await GatewayAPITests.startSession(lab, echoPort: echoPort)
            // The other session's id with this session's token (the refused plugin then ends the other one).
            var swapped = otherResponse
            if case .object(var members) = swapped, let index = members.firstIndex(where: { $0.key == "TokenValue" }) {
                members[index].value = response["TokenValue"] ?? ""
                swapped = .object(members)
            }
            let wrongSession = try GatewayAPITests.plugin(lab, request: otherRequest, response: swapped)
            #expect(try wrongSession.waitForExit(timeout: 30) == 1)
            let first = try GatewayAPITests.plugin(lab, request: request, response: response)
            defer { first.stop() }
            _ = try first.waitForLine { $0.contains("Waiting for connections") }
            let reused = try GatewayAPITests.plugin(lab, request: request, response: response)
            #expect(try reused.waitForExit(timeout: 30) == 1)
            first.signal(SIGTERM)

            // Activations past their limit or expiry.
            let limited = try await lab.ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "RegistrationLimit": 1]
            )
            for round in 0..<2 {
                let (status, _, errors) = try runJumpgate(
                    [
                        "agent", "register", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                        "--activation-id", try #require(limited["ActivationId"]?.stringValue),
                        "--activation-code", try #require(limited["ActivationCode"]?.stringValue),
                        "--state-dir", lab.directory + "/limited-\(round)", "--allow", "127.0.0.1:1",
                    ]
                )
                #expect(status == (round == 0 ? 0 : 1), "\(errors)")
                if round == 1 { #expect(errors.contains("activation is not valid"), "\(errors)") }
            }
            let expiring = try await lab.ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "ExpirationDate": .integer(WallClock.nowSeconds() + 2)]
            )
            let expiringID = try #require(expiring["ActivationId"]?.stringValue)
            // Waits (bounded) for the expiry itself, as DescribeActivations reports it.
            for _ in 0..<60 {
                let list = try await lab.ssm.call("DescribeActivations", [:])["ActivationList"]?.arrayValue ?? []
                if list.first(where: { $0["ActivationId"]?.stringValue == expiringID })?["Expired"]?.boolValue == true {
                    break
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            let (expiredStatus, _, expiredErrors) = try runJumpgate(
                [
                    "agent", "register", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                    "--activation-id", expiringID,
                    "--activation-code", try #require(expiring["ActivationCode"]?.stringValue),
                    "--state-dir", lab.directory + "/expired", "--allow", "127.0.0.1:1",
                ]
            )
            #expect(expiredStatus == 1 && expiredErrors.contains("activation is not valid"), "\(expiredErrors)")

            // The chain is intact through the CLI.
            let (verifyStatus, verified, _) = try runJumpgate(
                ["audit", "verify", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: lab.environment
            )
            #expect(verifyStatus == 0 && verified.contains("intact"), "\(verified)")

            // The unauthenticated summaries are written when their minute ends, or at shutdown.
            lab.gateway.signal(SIGTERM)
            _ = try lab.gateway.waitForExit()
            let summaries = try String(contentsOfFile: auditLog, encoding: .utf8).split(separator: "\n")
                .compactMap { try? JSONValue(parsing: String($0)) }
                .filter {
                    $0["eventName"]?.stringValue == "UnauthenticatedRequests"
                        && $0["sourceIPAddress"]?.stringValue == "127.0.0.1"
                }
            var types: [String: Int64] = [:]
            for summary in summaries {
                for (type, count) in summary["serviceEventDetails"]?["errorTypes"]?.objectValue ?? [] {
                    types[type, default: 0] += count.int64Value ?? 0
                }
            }
            #expect(types["UnrecognizedClientException"] == 5, "\(types)")  // three keys and two agent endpoints
            #expect(types["InvalidSignatureException"] == 2, "\(types)")
            #expect(types["InvalidActivation"] == 2, "\(types)")
            #expect((types["DataChannelRefused"] ?? 0) >= 2, "\(types)")
        }
    }
}
