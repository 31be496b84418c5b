import JumpgateAccess
import Testing

/// The places where an engine could let a Deny slip or an Allow widen: repeated keys, variables the
/// request lacks, escapes, ARN components, empty sets, lax numbers and dates, address spellings.
@Suite("Policy edge cases")
struct PolicyEdgeCaseTests {
    static func decide(
        _ document: String,
        _ action: String,
        _ resource: String,
        _ values: [String: [String]] = [:]
    ) throws
        -> Decision.Effect
    {
        let policy = NamedPolicy(name: "p", document: try PolicyDocument(parsing: document))
        return PolicyEvaluator.evaluate([policy], RequestContext(action: action, resource: resource, values: values))
            .effect
    }

    static func refused(_ document: String) -> String? {
        do {
            _ = try PolicyDocument(parsing: document)
            return nil
        } catch {
            return error.description
        }
    }

    @Test("a member given twice is refused at every level (a second Effect could turn a Deny into an Allow)")
    func repeatedMembers() {
        let cases = [
            #"{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#,
            #"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*", "Effect": "Allow"}}"#,
            #"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"k": "a"}, "StringEquals": {"k": "b"}}}}"#,
            #"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"k": "a", "k": "b"}}}}"#,
        ]
        for text in cases {
            #expect(Self.refused(text)?.contains("twice") == true, "\(text)")
        }
    }

