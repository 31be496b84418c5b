/// One test of a statement's Condition block: an operator (with its `ForAnyValue:`/`ForAllValues:`
/// qualifier and `IfExists` suffix), a context key and the policy's values, as IAM evaluates them.
public struct Condition: Hashable, Sendable {
    public enum Qualifier: Hashable, Sendable {
        case none, forAnyValue, forAllValues
    }

    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case stringEquals = "StringEquals"
        case stringNotEquals = "StringNotEquals"
        case stringEqualsIgnoreCase = "StringEqualsIgnoreCase"
        case stringNotEqualsIgnoreCase = "StringNotEqualsIgnoreCase"
        case stringLike = "StringLike"
        case stringNotLike = "StringNotLike"
        case numericEquals = "NumericEquals"
        case numericNotEquals = "NumericNotEquals"
        case numericLessThan = "NumericLessThan"
        case numericLessThanEquals = "NumericLessThanEquals"
        case numericGreaterThan = "NumericGreaterThan"
        case numericGreaterThanEquals = "NumericGreaterThanEquals"
        case dateEquals = "DateEquals"
        case dateNotEquals = "DateNotEquals"
        case dateLessThan = "DateLessThan"
        case dateLessThanEquals = "DateLessThanEquals"
        case dateGreaterThan = "DateGreaterThan"
        case dateGreaterThanEquals = "DateGreaterThanEquals"
        case bool = "Bool"
        case ipAddress = "IpAddress"
        case notIpAddress = "NotIpAddress"
        case arnEquals = "ArnEquals"
        case arnNotEquals = "ArnNotEquals"
        case arnLike = "ArnLike"
        case arnNotLike = "ArnNotLike"
        case null = "Null"

        /// The operators that match when the value does NOT compare: true when the key is absent.
        var isNegated: Bool {
            switch self {
            case .stringNotEquals, .stringNotEqualsIgnoreCase, .stringNotLike, .numericNotEquals, .dateNotEquals,
                .notIpAddress, .arnNotEquals, .arnNotLike:
                return true
            default:
                return false
            }
        }
    }

    public var qualifier: Qualifier
    public var kind: Kind
    public var ifExists: Bool
    /// The context key as written; compared without regard to case.
    public var key: String
    public var values: [String]

    /// Parses `ForAnyValue:StringLikeIfExists` and checks the values fit the operator; the error names
    /// what is wrong (the caller adds where).
    init(operator text: String, key: String, values: [String]) throws(PolicyError) {
        var name = Substring(text)
        self.qualifier = .none
        for (prefix, qualifier) in [("ForAnyValue:", Qualifier.forAnyValue), ("ForAllValues:", .forAllValues)]
        where name.hasPrefix(prefix) {
            self.qualifier = qualifier
            name = name.dropFirst(prefix.count)
        }
        self.ifExists = name.hasSuffix("IfExists") && name != "IfExists"
        if self.ifExists { name = name.dropLast("IfExists".count) }
        guard let kind = Kind(rawValue: String(name)), !(kind == .null && self.ifExists) else {
            throw PolicyError("unknown condition operator '\(text)'")
        }
        self.kind = kind
        self.key = key
        self.values = values
        guard !values.isEmpty else { throw PolicyError("\(text) \(key) has no value") }
        for value in values where !Self.isValid(value, for: kind) {
            throw PolicyError("'\(value)' is not a valid value for \(kind.rawValue) (\(key))")
        }
    }

    static func isValid(_ value: String, for kind: Kind) -> Bool {
        switch kind {
        case .numericEquals, .numericNotEquals, .numericLessThan, .numericLessThanEquals, .numericGreaterThan,
            .numericGreaterThanEquals:
            return Double(value) != nil
        case .dateEquals, .dateNotEquals, .dateLessThan, .dateLessThanEquals, .dateGreaterThan,
            .dateGreaterThanEquals:
            return value.contains("${") || IAMDate.epochSeconds(value) != nil
        case .bool, .null:
            return ["true", "false"].contains(value.lowercased())
        case .ipAddress, .notIpAddress:
            return CIDRBlock(value) != nil
        default:
            return true
        }
    }

    /// Whether the condition holds for the request's values of its key (nil: the key is absent).
    /// `policyValues` are the values with policy variables substituted (a value whose variable the
    /// request lacks is dropped: it matches nothing).
    func holds(requestValues: [String]?, policyValues: [String]) -> Bool {
        if self.kind == .null {
            let wantsAbsent = self.values.first?.lowercased() == "true"
            return (requestValues == nil || requestValues?.isEmpty == true) == wantsAbsent
        }
        guard let request = requestValues, !request.isEmpty else {
            if self.ifExists { return true }
            switch self.qualifier {
            case .forAllValues: return true
            case .forAnyValue: return false
            case .none: return self.kind.isNegated
            }
        }
        let matches = { (value: String) in self.compare(value, policyValues) }
        switch (self.qualifier, self.kind.isNegated) {
        case (.none, false), (.forAnyValue, false): return request.contains(where: matches)
        case (.none, true): return !request.contains(where: matches)
        case (.forAnyValue, true): return request.contains { !matches($0) }
        case (.forAllValues, false): return request.allSatisfy(matches)
        case (.forAllValues, true): return request.allSatisfy { !matches($0) }
        }
    }

    /// The positive comparison of one request value against the policy's values (any may match).
    func compare(_ value: String, _ policyValues: [String]) -> Bool {
        switch self.kind {
        case .stringEquals, .stringNotEquals:
            return policyValues.contains(value)
        case .stringEqualsIgnoreCase, .stringNotEqualsIgnoreCase:
            return policyValues.contains { $0.lowercased() == value.lowercased() }
        case .stringLike, .stringNotLike, .arnEquals, .arnNotEquals, .arnLike, .arnNotLike:
            return policyValues.contains { WildcardPattern($0, caseSensitive: true).matches(value) }
        case .numericEquals, .numericNotEquals, .numericLessThan, .numericLessThanEquals, .numericGreaterThan,
            .numericGreaterThanEquals:
            guard let number = Double(value) else { return false }
            return policyValues.compactMap(Double.init).contains { Self.order(number, $0, self.kind) }
        case .dateEquals, .dateNotEquals, .dateLessThan, .dateLessThanEquals, .dateGreaterThan,
            .dateGreaterThanEquals:
            guard let date = IAMDate.epochSeconds(value) else { return false }
            return policyValues.compactMap(IAMDate.epochSeconds).contains { Self.order(date, $0, self.kind) }
        case .bool:
            return policyValues.contains { $0.lowercased() == value.lowercased() }
        case .ipAddress, .notIpAddress:
            // A host name is not an address: it is in no block (docs/SECURITY.md: the agent's allow-list,
            // checked on resolved addresses, is the backstop for names).
            guard let address = HostName.addressBytes(value) else { return false }
            return policyValues.compactMap(CIDRBlock.init).contains { $0.contains(address) }
        case .null:
            return false
        }
    }

    static func order(_ request: Double, _ policy: Double, _ kind: Kind) -> Bool {
        switch kind {
        case .numericEquals, .numericNotEquals, .dateEquals, .dateNotEquals: return request == policy
        case .numericLessThan, .dateLessThan: return request < policy
        case .numericLessThanEquals, .dateLessThanEquals: return request <= policy
        case .numericGreaterThan, .dateGreaterThan: return request > policy
        case .numericGreaterThanEquals, .dateGreaterThanEquals: return request >= policy
        default: return false
        }
    }
}
