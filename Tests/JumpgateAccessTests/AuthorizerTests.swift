import JumpgateAccess
import Testing

/// The gateway's decisions as ``Authorizer`` makes them: every resource of a request must be allowed
/// (StartSession's target and document), an instance matches in its SSM and EC2 forms, AWS documents with
/// or without the account, administrators need no policy, and refusals name the resource.
@Suite("Authorizer")
struct AuthorizerTests {
    static let names = ResourceNames(region: "us-east-1", account: "123456789012")

    static func caller(
        _ texts: [(String, String)],
        name: String = "alice",
        administrator: Bool = false
    ) throws -> Caller {
        Caller(
            user: User(name: name, id: "AIDAEXAMPLE", isAdministrator: administrator, createdEpoch: 0),
            policies: try texts.map { NamedPolicy(name: $0.0, document: try PolicyDocument(parsing: $0.1)) }
        )
    }

    static func startSession(
        _ caller: Caller,
        target: String = "mi-0123456789abcdef0",
        tags: [String: String] = [:],
        document: String = "AWS-StartPortForwardingSessionToRemoteHost",
        host: String = "db.internal",
        port: Int = 5432,
        source: String = "10.1.2.3"
    ) -> Decision {
        var tagContext: [String: [String]] = [:]
        for (key, value) in tags { tagContext["ssm:resourceTag/" + key] = [value] }
        return Authorizer.decide(
            caller,
            action: "ssm:StartSession",
            resources: [
                RequestedResource(Self.names.instance(target), context: tagContext),
                RequestedResource(Self.names.document(document)),
            ],
            context: [
                "aws:username": [caller.user.name], "aws:SourceIp": [source],
                "jumpgate:RemoteHost": [HostName.normalized(host)], "jumpgate:RemotePort": ["\(port)"],
                "ssm:SessionDocumentAccessCheck": ["true"],
            ]
        )
    }

    /// AWS's "restrict access to specific managed nodes" example, with the EC2 instance form and the
    /// document named with the account (as the example writes it).
    static let specificNodes = """
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": ["ssm:StartSession"],
           "Resource": ["arn:aws:ec2:us-east-1:123456789012:instance/mi-0123456789abcdef0",
                        "arn:aws:ssm:us-east-1:123456789012:document/AWS-StartPortForwardingSessionToRemoteHost"]},
          {"Effect": "Allow", "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
           "Resource": ["arn:aws:ssm:*:*:session/${aws:username}-*"]}
        ]}
        """

    @Test("AWS's specific-nodes example: the EC2 form and the account-qualified document match")
    func specificNodes() throws {
        let alice = try Self.caller([("nodes", Self.specificNodes)])
        #expect(Self.startSession(alice).isAllowed)
        let other = Self.startSession(alice, target: "mi-00000000000000000")
        #expect(other.effect == .implicitDeny)
        #expect(other.resource == "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-00000000000000000")
        // The target is allowed but the document is not: refused, naming the document.
        let document = Self.startSession(alice, document: "AWS-StartPortForwardingSession")
        #expect(document.effect == .implicitDeny)
        #expect(document.resource == "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession")
    }

    /// AWS's tag-based example: the tag condition on the instance statement, the document in its own.
    static let byTag = """
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": ["ssm:StartSession"], "Resource": ["arn:aws:ec2:*:*:instance/*"],
           "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}}},
          {"Effect": "Allow", "Action": ["ssm:StartSession"],
           "Resource": ["arn:aws:ssm:*::document/AWS-StartPortForwardingSessionToRemoteHost"]}
        ]}
        """

    @Test("AWS's tag-based example: the instance's tag decides; the document statement needs no tag")
    func tagBased() throws {
        let alice = try Self.caller([("tags", Self.byTag)])
        #expect(Self.startSession(alice, tags: ["Finance": "WebServers"]).isAllowed)
        #expect(!Self.startSession(alice, tags: ["Finance": "Database"]).isAllowed)
        #expect(!Self.startSession(alice).isAllowed)
        // A tag condition written on the document's statement cannot hold: documents carry no tags here.
        let misplaced = try Self.caller([
            (
                "misplaced",
                """
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession",
                  "Resource": "*", "Condition": {"StringEquals": {"ssm:resourceTag/Finance": "WebServers"}}}]}
                """
            )
        ])
        let decision = Self.startSession(misplaced, tags: ["Finance": "WebServers"])
        #expect(decision.effect == .implicitDeny)
        #expect(decision.resource?.contains(":document/") == true)
    }

