import JumpgateWire

/// A policy refused when it is put: the message names the part that is wrong.
public struct PolicyError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An identity policy in AWS IAM's JSON grammar: Version, Statement (one or a list), each with Sid,
/// Effect, Action or NotAction, Resource or NotResource, and Condition.
public struct PolicyDocument: Hashable, Sendable {
    public enum Effect: String, Hashable, Sendable {
        case allow = "Allow"
        case deny = "Deny"
    }

    public struct Statement: Hashable, Sendable {
        public var sid: String?
        /// Its place in the document, for a decision's "which statement": `Statement[2]`.
        public var index: Int
        public var effect: Effect
        public var actions: [WildcardPattern]
        public var notAction: Bool
        /// Resource patterns as written: policy variables are substituted per request.
        public var resources: [String]
        public var notResource: Bool
        public var conditions: [Condition]

        /// Its Sid, or `Statement[i]` when it has none.
        public var label: String {
            if let sid = self.sid, !sid.isEmpty { return sid }
            return "Statement[\(self.index)]"
        }
    }

    /// 2012-10-17 (policy variables) or 2008-10-17 (none).
    public var version: String
    public var statements: [Statement]

    /// The longest document accepted (AWS allows 6,144 characters for a managed policy).
    public static let maximumSize = 20 * 1024

    public init(parsing text: String) throws(PolicyError) {
        guard text.utf8.count <= Self.maximumSize else {
            throw PolicyError("the document is \(text.utf8.count) bytes; at most \(Self.maximumSize) are accepted")
        }
        let json: JSONValue
        do {
            json = try JSONValue(parsing: text)
        } catch {
            throw PolicyError("the document is not JSON: \(error)")
        }
        try self.init(json: json)
    }

    /// An object's members, refusing a name given twice: IAM does not define which would win, and
    /// keeping either could turn a Deny into an Allow or drop a statement.
    static func members(_ value: JSONValue, _ place: String) throws(PolicyError) -> [(key: String, value: JSONValue)] {
        guard let members = value.objectValue else { throw PolicyError("\(place) must be a JSON object") }
        var seen = Set<String>()
        for (key, _) in members where !seen.insert(key).inserted {
            throw PolicyError("\(place) has '\(key)' twice")
        }
        return members
    }

    public init(json: JSONValue) throws(PolicyError) {
        let members = try Self.members(json, "the document")
        var version: String?
        var statementValue: JSONValue?
        for (key, value) in members {
            switch key {
            case "Version":
                guard let text = value.stringValue, ["2012-10-17", "2008-10-17"].contains(text) else {
                    throw PolicyError("Version must be \"2012-10-17\" (or the old \"2008-10-17\")")
                }
                version = text
            case "Statement": statementValue = value
            case "Id": break
            default: throw PolicyError("unknown top-level element '\(key)' (expected Version, Id, Statement)")
            }
        }
        guard let statementValue else { throw PolicyError("the document has no Statement") }
        let list = statementValue.arrayValue ?? [statementValue]
        guard !list.isEmpty else { throw PolicyError("Statement is empty") }
        self.version = version ?? "2008-10-17"
        var statements: [Statement] = []
        var sids = Set<String>()
        for (index, value) in list.enumerated() {
            let statement = try Self.statement(value, index: index)
            if let sid = statement.sid, !sid.isEmpty {
                guard sids.insert(sid).inserted else {
                    throw PolicyError("Statement[\(index)]: Sid '\(sid)' is used twice")
                }
            }
            statements.append(statement)
        }
        self.statements = statements
    }

