import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// `jumpgate admin users|groups|keys|policies` and `jumpgate audit list` as a user runs them: a key printed
/// as a credentials file that works, the JSON shapes docs/CLIENT.md documents, and AWS's documented
/// Session Manager policies through `policies simulate`.
@Suite("Admin CLI: users, groups, keys, policies, simulate, audit list", .serialized)
struct AdminCLITests {
    static func run(
        _ lab: EndToEndTests.Lab,
        _ arguments: [String],
        environment: [String: String]? = nil,
        status expected: Int32 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String {
        let (status, output, errors) = try runJumpgate(
            arguments + ["--endpoint-url", lab.url, "--ca-file", lab.caFile],
            environment: environment ?? lab.environment
        )
        #expect(status == expected, "\(arguments): \(errors)", sourceLocation: sourceLocation)
        return output
    }

    @Test("users, groups and keys through the CLI; a printed key is a working credentials file")
    func directory() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let created = try JSONValue(
                parsing: try Self.run(lab, ["admin", "users", "create", "dev", "--format", "json"])
            )
            #expect(created["User"]?["UserName"]?.stringValue == "dev")
            #expect(created["User"]?["UserId"]?.stringValue?.hasPrefix("AIDA") == true)
            _ = try Self.run(lab, ["admin", "groups", "create", "team"])
            _ = try Self.run(lab, ["admin", "groups", "add-user", "team", "dev"])
            // A bad name is refused with IAM's error and says what names may be.
            let (badStatus, _, badErrors) = try runJumpgate(
                ["admin", "users", "create", "has space", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: lab.environment
            )
            #expect(badStatus == 1 && badErrors.contains("ValidationError") && badErrors.contains("letters, digits"))

            // stdout is the profile and nothing else; the note is on stderr.
            let (status, profile, note) = try runJumpgate(
                ["admin", "keys", "create", "dev", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: lab.environment
            )
            #expect(status == 0 && note.contains("not shown again"))
            let lines = profile.split(separator: "\n").map(String.init)
            #expect(lines.count == 3 && lines[0] == "[dev]", "\(lines)")
            #expect(lines[1].hasPrefix("aws_access_key_id = AKJG") && lines[2].hasPrefix("aws_secret_access_key = "))
            let file = lab.directory + "/dev.credentials"
            try (profile + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            let asDev = ["AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "dev", "HOME": lab.directory]
            // The key authenticates (a policy is what is missing), through the CLI and through the AWS CLI.
            let (denied, _, deniedErrors) = try runJumpgate(
                ["sessions", "list", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: asDev
            )
            #expect(denied == 1 && deniedErrors.contains("AccessDeniedException"), "\(deniedErrors)")
            #expect(deniedErrors.contains("user/dev"), "\(deniedErrors)")

            let users = try JSONValue(parsing: try Self.run(lab, ["admin", "users", "list", "--format", "json"]))
            let dev = try #require(users["Users"]?.arrayValue?.first { $0["UserName"]?.stringValue == "dev" })
            #expect(dev["Groups"] == ["team"] && dev["AccessKeys"]?.int64Value == 1)
            #expect(JSONOutputTests.isISO8601(dev["CreateDate"]))
            let keys = try JSONValue(parsing: try Self.run(lab, ["admin", "keys", "list", "dev", "--format", "json"]))
            let key = try #require(keys["AccessKeyMetadata"]?.arrayValue?.first)
            #expect(key["Status"]?.stringValue == "Active" && JSONOutputTests.isISO8601(key["LastUsedDate"]))
            let id = try #require(key["AccessKeyId"]?.stringValue)
            _ = try Self.run(lab, ["admin", "keys", "disable", id])
            let (disabled, _, disabledErrors) = try runJumpgate(
                ["sessions", "list", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: asDev
            )
            #expect(disabled == 1 && disabledErrors.contains("UnrecognizedClientException"), "\(disabledErrors)")
            _ = try Self.run(lab, ["admin", "keys", "enable", id])
            _ = try Self.run(lab, ["admin", "keys", "create", "dev"])
            _ = try Self.run(lab, ["admin", "keys", "create", "dev"], status: 1)  // two at most
            let groups = try JSONValue(parsing: try Self.run(lab, ["admin", "groups", "list", "--format", "json"]))
            #expect(groups["Groups"]?.arrayValue?.first?["Members"] == ["dev"])
            let deleted = try JSONValue(
                parsing: try Self.run(lab, ["admin", "users", "delete", "dev", "--format", "json"])
            )
            #expect(deleted == ["deleted": ["dev"]])
            let (gone, _, goneErrors) = try runJumpgate(
                ["sessions", "list", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: asDev
            )
            #expect(gone == 1 && goneErrors.contains("UnrecognizedClientException"), "\(goneErrors)")
        }
    }

    /// AWS's documented quick-start end-user policy (its statements, with this gateway's ARNs), the
    /// administrator policy, tag-based access, and sessions limited to the user's own.
    static let endUser = """
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": ["ssm:StartSession", "ssm:SendCommand"],
           "Resource": ["arn:aws:ec2:us-east-1:123456789012:instance/mi-0123456789abcdef0",
                        "arn:aws:ssm:us-east-1:123456789012:document/SSM-SessionManagerRunShell"],
           "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}},
          {"Effect": "Allow", "Action": ["ssm:DescribeSessions", "ssm:GetConnectionStatus",
                                         "ssm:DescribeInstanceProperties", "ec2:DescribeInstances"], "Resource": "*"},
          {"Sid": "OwnSessions", "Effect": "Allow", "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
           "Resource": ["arn:aws:ssm:*:*:session/${aws:username}-*"]}
        ]}
        """
    static let administrator = """
        {"Version": "2012-10-17", "Statement": [
          {"Sid": "Sessions", "Effect": "Allow", "Action": ["ssm:StartSession", "ssm:SendCommand"],
           "Resource": ["arn:aws:ssm:*:*:document/SSM-SessionManagerRunShell", "arn:aws:ec2:*:*:instance/*"]},
          {"Effect": "Allow", "Action": ["ssm:DescribeSessions", "ssm:GetConnectionStatus",
                                         "ssm:DescribeInstanceInformation", "ssm:DescribeInstanceProperties",
                                         "ec2:DescribeInstances"], "Resource": "*"},
          {"Sid": "AnySession", "Effect": "Allow", "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
           "Resource": ["arn:aws:ssm:*:*:session/*"]}
        ]}
        """
    static let byTag = """
        {"Version": "2012-10-17", "Statement": [
          {"Sid": "Finance", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*",
           "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}}}
        ]}
        """

    @Test("AWS's documented Session Manager policies decide through 'policies simulate' as AWS says")
    func simulate() async throws {
        try await EndToEndTests.withLab { lab, _ in
            for (name, document) in [
                ("end-user", Self.endUser), ("administrator", Self.administrator), ("by-tag", Self.byTag),
            ] {
                let file = lab.directory + "/\(name).json"
                try document.write(toFile: file, atomically: true, encoding: .utf8)
                _ = try Self.run(lab, ["admin", "policies", "put", name, "--document", file])
                _ = try Self.run(lab, ["admin", "users", "create", name])
                _ = try Self.run(lab, ["admin", "policies", "attach", "--user", name, "--policy", name])
            }
            let instance = "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0"
            let other = "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-11111111111111111"
            let shell = "arn:aws:ssm:us-east-1::document/SSM-SessionManagerRunShell"
            func simulate(
                _ user: String,
                _ action: String,
                _ resource: String,
                _ context: [String] = []
            ) throws -> JSONValue {
                let (status, output, errors) = try runJumpgate(
                    [
                        "admin", "policies", "simulate", "--user", user, "--action", action, "--resource", resource,
                        "--format", "json",
                    ]
                        + context.flatMap { ["--context", $0] } + ["--endpoint-url", lab.url, "--ca-file", lab.caFile],
                    environment: lab.environment
                )
                let answer = try JSONValue(parsing: output)
                #expect(status == (answer["EvalDecision"]?.stringValue == "allowed" ? 0 : 1), "\(errors)")
                return answer
            }
            let cases: [(String, String, String, [String], String)] = [
                ("end-user", "ssm:StartSession", instance, [], "allowed"),
                ("end-user", "ssm:StartSession", shell, [], "allowed"),
                ("end-user", "ssm:StartSession", other, [], "implicitDeny"),
                ("end-user", "ssm:DescribeSessions", "*", [], "allowed"),
                (
                    "end-user", "ssm:TerminateSession", "arn:aws:ssm:us-east-1:123456789012:session/end-user-0123abc",
                    [], "allowed"
                ),
                (
                    "end-user", "ssm:TerminateSession", "arn:aws:ssm:us-east-1:123456789012:session/bob-0123abc", [],
                    "implicitDeny"
                ),
                ("end-user", "ssm:CreateActivation", "*", [], "implicitDeny"),
                ("administrator", "ssm:StartSession", other, [], "allowed"),
                (
                    "administrator", "ssm:TerminateSession", "arn:aws:ssm:us-east-1:123456789012:session/bob-0123abc",
                    [], "allowed"
                ),
                ("administrator", "jumpgate:CreateUser", "arn:aws:iam::123456789012:user/x", [], "implicitDeny"),
                ("by-tag", "ssm:StartSession", instance, ["ssm:resourceTag/Finance=WebServers"], "allowed"),
                ("by-tag", "ssm:StartSession", instance, ["ssm:resourceTag/Finance=Database"], "implicitDeny"),
                ("by-tag", "ssm:StartSession", instance, [], "implicitDeny"),
            ]
            for (user, action, resource, context, expected) in cases {
                let answer = try simulate(user, action, resource, context)
                #expect(
                    answer["EvalDecision"]?.stringValue == expected,
                    "\(user) \(action) \(resource) \(context): \(answer.serialized())"
                )
            }
            let decided = try simulate(
                "end-user",
                "ssm:ResumeSession",
                "arn:aws:ssm:us-east-1:123456789012:session/end-user-1"
            )
            #expect(
                decided["MatchedPolicy"]?.stringValue == "end-user"
                    && decided["MatchedStatement"]?.stringValue == "OwnSessions"
            )

            // A malformed document is refused with the part named; get returns the document as put.
            let broken = lab.directory + "/broken.json"
            try #"{"Version": "2012-10-17", "Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]}"#
                .write(toFile: broken, atomically: true, encoding: .utf8)
            let (status, _, errors) = try runJumpgate(
                [
                    "admin", "policies", "put", "broken", "--document", broken, "--endpoint-url", lab.url, "--ca-file",
                    lab.caFile,
                ],
                environment: lab.environment
            )
            #expect(status == 1 && errors.contains("MalformedPolicyDocument") && errors.contains("Effect"), "\(errors)")
            // A Deny whose resource holds a variable with no name would deny nothing: refused when put.
            try
                #"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "arn:aws:ssm:*:*:session/${}-*"}]}"#
                .write(toFile: broken, atomically: true, encoding: .utf8)
            let (unnamedStatus, _, unnamedErrors) = try runJumpgate(
                [
                    "admin", "policies", "put", "broken", "--document", broken, "--endpoint-url", lab.url, "--ca-file",
                    lab.caFile,
                ],
                environment: lab.environment
            )
            #expect(unnamedStatus == 1 && unnamedErrors.contains("names no key"), "\(unnamedErrors)")
            #expect(try Self.run(lab, ["admin", "policies", "get", "by-tag"]).contains("ssm:resourceTag/Finance"))
            _ = try Self.run(lab, ["admin", "policies", "delete", "by-tag"], status: 1)  // attached
            _ = try Self.run(lab, ["admin", "policies", "detach", "--user", "by-tag", "--policy", "by-tag"])
            _ = try Self.run(lab, ["admin", "policies", "delete", "by-tag"])
            let policies = try JSONValue(parsing: try Self.run(lab, ["admin", "policies", "list", "--format", "json"]))
            #expect(
                policies["Policies"]?.arrayValue?.compactMap { $0["PolicyName"]?.stringValue } == [
                    "administrator", "end-user",
                ]
            )

            // audit list --format json: one array of CloudTrail records.
            let events = try JSONValue(
                parsing: try Self.run(lab, ["audit", "list", "--event", "PutPolicy", "--format", "json"])
            )
            let records = try #require(events.arrayValue)
            #expect(records.count == 5)
            #expect(records.allSatisfy { $0["userIdentity"]?["userName"]?.stringValue == "jumpgate-admin" })
            #expect(records.filter { $0["errorCode"]?.stringValue == "MalformedPolicyDocument" }.count == 2)
            #expect(records.filter { $0["errorCode"] == nil }.count == 3)
            for field in [
                "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
                "requestParameters", "responseElements", "requestID", "eventID", "readOnly",
            ] {
                #expect(records.allSatisfy { $0[field] != nil }, "\(field)")
            }
            #expect(records.first?["userAgent"]?.stringValue?.hasPrefix("jumpgate/") == true)
            // Secrets never reach the trail: a key's secret is hidden in CreateAccessKey's response.
            _ = try Self.run(lab, ["admin", "keys", "create", "end-user"])
            let keyEvents = try JSONValue(
                parsing: try Self.run(lab, ["audit", "list", "--event", "CreateAccessKey", "--format", "json"])
            )
            let response = keyEvents.arrayValue?.last?["responseElements"]?["AccessKey"]
            #expect(response?["SecretAccessKey"]?.stringValue == "HIDDEN_DUE_TO_SECURITY_REASONS")
            #expect(response?["AccessKeyId"]?.stringValue?.hasPrefix("AKJG") == true)
        }
    }
}