    /// Jumpgate's own keys: a destination policy with hosts, a CIDR and a port range, and a source range.
    static let destinations = """
        {"Version": "2012-10-17", "Statement": [
          {"Sid": "Targets", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*:*:managed-instance/*",
           "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
          {"Sid": "Postgres", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*::document/*",
           "Condition": {"IpAddress": {"jumpgate:RemoteHost": "10.20.0.0/16"},
                         "NumericGreaterThanEquals": {"jumpgate:RemotePort": "5432"},
                         "NumericLessThanEquals": {"jumpgate:RemotePort": "5439"}}},
          {"Sid": "Db", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*::document/*",
           "Condition": {"StringEquals": {"jumpgate:RemoteHost": "db.internal", "jumpgate:RemotePort": "3306"}}}
        ]}
        """

    @Test("destinations: host names normalised, address ranges, port ranges, the source address")
    func destinations() throws {
        let alice = try Self.caller([("dest", Self.destinations)])
        #expect(Self.startSession(alice, host: "DB.Internal.", port: 3306).isAllowed)
        #expect(!Self.startSession(alice, host: "db.internal", port: 3307).isAllowed)
        #expect(Self.startSession(alice, host: "10.20.1.2", port: 5432).isAllowed)
        #expect(Self.startSession(alice, host: "10.20.1.2", port: 5439).isAllowed)
        #expect(!Self.startSession(alice, host: "10.20.1.2", port: 5440).isAllowed)
        #expect(!Self.startSession(alice, host: "10.21.1.2", port: 5432).isAllowed)
        // Another spelling of an address inside the range is the same address.
        #expect(Self.startSession(alice, host: "::ffff:10.20.1.2", port: 5432).isAllowed)
        // IpAddress cannot match a name: a name that resolves into the range is not allowed by it.
        #expect(!Self.startSession(alice, host: "pg.internal", port: 5432).isAllowed)
        // From outside aws:SourceIp: refused, naming the target.
        let outside = Self.startSession(alice, host: "db.internal", port: 3306, source: "192.0.2.1")
        #expect(outside.effect == .implicitDeny)
        #expect(outside.resource?.contains("managed-instance/") == true)
    }

    @Test("an explicit deny on either resource, in either form, wins")
    func denyWins() throws {
        let alice = try Self.caller([
            (
                "all",
                #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}}"#
            ),
            (
                "no-node",
                """
                {"Version": "2012-10-17", "Statement": {"Sid": "NotThatOne", "Effect": "Deny", "Action": "ssm:StartSession",
                  "Resource": "arn:aws:ec2:*:*:instance/mi-0123456789abcdef0"}}
                """
            ),
        ])
        let denied = Self.startSession(alice)
        #expect(denied.effect == .explicitDeny)
        #expect(denied.policy == "no-node" && denied.statement == "NotThatOne")
        #expect(Self.startSession(alice, target: "mi-11111111111111111").isAllowed)
    }

