/// What a request is, for policy evaluation: the action, the one resource it acts on (a call that
/// touches two, as StartSession does with its target and its document, is evaluated once for each), and
/// the condition context (`aws:username`, `aws:SourceIp`, `ssm:resourceTag/Name`, `jumpgate:RemotePort`
/// ...), keys compared without regard to case, each with one value or several.
public struct RequestContext: Sendable {
    public var action: String
    public var resource: String
    var values: [String: [String]]

    public init(action: String, resource: String, values: [String: [String]] = [:]) {
        self.action = action
        self.resource = resource
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

    public var isAllowed: Bool { self.effect == .allowed }

    public init(effect: Effect, policy: String?, statement: String?) {
        self.effect = effect
        self.policy = policy
        self.statement = statement
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

    /// Whether the statement covers the request: action, resource and every condition.
    static func applies(_ statement: PolicyDocument.Statement, _ request: RequestContext, variables: Bool) -> Bool {
        let actionListed = statement.actions.contains { $0.matches(request.action) }
        guard actionListed != statement.notAction else { return false }
        let resourceListed = statement.resources.contains { text in
            Self.pattern(text, request, variables: variables, caseSensitive: true)?.matches(request.resource) ?? false
        }
        guard resourceListed != statement.notResource else { return false }
        return statement.conditions.allSatisfy { condition in
            let values = condition.values.compactMap { text in
                variables ? Self.substitute(text, request) : text
            }
            return condition.holds(requestValues: request[condition.key], policyValues: values)
        }
    }

    /// A resource pattern with its policy variables replaced by the request's values (as literals); nil
    /// when a variable has no value in the request (the pattern then matches nothing).
    static func pattern(
        _ text: String,
        _ request: RequestContext,
        variables: Bool,
        caseSensitive: Bool
    ) -> WildcardPattern? {
        guard variables, text.contains("${") else { return WildcardPattern(text, caseSensitive: caseSensitive) }
        guard let segments = Self.segments(text, request) else { return nil }
        return WildcardPattern(segments: segments, caseSensitive: caseSensitive)
    }

    /// A condition value with its variables replaced; nil when one has no value.
    static func substitute(_ text: String, _ request: RequestContext) -> String? {
        guard text.contains("${") else { return text }
        return Self.segments(text, request)?.map(\.text).joined()
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
                let parts = inside.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: " ") }
                if let values = request[parts[0]], values.count == 1 {
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