    @Test("a variable the request lacks makes the statement not apply, even with NotResource or a negated operator")
    func missingVariables() throws {
        let notResource =
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:ssm:*:*:session/${aws:username}-*"}}"#
        #expect(
            try Self.decide(notResource, "ssm:TerminateSession", "arn:aws:ssm:us-east-1:1:session/bob-1")
                == .implicitDeny
        )
        #expect(
            try Self.decide(
                notResource,
                "ssm:TerminateSession",
                "arn:aws:ssm:us-east-1:1:session/bob-1",
                ["aws:username": ["alice"]]
            ) == .allowed
        )
        let negated =
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringNotEquals": {"jumpgate:RemoteHost": "${aws:username}.desk"}}}}"#
        #expect(try Self.decide(negated, "ssm:StartSession", "*", ["jumpgate:RemoteHost": ["x"]]) == .implicitDeny)
    }

    @Test("${*} stays a literal star in StringLike; a variable's value is literal too")
    func escapes() throws {
        let like =
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringLike": {"jumpgate:RemoteHost": "${aws:username}-${*}"}}}}"#
        let alice = ["aws:username": ["alice"]]
        #expect(
            try Self.decide(like, "a:b", "*", alice.merging(["jumpgate:RemoteHost": ["alice-*"]]) { $1 }) == .allowed
        )
        #expect(
            try Self.decide(like, "a:b", "*", alice.merging(["jumpgate:RemoteHost": ["alice-db"]]) { $1 })
                == .implicitDeny
        )
        let star = ["aws:username": ["*"], "jumpgate:RemoteHost": ["anyone-*"]]
        #expect(try Self.decide(like, "a:b", "*", star) == .implicitDeny)
    }

    @Test("ARNs match component by component: ArnLike's * stays in its component; a trailing * runs on")
    func arnComponents() throws {
        let arnLike =
            #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}}}}"#
        // AWS's own example: StringLike would match this, ArnLike must not.
        let crafted = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
        #expect(try Self.decide(arnLike, "a:b", "*", ["aws:SourceArn": [crafted]]) == .implicitDeny)
        #expect(
            try Self.decide(
                arnLike,
                "a:b",
                "*",
                ["aws:SourceArn": ["arn:aws:someservice:us-east-2:111122223333:finance/x"]]
            ) == .allowed
        )
        let prefix = #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*"}}"#
        #expect(try Self.decide(prefix, "a:b", "arn:aws:ssm:us-east-1:1:session/a") == .allowed)
        #expect(try Self.decide(prefix, "a:b", "arn:aws:ec2:us-east-1:1:instance/i-1") == .implicitDeny)
        let sessions = #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*:*:session/*"}}"#
        #expect(try Self.decide(sessions, "a:b", "arn:aws:ssm:us-east-1:1:document/x:session/y") == .implicitDeny)
        #expect(try Self.decide(sessions, "a:b", "*") == .implicitDeny)
    }

    @Test("Null's values are alternatives; an empty string is an empty set for the qualifiers")
    func nullAndEmpty() throws {
        let null =
            #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Null": {"k": ["false", "true"]}}}}"#
        #expect(try Self.decide(null, "a:b", "*") == .allowed)
        #expect(try Self.decide(null, "a:b", "*", ["k": ["v"]]) == .allowed)
        let all =
            #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ForAllValues:StringEquals": {"k": "v"}}}}"#
        let any =
            #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"k": ""}}}}"#
        #expect(try Self.decide(all, "a:b", "*", ["k": [""]]) == .allowed)
        #expect(try Self.decide(any, "a:b", "*", ["k": [""]]) == .implicitDeny)
    }

    @Test("refused when put: lax numbers, variables in dates, unknown Jumpgate keys, Unicode Sids, two qualifiers")
    func refusals() {
        let condition = { (block: String) in
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": \#(block)}}"#
        }
        for number in ["nan", "inf", "1e3", "0x10", "+5", "5.", ".5"] {
            #expect(
                Self.refused(condition(#"{"NumericLessThan": {"jumpgate:RemotePort": "\#(number)"}}"#)) != nil,
                "\(number)"
            )
        }
        #expect(Self.refused(condition(#"{"NumericLessThan": {"jumpgate:RemotePort": "-1.5"}}"#)) == nil)
        #expect(
            Self.refused(condition(#"{"DateLessThan": {"aws:CurrentTime": "${aws:username}"}}"#))?.contains(
                "no policy variable"
            ) == true
        )
        #expect(
            Self.refused(condition(#"{"StringEquals": {"jumpgate:RemotHost": "db"}}"#))?.contains(
                "unknown condition key"
            ) == true
        )
        #expect(Self.refused(condition(#"{"StringEquals": {"jumpgate:SessionType": "Port"}}"#)) == nil)
        #expect(Self.refused(condition(#"{"ForAnyValue:ForAllValues:StringEquals": {"k": "v"}}"#)) != nil)
        #expect(
            Self.refused(#"{"Statement": {"Sid": "Ünï", "Effect": "Allow", "Action": "*", "Resource": "*"}}"#)?
                .contains("ASCII") == true
        )
        #expect(
            Self.refused(condition(#"{"NumericLessThan": {"jumpgate:RemotePort": "low"}}"#))
                == "Statement[0].Condition: 'low' is not a valid value for NumericLessThan (jumpgate:RemotePort)"
        )
    }

    @Test("dates: days checked against their month, the W3C forms, ranges")
    func dates() {
        #expect(IAMDate.epochSeconds("2026-02-31") == nil)
        #expect(IAMDate.epochSeconds("2028-02-29") != nil)
        #expect(IAMDate.epochSeconds("2026-12") == IAMDate.epochSeconds("2026-12-01"))
        #expect(IAMDate.epochSeconds("2026") == IAMDate.epochSeconds("2026-01-01"))
        #expect(IAMDate.epochSeconds("2026-12-02T16:35Z") == IAMDate.epochSeconds("2026-12-02T16:35:00Z"))
        #expect(IAMDate.epochSeconds("2026-12-02T16:35:43.Z") == nil)
        #expect(IAMDate.epochSeconds("2026-12-02T16:35:43+25:00") == nil)
        #expect(IAMDate.epochSeconds("2026-12-02T16:35:43.1Z") == 1_796_229_343.1)
    }

    @Test("addresses in every spelling the resolver takes, and none it refuses")
    func addressSpellings() {
        #expect(HostName.normalized("0000000000000177.0.0.1") == "127.0.0.1")
        #expect(HostName.normalized("0x000000000000007f.1") == "127.0.0.1")
        #expect(HostName.normalized("::1%lo") == "::1")
        #expect(HostName.normalized("fe80::1%eth0") == "fe80::1")
        for notAnAddress in ["+127.0.0.1", "0x.0.0.1", "::+1", "1.2.3.4::", "08.0.0.1", "4294967296"] {
            #expect(HostName.addressBytes(notAnAddress) == nil, "\(notAnAddress)")
        }
        #expect(CIDRBlock("::ffff:10.0.0.0/104")?.contains([10, 1, 2, 3]) == true)
    }

    @Test("a policy's host names compare in the request's form")
    func policyHostsNormalised() throws {
        let deny =
            #"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"jumpgate:RemoteHost": ["DB.Prod.Internal.", "127.1"]}}}]}"#
        #expect(
            try Self.decide(deny, "a:b", "*", ["jumpgate:RemoteHost": [HostName.normalized("db.prod.internal")]])
                == .explicitDeny
        )
        #expect(
            try Self.decide(deny, "a:b", "*", ["jumpgate:RemoteHost": [HostName.normalized("0x7f.0.0.1")]])
                == .explicitDeny
        )
        #expect(try Self.decide(deny, "a:b", "*", ["jumpgate:RemoteHost": ["db.dev.internal"]]) == .allowed)
    }
}
