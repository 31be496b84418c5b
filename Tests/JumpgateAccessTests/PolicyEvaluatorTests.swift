import JumpgateAccess
import PropertyBased
import Testing

/// Evaluation as IAM does it, on pure code: AWS's documented Session Manager policies (the same
/// statements), explicit deny, implicit deny, policy variables, and the deciding statement.
@Suite("PolicyEvaluator")
struct PolicyEvaluatorTests {
    static let account = "123456789012"
    static func instance(_ id: String) -> String { "arn:aws:ssm:us-east-1:\(account):managed-instance/\(id)" }
    static func document(_ name: String) -> String { "arn:aws:ssm:us-east-1::document/\(name)" }
    static func session(_ id: String) -> String { "arn:aws:ssm:us-east-1:\(account):session/\(id)" }

    static func policy(_ name: String, _ text: String) throws -> NamedPolicy {
        NamedPolicy(name: name, document: try PolicyDocument(parsing: text))
    }

    static func decide(
        _ policies: [NamedPolicy],
        _ action: String,
        _ resource: String,
        _ values: [String: [String]] = [:]
    ) -> Decision {
        PolicyEvaluator.evaluate(policies, RequestContext(action: action, resource: resource, values: values))
    }

    /// The quick-start end-user policy's statements: start sessions on one instance with one document,
    /// see sessions and instances, end and resume only one's own sessions.
    static let endUser = """
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": ["ssm:StartSession"],
           "Resource": ["arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0",
                        "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSessionToRemoteHost"],
           "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}},
          {"Effect": "Allow", "Action": ["ssm:DescribeSessions", "ssm:GetConnectionStatus",
                                         "ssm:DescribeInstanceInformation"], "Resource": "*"},
          {"Sid": "OwnSessions", "Effect": "Allow", "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
           "Resource": ["arn:aws:ssm:*:*:session/${aws:username}-*"]}
        ]}
        """

