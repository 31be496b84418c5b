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

        var isNumeric: Bool { self.rawValue.hasPrefix("Numeric") }
        var isDate: Bool { self.rawValue.hasPrefix("Date") }

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
        // At most one qualifier.
        if name.hasPrefix("ForAnyValue:") {
            self.qualifier = .forAnyValue
            name = name.dropFirst("ForAnyValue:".count)
        } else if name.hasPrefix("ForAllValues:") {
            self.qualifier = .forAllValues
            name = name.dropFirst("ForAllValues:".count)
        }
        self.ifExists = name.hasSuffix("IfExists") && name != "IfExists"
        if self.ifExists { name = name.dropLast("IfExists".count) }
        guard let kind = Kind(rawValue: String(name)), !(kind == .null && self.ifExists) else {
            throw PolicyError("unknown condition operator '\(text)'")
        }
        self.kind = kind
        self.key = key
        guard !values.isEmpty else { throw PolicyError("\(text) \(key) has no value") }
        if kind.isDate || kind.isNumeric || kind == .bool || kind == .ipAddress || kind == .notIpAddress {
            // As IAM: policy variables only in string and ARN comparisons.
            for value in values where value.contains("${") {
                throw PolicyError("\(kind.rawValue) (\(key)) takes no policy variable ('\(value)')")
            }
        }
        for value in values where !Self.isValid(value, for: kind) {
            throw PolicyError("'\(value)' is not a valid value for \(kind.rawValue) (\(key))")
        }
        let lowered = key.lowercased()
        if lowered.hasPrefix("jumpgate:"), !Self.jumpgateKeys.contains(lowered) {
            // A misspelt key would make a Deny silently inert.
            throw PolicyError(
                "unknown condition key '\(key)' (Jumpgate's are jumpgate:RemoteHost, jumpgate:RemotePort and jumpgate:SessionType)"
            )
        }
        // Host names compare in one form (HostName), the policy's as the request's.
        if lowered == "jumpgate:remotehost" {
            switch kind {
            case .stringEquals, .stringNotEquals, .stringEqualsIgnoreCase, .stringNotEqualsIgnoreCase:
                self.values = values.map { $0.contains("${") ? $0 : HostName.normalized($0) }
            case .stringLike, .stringNotLike:
                self.values = values.map { $0.lowercased() }
            default:
                self.values = values
            }
        } else {
            self.values = values
        }
    }

    static let jumpgateKeys: Set<String> = ["jumpgate:remotehost", "jumpgate:remoteport", "jumpgate:sessiontype"]

    static func isValid(_ value: String, for kind: Kind) -> Bool {
        switch kind {
        case .numericEquals, .numericNotEquals, .numericLessThan, .numericLessThanEquals, .numericGreaterThan,
            .numericGreaterThanEquals:
            return Self.decimal(value) != nil
        case .dateEquals, .dateNotEquals, .dateLessThan, .dateLessThanEquals, .dateGreaterThan,
            .dateGreaterThanEquals:
            return IAMDate.epochSeconds(value) != nil
        case .bool, .null:
            return ["true", "false"].contains(value.lowercased())
        case .ipAddress, .notIpAddress:
            return CIDRBlock(value) != nil
        default:
            return true
        }
    }

    /// Whether the condition holds for the request's values of its key (nil: the key is absent).
    /// `policyValues` are the values with policy variables substituted (the evaluator does not apply a
    /// statement whose variables the request lacks).
    func holds(requestValues: [String]?, policyValues: [PolicyValue]) -> Bool {
        let absent = requestValues?.isEmpty ?? true
        if self.kind == .null {
            // The values are alternatives: "true" holds for an absent key, "false" for a present one.
            return self.values.contains { ($0.lowercased() == "true") == absent }
        }
        // For the set qualifiers an empty string is an empty set, as in IAM.
        let empty = absent || (self.qualifier != .none && requestValues == [""])
        guard let request = requestValues, !empty else {
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
    /// Strings compare as Unicode scalars (never by canonical equivalence, as the wildcards do).
    func compare(_ value: String, _ policyValues: [PolicyValue]) -> Bool {
        let scalars = Array(value.unicodeScalars)
        switch self.kind {
        case .stringEquals, .stringNotEquals:
            return policyValues.contains { Array($0.text.unicodeScalars) == scalars }
        case .stringEqualsIgnoreCase, .stringNotEqualsIgnoreCase:
            let lowered = Array(value.lowercased().unicodeScalars)
            return policyValues.contains { Array($0.text.lowercased().unicodeScalars) == lowered }
        case .stringLike, .stringNotLike:
            return policyValues.contains { $0.pattern.matches(value) }
        case .arnEquals, .arnNotEquals, .arnLike, .arnNotLike:
            return policyValues.contains { ARNPattern(segments: $0.segments).matches(value) }
        case .numericEquals, .numericNotEquals, .numericLessThan, .numericLessThanEquals, .numericGreaterThan,
            .numericGreaterThanEquals:
            guard let number = Self.decimal(value) else { return false }
            return policyValues.compactMap { Self.decimal($0.text) }.contains { Self.order(number, $0, self.kind) }
        case .dateEquals, .dateNotEquals, .dateLessThan, .dateLessThanEquals, .dateGreaterThan,
            .dateGreaterThanEquals:
            guard let date = IAMDate.epochSeconds(value) else { return false }
            return policyValues.compactMap { IAMDate.epochSeconds($0.text) }.contains {
                Self.order(date, $0, self.kind)
            }
        case .bool:
            return policyValues.contains { $0.text.lowercased() == value.lowercased() }
        case .ipAddress, .notIpAddress:
            // A host name is not an address: it is in no block (docs/ACCESS.md: the agent's allow-list,
            // checked on resolved addresses, is the backstop for names).
            guard let address = HostName.addressBytes(value) else { return false }
            return policyValues.compactMap { CIDRBlock($0.text) }.contains { $0.contains(address) }
        case .null:
            return false
        }
    }

    /// IAM's numbers: an integer or a decimal (`-?digits(.digits)?`); not `nan`, `inf`, `1e3` or `0x10`.
    static func decimal(_ text: String) -> Double? {
        var body = Substring(text)
        if body.hasPrefix("-") { body = body.dropFirst() }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count),
            parts.allSatisfy({ !$0.isEmpty && $0.unicodeScalars.allSatisfy { ("0"..."9").contains($0) } })
        else { return nil }
        return Double(text)
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

/// A condition value with its policy variables substituted: its text for comparisons, and its pieces
/// (`${*}` and variables' values literal) for the wildcard operators.
public struct PolicyValue: Sendable {
    public var text: String
    var segments: [(text: String, literal: Bool)]

    init(segments: [(text: String, literal: Bool)]) {
        self.segments = segments
        self.text = segments.map(\.text).joined()
    }

    var pattern: WildcardPattern { WildcardPattern(segments: self.segments, caseSensitive: true) }
}
