/// What a request is, for policy evaluation: the action, the one resource it acts on (a call that
/// touches two, as StartSession does with its target and its document, is evaluated once for each), and
/// the condition context (`aws:username`, `aws:SourceIp`, `ssm:resourceTag/Name`, `jumpgate:RemotePort`
/// ...), keys compared without regard to case, each with one value or several.
public struct RequestContext: Sendable {
    public var action: String
    public var resource: String
    /// Other names of the same resource (an instance's EC2 form, a document with the account): a
    /// statement's Resource matches when it matches any name, and NotResource only when it matches none.
    public var aliases: [String]
    var values: [String: [String]]

    public init(action: String, resource: String, aliases: [String] = [], values: [String: [String]] = [:]) {
        self.action = action
        self.resource = resource
        self.aliases = aliases
        self.values = [:]
        for (key, list) in values { self.values[key.lowercased()] = list }
    }

    public subscript(key: String) -> [String]? {
        get { self.values[key.lowercased()] }
        set { self.values[key.lowercased()] = newValue }
    }
}

/// A policy as attached: its name, for decisions that say which statement decided.
public struct NamedPolicy: Hashable, Sendable {
    public var name: String
    public var document: PolicyDocument

    public init(name: String, document: PolicyDocument) {
        self.name = name
        self.document = document
    }
}

/// The outcome, and what decided it.
public struct Decision: Hashable, Sendable {
    public enum Effect: String, Hashable, Sendable {
        /// A statement allowed it and none denied it.
        case allowed
        /// A Deny statement matched: it wins over every Allow.
        case explicitDeny
        /// No statement allowed it.
        case implicitDeny
    }

    public var effect: Effect
    /// The deciding policy and statement (Sid or `Statement[i]`); nil for an implicit deny.
    public var policy: String?
    public var statement: String?
    /// The resource (ARN) the decision was about: for a refusal, the one that was not allowed.
    public var resource: String?

    public var isAllowed: Bool { self.effect == .allowed }

    public init(effect: Effect, policy: String?, statement: String?, resource: String? = nil) {
        self.effect = effect
        self.policy = policy
        self.statement = statement
        self.resource = resource
    }
}

/// IAM's evaluation for identity policies: an explicit Deny anywhere wins; else an Allow anywhere allows;
/// else the request is denied. Pure: no I/O, no clock (`aws:CurrentTime` comes in the context).
public enum PolicyEvaluator {
    public static func evaluate(_ policies: [NamedPolicy], _ request: RequestContext) -> Decision {
        var firstAllow: (String, String)?
        for policy in policies {
            for statement in policy.document.statements
            where Self.applies(statement, request, variables: policy.document.version == "2012-10-17") {
                switch statement.effect {
                case .deny:
                    return Decision(effect: .explicitDeny, policy: policy.name, statement: statement.label)
                case .allow:
                    firstAllow = firstAllow ?? (policy.name, statement.label)
                }
            }
        }
        if let (policy, statement) = firstAllow {
            return Decision(effect: .allowed, policy: policy, statement: statement)
        }
        return Decision(effect: .implicitDeny, policy: nil, statement: nil)
    }

    /// Whether the statement covers the request: action, resource and every condition. A policy variable
    /// the request has no value for makes the statement not apply at all, Allow or Deny, as in IAM
    /// ("any attempt to match it fails and causes the statement to be invalid"): docs/ACCESS.md.
    static func applies(_ statement: PolicyDocument.Statement, _ request: RequestContext, variables: Bool) -> Bool {
        let actionListed = statement.actions.contains { $0.matches(request.action) }
        guard actionListed != statement.notAction else { return false }
        var resourceListed = false
        for text in statement.resources {
            guard let segments = Self.resolve(text, request, variables: variables) else { return false }
            let pattern = ARNPattern(segments: segments)
            if pattern.matches(request.resource) || request.aliases.contains(where: pattern.matches) {
                resourceListed = true
            }
        }
        guard resourceListed != statement.notResource else { return false }
        for condition in statement.conditions {
            var values: [PolicyValue] = []
            for text in condition.values {
                guard let segments = Self.resolve(text, request, variables: variables) else { return false }
                values.append(PolicyValue(segments: segments))
            }
            guard condition.holds(requestValues: request[condition.key], policyValues: values) else { return false }
        }
        return true
    }

    /// A pattern's pieces with its variables replaced (Version 2012-10-17 only); nil when one has no value.
    static func resolve(_ text: String, _ request: RequestContext, variables: Bool) -> [(text: String, literal: Bool)]?
    {
        guard variables, text.contains("${") else { return [(text, false)] }
        return Self.segments(text, request)
    }

    /// `text` cut into literal and pattern pieces: `${aws:username}` (any context key with one value),
    /// `${*}`, `${?}` and `${$}` (the characters themselves), `${key, 'default'}` (a value when absent).
    static func segments(_ text: String, _ request: RequestContext) -> [(text: String, literal: Bool)]? {
        var result: [(text: String, literal: Bool)] = []
        var rest = Substring(text)
        while let dollar = Self.variableStart(rest) {
            result.append((String(rest[..<dollar]), false))
            let open = rest.index(dollar, offsetBy: 2)
            guard let end = rest[open...].firstIndex(of: "}") else {
                result.append((String(rest[dollar...]), false))
                return result
            }
            let inside = rest[open..<end].trimmingCharacters(in: " ")
            rest = rest[rest.index(after: end)...]
            switch inside {
            case "*", "?", "$":
                result.append((inside, true))
            default:
                let parts = Self.variableParts(inside)
                // `${}` names no key, so it has no value (found by FuzzPolicy: it trapped on parts[0]).
                guard let key = parts.first, !key.isEmpty else { return nil }
                if let values = request[key], values.count == 1 {
                    result.append((values[0], true))
                } else if parts.count == 2, parts[1].count >= 2, parts[1].hasPrefix("'"), parts[1].hasSuffix("'") {
                    result.append((String(parts[1].dropFirst().dropLast()), true))
                } else {
                    return nil
                }
            }
        }
        result.append((String(rest), false))
        return result
    }
}

extension PolicyEvaluator {
    /// A variable's inside (between `${` and `}`) cut at its first comma, each part trimmed: the key, then
    /// the default if there is one. An empty key names nothing (``PolicyDocument/unnamedVariableProblem``).
    static func variableParts(_ inside: some StringProtocol) -> [String] {
        inside.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: " ")
        }
    }

    /// Where the first `${` starts.
    static func variableStart(_ text: Substring) -> Substring.Index? {
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            if text[index] == "$", next < text.endIndex, text[next] == "{" { return index }
            index = next
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters(in characters: String) -> String {
        let set = Set(characters)
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