    @Test("administrators need no policy; others with none are refused; list calls need some Allow")
    func administrators() throws {
        let admin = try Self.caller([], name: "root", administrator: true)
        #expect(Self.startSession(admin) == .administrator)
        let nobody = try Self.caller([])
        #expect(Self.startSession(nobody).effect == .implicitDeny)
        #expect(!Authorizer.mayEverAllow(nobody, action: "ssm:DescribeSessions"))
        #expect(Authorizer.mayEverAllow(admin, action: "jumpgate:ListUsers"))
        let own = try Self.caller([("own", Self.specificNodes)])
        #expect(Authorizer.mayEverAllow(own, action: "ssm:ResumeSession"))
        #expect(!Authorizer.mayEverAllow(own, action: "ssm:DescribeSessions"))
        // A Deny statement never makes a call possible.
        let denyOnly = try Self.caller([
            ("deny", #"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#)
        ])
        #expect(!Authorizer.mayEverAllow(denyOnly, action: "ssm:DescribeSessions"))
    }

    @Test("AWS's own-sessions example: terminate and resume one's own sessions only")
    func ownSessions() throws {
        let alice = try Self.caller([("own", Self.specificNodes)])
        func decide(_ action: String, _ id: String) -> Decision {
            Authorizer.decide(
                alice,
                action: action,
                resources: [RequestedResource([Self.names.session(id)])],
                context: ["aws:username": ["alice"]]
            )
        }
        #expect(decide("ssm:TerminateSession", "alice-0123456789abcdef0").isAllowed)
        #expect(decide("ssm:ResumeSession", "alice-0123456789abcdef0").isAllowed)
        #expect(!decide("ssm:TerminateSession", "bob-0123456789abcdef0").isAllowed)
        // A user whose name is a prefix of another's: "alice-" does not cover "alicejones-".
        #expect(!decide("ssm:TerminateSession", "alicejones-0123456789abcdef0").isAllowed)
    }

    @Test("AccessDenied messages say who, what, on which resource and why")
    func messages() {
        let implicit = Authorizer.deniedMessage(
            user: "alice",
            account: "123456789012",
            action: "ssm:StartSession",
            resource: "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-1",
            decision: Decision(effect: .implicitDeny, policy: nil, statement: nil)
        )
        #expect(
            implicit.hasPrefix(
                "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: ssm:StartSession"
            )
        )
        #expect(implicit.contains("no identity-based policy allows"))
        let explicit = Authorizer.deniedMessage(
            user: "alice",
            account: "123456789012",
            action: "ssm:StartSession",
            resource: "*",
            decision: Decision(effect: .explicitDeny, policy: "p", statement: "S")
        )
        #expect(explicit.contains("explicit deny") && explicit.contains("(p, S)"))
    }
}

extension AuthorizerTests {
    @Test("a resource's equivalent names: instances in both forms, AWS documents with and without the account")
    func equivalents() {
        let names = Self.names
        #expect(
            names.equivalents(of: "arn:aws:ec2:eu-west-1:111122223333:instance/mi-1")
                == [
                    "arn:aws:ssm:eu-west-1:111122223333:managed-instance/mi-1",
                    "arn:aws:ec2:eu-west-1:111122223333:instance/mi-1",
                ]
        )
        #expect(names.equivalents(of: "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-1").count == 2)
        #expect(
            names.equivalents(of: "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession")
                == [
                    "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession",
                    "arn:aws:ssm:us-east-1:123456789012:document/AWS-StartPortForwardingSession",
                ]
        )
        #expect(
            names.equivalents(of: "arn:aws:ssm:us-east-1:123456789012:session/dev-1") == [
                "arn:aws:ssm:us-east-1:123456789012:session/dev-1"
            ]
        )
        #expect(names.equivalents(of: "*") == ["*"])
        #expect(names.equivalents(of: "arn:aws:ssm") == ["arn:aws:ssm"])
    }
}

extension AuthorizerTests {
    @Test("NotResource excludes a resource under any of its names (no way round through the other form)")
    func notResourceAcrossForms() throws {
        let alice = try Self.caller([
            (
                "all-but",
                """
                {"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "Action": "ssm:StartSession",
                   "NotResource": ["arn:aws:ec2:*:*:instance/mi-0123456789abcdef0", "arn:aws:ssm:*::document/*"]},
                  {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*::document/*"}]}
                """
            )
        ])
        // The instance excluded in its EC2 form is excluded in its SSM form too.
        #expect(!Self.startSession(alice).isAllowed)
        #expect(Self.startSession(alice, target: "mi-11111111111111111").isAllowed)
        let denyAllBut = try Self.caller([
            (
                "all",
                #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}}"#
            ),
            (
                "guard",
                """
                {"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "ssm:StartSession",
                  "NotResource": ["arn:aws:ssm:*:*:managed-instance/*", "arn:aws:ssm:*::document/AWS-StartPortForwardingSessionToRemoteHost"]}}
                """
            ),
        ])
        // A Deny with NotResource spares what it names, under either name.
        #expect(Self.startSession(denyAllBut).isAllowed)
        #expect(Self.startSession(denyAllBut, document: "AWS-StartSSHSession").effect == .explicitDeny)
    }
}
