/// The ARNs of what the gateway holds, in its own region and account, as SSM and IAM write them.
public struct ResourceNames: Hashable, Sendable {
    public var region: String
    public var account: String

    /// The account a gateway uses when not given one (`jumpgate server --account-id`): AWS's example id.
    public static let defaultAccount = "123456789012"

    public init(region: String = "us-east-1", account: String = Self.defaultAccount) {
        self.region = region
        self.account = account
    }

    /// A managed instance, in SSM's form and in the EC2 form SSM also accepts in policies.
    public func instance(_ id: String) -> [String] {
        [
            "arn:aws:ssm:\(self.region):\(self.account):managed-instance/\(id)",
            "arn:aws:ec2:\(self.region):\(self.account):instance/\(id)",
        ]
    }

    /// A document: AWS-managed ones (`AWS-...`, `SSM-...`) have no account; a policy naming the account
    /// matches them too.
    public func document(_ name: String) -> [String] {
        let withAccount = "arn:aws:ssm:\(self.region):\(self.account):document/\(name)"
        guard name.hasPrefix("AWS-") || name.hasPrefix("SSM-") || name.hasPrefix("Amazon") else { return [withAccount] }
        return ["arn:aws:ssm:\(self.region)::document/\(name)", withAccount]
    }

    /// The names a resource is known by, given any one of them: an instance in both forms, an AWS document
    /// with and without the account (this one's, when the ARN has none), as the gateway evaluates them;
    /// other ARNs as they are.
    public func equivalents(of arn: String) -> [String] {
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 6, parts[0] == "arn" else { return [arn] }
        let names = ResourceNames(region: parts[3], account: parts[4])
        let resource = parts[5]
        if parts[2] == "ssm", resource.hasPrefix("managed-instance/") {
            return names.instance(String(resource.dropFirst("managed-instance/".count)))
        }
        if parts[2] == "ec2", resource.hasPrefix("instance/") {
            return names.instance(String(resource.dropFirst("instance/".count)))
        }
        if parts[2] == "ssm", resource.hasPrefix("document/") {
            let document = String(resource.dropFirst("document/".count))
            return ResourceNames(region: parts[3], account: parts[4].isEmpty ? self.account : parts[4]).document(
                document
            )
        }
        return [arn]
    }

    public func session(_ id: String) -> String { "arn:aws:ssm:\(self.region):\(self.account):session/\(id)" }
    public func activation(_ id: String) -> String { "arn:aws:ssm:\(self.region):\(self.account):activation/\(id)" }
    public func user(_ name: String) -> String { "arn:aws:iam::\(self.account):user/\(name)" }
    public func group(_ name: String) -> String { "arn:aws:iam::\(self.account):group/\(name)" }
    public func policy(_ name: String) -> String { "arn:aws:iam::\(self.account):policy/\(name)" }
}

/// Who is asking: the user and the policies that apply to it (its own and its groups').
public struct Caller: Hashable, Sendable {
    public var user: User
    public var policies: [NamedPolicy]

    public init(user: User, policies: [NamedPolicy]) {
        self.user = user
        self.policies = policies
    }
}

/// One resource a request acts on, as one or more equivalent ARNs (an instance's SSM and EC2 forms), with
/// the context keys that belong to it (`ssm:resourceTag/...` of that instance).
public struct RequestedResource: Hashable, Sendable {
    public var names: [String]
    public var context: [String: [String]]

    public init(_ names: [String], context: [String: [String]] = [:]) {
        self.names = names
        self.context = context
    }
}

extension Decision {
    /// The caller is an administrator: every action, no policy needed.
    public static let administrator = Decision(effect: .allowed, policy: nil, statement: "administrator")
    /// The caller owns the session (resume and terminate need no policy).
    public static let owner = Decision(effect: .allowed, policy: nil, statement: "session owner")
}

/// Whether a caller may do an action on resources: pure, every refusal a value the gateway audits.
public enum Authorizer {
    /// Each resource must be allowed (StartSession acts on its target and its document); an explicit deny
    /// on any of them, in any of its names, decides. A resource is allowed when one of its names is.
    public static func decide(
        _ caller: Caller,
        action: String,
        resources: [RequestedResource],
        context: [String: [String]]
    ) -> Decision {
        if caller.user.isAdministrator { return .administrator }
        var allowed: Decision?
        var implicit: String?
        for resource in resources {
            // One evaluation per resource, with all its names: a NotResource that excludes any of them
            // excludes the resource (evaluating name by name would let the other name through).
            let name = resource.names.first ?? "*"
            let request = RequestContext(
                action: action,
                resource: name,
                aliases: Array(resource.names.dropFirst()),
                values: context.merging(resource.context) { _, own in own }
            )
            var decision = PolicyEvaluator.evaluate(caller.policies, request)
            decision.resource = name
            switch decision.effect {
            case .explicitDeny: return decision
            case .allowed: allowed = allowed ?? decision
            case .implicitDeny: implicit = implicit ?? name
            }
        }
        if let implicit { return Decision(effect: .implicitDeny, policy: nil, statement: nil, resource: implicit) }
        return allowed ?? Decision(effect: .implicitDeny, policy: nil, statement: nil, resource: "*")
    }

    /// Whether any statement could allow the action at all, whatever its resource and conditions: a list
    /// call nothing could allow is refused outright; one that something allows shows what each item's
    /// own decision permits.
    public static func mayEverAllow(_ caller: Caller, action: String) -> Bool {
        if caller.user.isAdministrator { return true }
        return caller.policies.contains { policy in
            policy.document.statements.contains { statement in
                statement.effect == .allow
                    && statement.actions.contains { $0.matches(action) } != statement.notAction
            }
        }
    }

    /// The text AWS gives an AccessDeniedException: who, what, on which resource, and why.
    public static func deniedMessage(
        user: String,
        account: String,
        action: String,
        resource: String,
        decision: Decision
    ) -> String {
        let why: String
        switch decision.effect {
        case .explicitDeny:
            why =
                "with an explicit deny in an identity-based policy (\(decision.policy ?? "?"), \(decision.statement ?? "?"))"
        default:
            why = "because no identity-based policy allows the \(action) action"
        }
        return "User: arn:aws:iam::\(account):user/\(user) is not authorized to perform: \(action) on resource: "
            + "\(resource) \(why)"
    }
}