    @Test("the quick-start end-user policy allows and denies what AWS's documentation says")
    func endUserPolicy() throws {
        let policies = [try Self.policy("end-user", Self.endUser)]
        let me: [String: [String]] = ["aws:username": ["alice"], "ssm:SessionDocumentAccessCheck": ["true"]]
        #expect(Self.decide(policies, "ssm:StartSession", Self.instance("mi-0123456789abcdef0"), me).isAllowed)
        #expect(
            Self.decide(policies, "ssm:StartSession", Self.document("AWS-StartPortForwardingSessionToRemoteHost"), me)
                .isAllowed
        )
        // Another instance, another document: no statement allows them.
        #expect(
            Self.decide(policies, "ssm:StartSession", Self.instance("mi-00000000000000000"), me).effect == .implicitDeny
        )
        #expect(
            Self.decide(policies, "ssm:StartSession", Self.document("AWS-StartSSHSession"), me).effect == .implicitDeny
        )
        // Actions are compared without regard to case.
        #expect(Self.decide(policies, "SSM:describesessions", "*", me).isAllowed)
        // Own sessions only, through ${aws:username}.
        let own = Self.decide(policies, "ssm:TerminateSession", Self.session("alice-0a1b2c3d4e5f60718"), me)
        #expect(own == Decision(effect: .allowed, policy: "end-user", statement: "OwnSessions"))
        #expect(!Self.decide(policies, "ssm:TerminateSession", Self.session("bob-0a1b2c3d4e5f60718"), me).isAllowed)
        // No user name in the request: the variable has no value, the resource matches nothing.
        #expect(!Self.decide(policies, "ssm:ResumeSession", Self.session("alice-0a1b"), [:]).isAllowed)
        // Not an action the policy names.
        #expect(!Self.decide(policies, "ssm:CreateActivation", "*", me).isAllowed)
    }

    @Test("tag-based access: StartSession only on instances whose tag matches")
    func tagBased() throws {
        let policies = [
            try Self.policy(
                "by-tag",
                """
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession",
                  "Resource": "arn:aws:ssm:*:*:managed-instance/*",
                  "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}}}]}
                """
            )
        ]
        let target = Self.instance("mi-0123456789abcdef0")
        #expect(
            Self.decide(policies, "ssm:StartSession", target, ["ssm:resourceTag/Finance": ["WebServers"]]).isAllowed
        )
        #expect(!Self.decide(policies, "ssm:StartSession", target, ["ssm:resourceTag/Finance": ["Database"]]).isAllowed)
        #expect(!Self.decide(policies, "ssm:StartSession", target, [:]).isAllowed)
        // Context keys compare without regard to case.
        #expect(
            Self.decide(policies, "ssm:StartSession", target, ["SSM:RESOURCETAG/Finance": ["WebServers"]]).isAllowed
        )
    }

    @Test("explicit deny beats an allow; the decision names the deny")
    func explicitDeny() throws {
        let policies = [
            try Self.policy(
                "admin",
                #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#
            ),
            try Self.policy(
                "no-prod-db",
                """
                {"Version": "2012-10-17", "Statement": [{"Sid": "NoProdPostgres", "Effect": "Deny",
                  "Action": "ssm:StartSession", "Resource": "*",
                  "Condition": {"StringEquals": {"jumpgate:RemotePort": ["5432"]},
                                "StringLike": {"jumpgate:RemoteHost": "*.prod.internal"}}}]}
                """
            ),
        ]
        let denied = Self.decide(
            policies,
            "ssm:StartSession",
            Self.instance("mi-1"),
            ["jumpgate:RemoteHost": ["db.prod.internal"], "jumpgate:RemotePort": ["5432"]]
        )
        #expect(denied == Decision(effect: .explicitDeny, policy: "no-prod-db", statement: "NoProdPostgres"))
        // Both conditions must hold for the deny: another port is allowed by the admin policy.
        let allowed = Self.decide(
            policies,
            "ssm:StartSession",
            Self.instance("mi-1"),
            ["jumpgate:RemoteHost": ["db.prod.internal"], "jumpgate:RemotePort": ["3306"]]
        )
        #expect(allowed == Decision(effect: .allowed, policy: "admin", statement: "Statement[0]"))
        #expect(Self.decide([], "ssm:StartSession", "*").effect == .implicitDeny)
    }

    @Test("NotAction and NotResource")
    func negatedElements() throws {
        let policies = [
            try Self.policy(
                "p",
                """
                {"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "NotAction": "ssm:Create*", "NotResource": "arn:aws:ssm:*:*:document/Secret*"}]}
                """
            )
        ]
        #expect(Self.decide(policies, "ssm:StartSession", Self.instance("mi-1")).isAllowed)
        #expect(!Self.decide(policies, "ssm:CreateActivation", "*").isAllowed)
        #expect(!Self.decide(policies, "ssm:StartSession", "arn:aws:ssm:us-east-1:1:document/SecretDoc").isAllowed)
    }

    /// Found by FuzzPolicy (Fuzz/Regressions/FuzzPolicy/empty-variable): `${}` trapped the evaluator, so a
    /// stored policy holding it would have stopped the gateway at every request it was evaluated for.
    @Test("a variable with no name (${}, ${ }) has no value: the statement does not apply, nothing traps")
    func emptyVariable() throws {
        for variable in ["${}", "${ }", "${,'x'}"] {
            let allow = try Self.policy(
                "a",
                #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "arn:aws:ssm:*:*:session/"#
                    + variable + #"-*"}}"#
            )
            let decision = Self.decide(
                [allow],
                "ssm:TerminateSession",
                Self.session("alice-1"),
                ["aws:username": ["alice"]]
            )
            #expect(decision.effect == .implicitDeny, "\(variable)")
            let condition = try Self.policy(
                "c",
                #"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"aws:username": ""#
                    + variable + #""}}}}"#
            )
            #expect(
                Self.decide([condition], "ssm:StartSession", "*", ["aws:username": ["alice"]]).effect == .implicitDeny
            )
            // Such a document still loads (a stored one must), but putting it is refused: a Deny written with
            // it would deny nothing, silently.
            #expect(allow.document.unnamedVariableProblem?.contains("names no key") == true, "\(variable)")
            #expect(condition.document.unnamedVariableProblem?.hasPrefix("Statement[0].Condition") == true)
        }
        // Named variables, escapes, a default, and the 2008 version (no variables) are not refused.
        for text in [
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*:*:session/${aws:username}-${*}${?}${$}"}}"#,
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*:*:session/${jumpgate:Tag, 'none'}"}}"#,
            #"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*:*:session/${}"}}"#,
        ] {
            #expect(try Self.policy("ok", text).document.unnamedVariableProblem == nil, "\(text)")
        }
    }

    @Test("policy variables: only with Version 2012-10-17; ${*} is a literal star; a default when absent")
    func variables() throws {
        let modern = try Self.policy(
            "m",
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "arn:aws:ssm:*:*:session/${aws:username}-${*}"}}"#
        )
        let old = try Self.policy(
            "o",
            #"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*"}}"#
        )
        let user = ["aws:username": ["alice"]]
        #expect(Self.decide([modern], "ssm:TerminateSession", Self.session("alice-*"), user).isAllowed)
        #expect(!Self.decide([modern], "ssm:TerminateSession", Self.session("alice-123"), user).isAllowed)
        #expect(!Self.decide([old], "ssm:TerminateSession", Self.session("alice-123"), user).isAllowed)
        #expect(Self.decide([old], "ssm:TerminateSession", Self.session("${aws:username}-1"), user).isAllowed)
        let fallback = try Self.policy(
            "d",
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*", "Condition": {"StringEquals": {"jumpgate:RemoteHost": "${aws:username, 'nobody'}.desk.internal"}}}}"#
        )
        #expect(
            Self.decide([fallback], "ssm:StartSession", "*", ["jumpgate:RemoteHost": ["nobody.desk.internal"]])
                .isAllowed
        )
        #expect(
            Self.decide(
                [fallback],
                "ssm:StartSession",
                "*",
                ["jumpgate:RemoteHost": ["alice.desk.internal"], "aws:username": ["alice"]]
            )
            .isAllowed
        )
    }

    @Test("property: an applicable Deny always wins, whatever the Allows")
    func denyAlwaysWins() async throws {
        let actions = ["ssm:StartSession", "ssm:TerminateSession", "ssm:Describe*", "ssm:*", "*", "ec2:Run*"]
        let resources = ["*", "arn:aws:ssm:*:*:managed-instance/*", "arn:aws:ssm:*:*:session/a-*", "arn:aws:ssm:*"]
        let conditions = [
            "", #", "Condition": {"StringEquals": {"k": "v"}}"#, #", "Condition": {"StringNotEquals": {"k": "v"}}"#,
            #", "Condition": {"NumericLessThan": {"n": "5"}}"#, #", "Condition": {"Null": {"k": "true"}}"#,
            #", "Condition": {"ForAllValues:StringLike": {"k": ["v*", "w"]}}"#,
        ]
        // A statement is a number: effect, Action or NotAction, Resource or NotResource, the action, the
        // resource and a condition, each picked from the lists above.
        let kinds = 8 * actions.count * resources.count * conditions.count
        func statement(_ code: Int) -> String {
            var rest = code
            func pick(_ count: Int) -> Int {
                defer { rest /= count }
                return rest % count
            }
            let deny = pick(2) == 1
            let notAction = pick(2) == 1
            let notResource = pick(2) == 1
            let action = actions[pick(actions.count)]
            let resource = resources[pick(resources.count)]
            let condition = conditions[pick(conditions.count)]
            return
                #"{"Effect": "\#(deny ? "Deny" : "Allow")", "\#(notAction ? "NotAction" : "Action")": "\#(action)", "\#(notResource ? "NotResource" : "Resource")": "\#(resource)"\#(condition)}"#
        }
        let contexts: [[String: [String]]] = [
            [:], ["k": ["v"]], ["k": ["w"], "n": ["3"]], ["k": ["v1", "x"], "n": ["7"]],
        ]
        let requests = [
            ("ssm:StartSession", "arn:aws:ssm:us-east-1:1:managed-instance/mi-1"),
            ("ssm:TerminateSession", "arn:aws:ssm:us-east-1:1:session/a-1"),
            ("ssm:DescribeSessions", "*"), ("ec2:RunInstances", "arn:aws:ec2:x:1:instance/i"),
        ]
        await propertyCheck(
            input: Gen.int(in: 0...(kinds - 1)).array(of: 1...8),
            Gen.int(in: 0...(requests.count * contexts.count - 1))
        ) { codes, which in
            let text = #"{"Version": "2012-10-17", "Statement": [\#(codes.map(statement).joined(separator: ","))]}"#
            let document = try PolicyDocument(parsing: text)
            let (action, resource) = requests[which % requests.count]
            let request = RequestContext(action: action, resource: resource, values: contexts[which / requests.count])
            let decision = PolicyEvaluator.evaluate([NamedPolicy(name: "p", document: document)], request)
            // What a Deny statement alone decides, and what an Allow alone decides.
            let denies = document.statements.filter { $0.effect == .deny }.contains { statement in
                var only = document
                only.statements = [statement]
                return PolicyEvaluator.evaluate([NamedPolicy(name: "d", document: only)], request).effect
                    == .explicitDeny
            }
            if denies {
                #expect(decision.effect == .explicitDeny, "\(text) \(action) \(resource)")
            } else {
                #expect(decision.effect != .explicitDeny)
            }
            // A blanket Deny added anywhere decides every request.
            let blanket = try PolicyDocument(
                parsing: #"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#
            )
            let both = [NamedPolicy(name: "p", document: document), NamedPolicy(name: "deny-all", document: blanket)]
            #expect(PolicyEvaluator.evaluate(both, request).effect == .explicitDeny)
        }
    }
}