    static func statement(_ value: JSONValue, index: Int) throws(PolicyError) -> Statement {
        let place = "Statement[\(index)]"
        let members = try Self.members(value, place)
        var sid: String?
        var effect: Effect?
        var actions: (patterns: [String], not: Bool)?
        var resources: (patterns: [String], not: Bool)?
        var conditions: [Condition] = []
        for (key, value) in members {
            switch key {
            case "Sid":
                guard let text = value.stringValue,
                    text.unicodeScalars.allSatisfy({
                        ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    })
                else {
                    throw PolicyError("\(place).Sid must be ASCII letters and digits")
                }
                sid = text
            case "Effect":
                guard let text = value.stringValue, let parsed = Effect(rawValue: text) else {
                    throw PolicyError("\(place).Effect must be \"Allow\" or \"Deny\"")
                }
                effect = parsed
            case "Action", "NotAction":
                guard actions == nil else { throw PolicyError("\(place) has both Action and NotAction") }
                let list = try Self.strings(value, "\(place).\(key)")
                for action in list where action != "*" && !action.contains(":") {
                    throw PolicyError(
                        "\(place).\(key): '\(action)' is not SERVICE:ACTION (for example ssm:StartSession)"
                    )
                }
                actions = (list, key == "NotAction")
            case "Resource", "NotResource":
                guard resources == nil else { throw PolicyError("\(place) has both Resource and NotResource") }
                let list = try Self.strings(value, "\(place).\(key)")
                for resource in list where resource != "*" && !resource.hasPrefix("arn:") {
                    throw PolicyError("\(place).\(key): '\(resource)' is not an ARN (arn:aws:ssm:...) or *")
                }
                resources = (list, key == "NotResource")
            case "Condition":
                conditions = try Self.conditions(value, place: place)
            case "Principal", "NotPrincipal":
                throw PolicyError(
                    "\(place).\(key): an identity policy names no principal (it applies to whom it is attached)"
                )
            default:
                throw PolicyError("\(place): unknown element '\(key)'")
            }
        }
        guard let effect else { throw PolicyError("\(place) has no Effect") }
        guard let actions else { throw PolicyError("\(place) has no Action or NotAction") }
        guard let resources else { throw PolicyError("\(place) has no Resource or NotResource") }
        return Statement(
            sid: sid,
            index: index,
            effect: effect,
            actions: actions.patterns.map { WildcardPattern($0, caseSensitive: false) },
            notAction: actions.not,
            resources: resources.patterns,
            notResource: resources.not,
            conditions: conditions
        )
    }

    /// A string or a non-empty list of strings.
    static func strings(_ value: JSONValue, _ place: String) throws(PolicyError) -> [String] {
        if let text = value.stringValue { return [text] }
        guard let list = value.arrayValue, !list.isEmpty else {
            throw PolicyError("\(place) must be a string or a non-empty list of strings")
        }
        var result: [String] = []
        for item in list {
            guard let text = item.stringValue else { throw PolicyError("\(place) must hold only strings") }
            result.append(text)
        }
        return result
    }

    static func scalarText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .integer(let number): return String(number)
        // As the number is written in JSON (520.0 is 520), so a document means the same after a round trip.
        case .double: return value.serialized()
        default: return nil
        }
    }

    static func conditions(_ value: JSONValue, place: String) throws(PolicyError) -> [Condition] {
        let operators = try Self.members(value, "\(place).Condition")
        var result: [Condition] = []
        for (name, block) in operators {
            let keys = try Self.members(block, "\(place).Condition.\(name)")
            guard !keys.isEmpty else {
                throw PolicyError("\(place).Condition.\(name) must be an object of keys and values")
            }
            for (key, values) in keys {
                // A condition value is a string, number or boolean, or a list of them.
                let path = "\(place).Condition.\(name).\(key)"
                var texts: [String] = []
                for value in values.arrayValue ?? [values] {
                    guard let text = Self.scalarText(value) else {
                        throw PolicyError("\(path) must be a string, number or boolean, or a list of them")
                    }
                    texts.append(text)
                }
                do {
                    result.append(try Condition(operator: name, key: key, values: texts))
                } catch {
                    throw PolicyError("\(place).Condition: \(error.description)")
                }
            }
        }
        return result
    }
}

extension PolicyDocument {
    /// A policy variable that names no context key (`${}`, `${ , 'x'}`) in a Resource or a Condition value,
    /// for a Version 2012-10-17 document: it never has a value, so its statement never applies, and a Deny
    /// written with it silently denies nothing. Refused when the document is put; a stored one still loads
    /// (and its statement still never applies), so an upgrade never stops a gateway on an earlier policy.
    public var unnamedVariableProblem: String? {
        guard self.version == "2012-10-17" else { return nil }
        for statement in self.statements {
            let texts =
                statement.resources.map { (place: "Resource", text: $0) }
                + statement.conditions.flatMap { condition in condition.values.map { (place: "Condition", text: $0) } }
            for (place, text) in texts {
                var rest = Substring(text)
                while let dollar = PolicyEvaluator.variableStart(rest) {
                    let open = rest.index(dollar, offsetBy: 2)
                    guard let end = rest[open...].firstIndex(of: "}") else { break }
                    let inside = rest[open..<end]
                    rest = rest[rest.index(after: end)...]
                    if PolicyEvaluator.variableParts(inside).first?.isEmpty != false {
                        return "\(statement.label).\(place): '\(text)' has a policy variable that names no key "
                            + "(it never has a value, so the statement would never apply)"
                    }
                }
            }
        }
        return nil
    }
}
