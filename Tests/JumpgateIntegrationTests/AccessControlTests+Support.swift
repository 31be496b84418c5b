import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// The negative matrix's tools: clients for users' keys, refusals with their AWS error, audit lookups.
extension AccessControlTests {
    /// A client signing with the given key.
    static func client(_ lab: EndToEndTests.Lab, _ key: (String, String)) throws -> SSMClient {
        try SSMClient(
            configuration: ClientConfiguration.resolve(
                profile: nil,
                region: "us-east-1",
                endpointURL: lab.url,
                caFile: lab.caFile,
                environment: ["AWS_ACCESS_KEY_ID": key.0, "AWS_SECRET_ACCESS_KEY": key.1, "HOME": lab.directory]
            )
        )
    }

    static func admin(_ lab: EndToEndTests.Lab, _ operation: String, _ input: JSONValue = [:]) async throws -> JSONValue
    {
        try await lab.ssm.call(operation, input, api: "JumpgateAdmin")
    }

    /// A user with a key and the named policies attached; returns the key.
    static func user(_ lab: EndToEndTests.Lab, _ name: String, policies: [String]) async throws -> (String, String) {
        _ = try await Self.admin(lab, "CreateUser", ["UserName": .string(name)])
        for policy in policies {
            _ = try await Self.admin(lab, "AttachPolicy", ["UserName": .string(name), "PolicyName": .string(policy)])
        }
        let key = try await Self.admin(lab, "CreateAccessKey", ["UserName": .string(name)])["AccessKey"]
        return (try #require(key?["AccessKeyId"]?.stringValue), try #require(key?["SecretAccessKey"]?.stringValue))
    }

    /// Expects the call to fail with `type`; returns the message.
    @discardableResult
    static func refused(
        _ type: String,
        _ comment: Comment,
        _ call: () async throws -> JSONValue
    ) async -> String {
        do {
            let answer = try await call()
            Issue.record("\(comment): expected \(type), got \(answer.serialized())")
            return ""
        } catch let error as ClientError {
            #expect(error.awsErrorType == type, "\(comment): \(error.description)")
            return error.description
        } catch {
            Issue.record("\(comment): \(error)")
            return ""
        }
    }

    /// The newest audit record of `user`'s `event` (the trail is drained before the answer).
    static func lastRecord(_ lab: EndToEndTests.Lab, user: String, event: String) async throws -> JSONValue? {
        let events = try await Self.admin(
            lab,
            "ListAuditEvents",
            ["UserName": .string(user), "EventName": .string(event), "MaxResults": 1]
        )
        return events["Events"]?.arrayValue?.last
    }

    static func expectAudited(
        _ lab: EndToEndTests.Lab,
        user: String,
        event: String,
        errorCode: String?,
        _ comment: Comment
    ) async throws {
        let record = try await Self.lastRecord(lab, user: user, event: event)
        #expect(record?["eventName"]?.stringValue == event, "\(comment): no \(event) record for \(user)")
        #expect(record?["userIdentity"]?["userName"]?.stringValue == user, "\(comment)")
        #expect(record?["errorCode"]?.stringValue == errorCode, "\(comment): \(record?.serialized() ?? "nil")")
    }

    /// The newest StartSession record by dev is a refusal about `target`.
    static func expectRefusedStart(_ lab: EndToEndTests.Lab, target: String, _ comment: Comment) async throws {
        let record = try await Self.lastRecord(lab, user: "dev", event: "StartSession")
        #expect(record?["errorCode"]?.stringValue == "AccessDeniedException", "\(comment)")
        #expect(record?["requestParameters"]?["Target"]?.stringValue == target, "\(comment)")
        #expect(record?["additionalEventData"]?["decision"]?["effect"]?.stringValue == "implicitDeny", "\(comment)")
    }

    static func startSession(
        _ client: SSMClient,
        _ target: String,
        host: String = "127.0.0.1",
        port: Int,
        document: String = "AWS-StartPortForwardingSessionToRemoteHost"
    ) async throws -> JSONValue {
        var parameters: [(key: String, value: JSONValue)] = [("portNumber", [.string("\(port)")])]
        if document == "AWS-StartPortForwardingSessionToRemoteHost" { parameters.append(("host", [.string(host)])) }
        return try await client.call(
            "StartSession",
            ["Target": .string(target), "DocumentName": .string(document), "Parameters": .object(parameters)]
        )
    }

    /// The destination policy the matrix is about: the instance by tag, one document to one host and port,
    /// from loopback only, and one's own sessions.
    static func developerPolicy(echoPort: Int, sources: String = "127.0.0.0/8", ownSessions: Bool = true) -> String {
        let own = """
            ,
              {"Sid": "OwnSessions", "Effect": "Allow",
               "Action": ["ssm:DescribeSessions", "ssm:TerminateSession", "ssm:ResumeSession"],
               "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*"}
            """
        return """
            {"Version": "2012-10-17", "Statement": [
              {"Sid": "TaggedJumpServers", "Effect": "Allow", "Action": "ssm:StartSession",
               "Resource": "arn:aws:ssm:*:*:managed-instance/*",
               "Condition": {"StringEquals": {"ssm:resourceTag/Env": "lab"}, "IpAddress": {"aws:SourceIp": "\(sources)"}}},
              {"Sid": "EchoOnly", "Effect": "Allow", "Action": "ssm:StartSession",
               "Resource": "arn:aws:ssm:*::document/AWS-StartPortForwardingSessionToRemoteHost",
               "Condition": {"StringEquals": {"jumpgate:RemoteHost": ["127.0.0.1", "localhost"],
                                              "jumpgate:RemotePort": "\(echoPort)"}}}\(ownSessions ? own : "")
            ]}
            """
    }

    /// A user's first key id, from the administrator's listing.
    static func keyOf(_ lab: EndToEndTests.Lab, _ user: String) throws -> String {
        let (status, output, errors) = try runJumpgate(
            ["admin", "keys", "list", user, "--format", "json", "--endpoint-url", lab.url, "--ca-file", lab.caFile],
            environment: lab.environment
        )
        guard status == 0 else { throw HarnessError(errors) }
        let keys = try JSONValue(parsing: output)["AccessKeyMetadata"]?.arrayValue ?? []
        guard let id = keys.first?["AccessKeyId"]?.stringValue else { throw HarnessError("no key for \(user)") }
        return id
    }
}
