import FoundationEssentials
import JumpgateWire

/// Why a document or a session's parameters are refused: AWS's error type and a message that says what to
/// fix.
public struct DocumentError: Error, Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var message: String
    public var description: String { "\(self.type): \(self.message)" }

    init(_ type: String, _ message: String) {
        self.type = type
        self.message = message
    }

    static func content(_ message: String) -> DocumentError { DocumentError("InvalidDocumentContent", message) }
    static func parameters(_ message: String) -> DocumentError { DocumentError("InvalidParameters", message) }
}

/// A Session document (schema 1.0) as SSM defines it: its session type, its parameters with their rules, and
/// the properties the agent is given once `{{ name }}` placeholders take the session's values. Parsing and
/// resolving are pure (docs/SESSIONS.md, "Session documents").
public struct SessionDocumentContent: Hashable, Sendable {
    public static let sessionTypes: Set<String> = [
        "Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Port",
    ]
    /// AWS's limit on a document's content.
    public static let maximumSize = 65_536
    /// The longest value a session may give a parameter.
    public static let maximumValueLength = 4_096

    public struct Parameter: Hashable, Sendable {
        public var name: String
        public var description: String
        public var defaultValue: String?
        public var allowedValues: [String]?
        /// A regular expression the whole value must match (as if anchored at both ends).
        public var allowedPattern: String?
    }

    public var json: JSONValue
    public var sessionType: String
    public var description: String
    public var parameters: [Parameter]
    /// A Standard_Stream document's `inputs`: the idle timeout and maximum duration it sets (seconds).
    public var idleTimeoutSeconds: Int64? = nil
    public var maximumDurationSeconds: Int64? = nil
    /// Whether what the client types is recorded too (`inputs.recordInput`), if the document says.
    public var recordInput: Bool? = nil
    /// The account shells run as (`inputs.runAsEnabled` with `runAsDefaultUser`), if the document says.
    public var runAsUser: String? = nil
    /// Commands a shell runs when it starts (`inputs.shellProfile.linux`), if the document gives some.
    public var shellProfile: String? = nil

    /// Parses and checks `text`: JSON (YAML is not read), schema 1.0, a known session type, parameters of
    /// type String whose defaults obey their own rules, placeholders that name parameters, and what each
    /// session type needs in `properties`.
    public static func parse(_ text: String) throws(DocumentError) -> SessionDocumentContent {
        guard text.utf8.count <= Self.maximumSize else {
            throw DocumentError("MaxDocumentSizeExceeded", "The content is larger than \(Self.maximumSize) bytes.")
        }
        guard let json = try? JSONValue(parsing: text), json.objectValue != nil else {
            throw .content("The content is not a JSON object (Jumpgate reads JSON documents; convert YAML to JSON).")
        }
        // Keys are looked up as Go does (exact, then case-insensitive) here and on the agent: a key given
        // twice, or in two cases, could mean one thing to the policy check and another to the agent.
        if let duplicate = Self.duplicateKey(in: json) {
            throw .content("The key \(duplicate.prefix(64)) is given more than once (keys differ in more than case).")
        }
        guard json["schemaVersion"]?.stringValue == "1.0" else {
            throw .content("Session documents have schemaVersion \"1.0\".")
        }
        guard let sessionType = json["sessionType"]?.stringValue, Self.sessionTypes.contains(sessionType) else {
            throw .content(
                "sessionType must be one of \(Self.sessionTypes.sorted().joined(separator: ", "))."
            )
        }
        var parameters: [Parameter] = []
        if let definitions = json["parameters"] {
            guard let members = definitions.objectValue else { throw .content("parameters must be an object.") }
            for (name, definition) in members {
                parameters.append(try Self.parameter(name, definition))
            }
        }
        let properties = json["properties"] ?? [:]
        guard properties.objectValue != nil else { throw .content("properties must be an object.") }
        let names = Set(parameters.map(\.name))
        for placeholder in Self.placeholders(in: properties) where !names.contains(placeholder) {
            throw .content("The placeholder {{ \(placeholder) }} names no parameter of the document.")
        }
        switch sessionType {
        case "Port":
            guard properties["portNumber"]?.stringValue != nil else {
                throw .content("A Port document's properties give portNumber (a number or a {{ placeholder }}).")
            }
        case "InteractiveCommands", "NonInteractiveCommands":
            let commands = properties["linux"]?["commands"]
            guard commands?.stringValue != nil || commands?.arrayValue?.allSatisfy({ $0.stringValue != nil }) == true
            else {
                throw .content("A command document's properties give linux.commands (a string or a list of lines).")
            }
        default:
            break
        }
        var document = SessionDocumentContent(
            json: json,
            sessionType: sessionType,
            description: json["description"]?.stringValue ?? "",
            parameters: parameters
        )
        if let inputs = json["inputs"], sessionType == "Standard_Stream" {
            guard inputs.objectValue != nil else { throw .content("inputs must be an object.") }
            try document.readInputs(inputs)
        }
        return document
    }

    /// The preferences Jumpgate applies (idleSessionTimeout, 1 to 60 minutes; maxSessionDuration, 1 to 1,440
    /// minutes); the ones it does not apply yet are refused when set, so no document looks obeyed that is not.
    mutating func readInputs(_ inputs: JSONValue) throws(DocumentError) {
        func minutes(_ key: String, _ range: ClosedRange<Int64>) throws(DocumentError) -> Int64? {
            guard let value = inputs[key], value != "" else { return nil }
            guard let text = value.stringValue, let number = Int64(text), range.contains(number) else {
                throw .content(
                    "inputs.\(key) must be a number of minutes from \(range.lowerBound) to \(range.upperBound), as a string."
                )
            }
            return number * 60
        }
        self.idleTimeoutSeconds = try minutes("idleSessionTimeout", 1...60)
        self.maximumDurationSeconds = try minutes("maxSessionDuration", 1...1440)
        switch inputs["recordInput"] {
        case .none, .some(.null), .some(.string("")): break
        case .some(.bool(let value)): self.recordInput = value
        case .some(.string("true")): self.recordInput = true
        case .some(.string("false")): self.recordInput = false
        default: throw .content("inputs.recordInput must be true or false.")
        }
        try self.readShellInputs(inputs)
        let unsupported: [(key: String, isSet: Bool)] = [
            ("kmsKeyId", (inputs["kmsKeyId"]?.stringValue ?? "") != ""),
            ("s3BucketName", (inputs["s3BucketName"]?.stringValue ?? "") != ""),
            ("cloudWatchLogGroupName", (inputs["cloudWatchLogGroupName"]?.stringValue ?? "") != ""),
        ]
        if let set = unsupported.first(where: \.isSet) {
            throw .content(
                "inputs.\(set.key) is not applied by Jumpgate yet (recordings are kept by the gateway: docs/SESSIONS.md); leave it empty."
            )
        }
    }

    /// `runAsEnabled` with `runAsDefaultUser` (a user name; Jumpgate has no per-user SSMSessionRunAs tags, so
    /// runAsEnabled needs it), and `shellProfile.linux` (at most 4 KiB, no NUL).
    mutating func readShellInputs(_ inputs: JSONValue) throws(DocumentError) {
        let enabled: Bool
        switch inputs["runAsEnabled"] {
        case .none, .some(.null), .some(.string("")), .some(.bool(false)), .some(.string("false")): enabled = false
        case .some(.bool(true)), .some(.string("true")): enabled = true
        default: throw .content("inputs.runAsEnabled must be true or false.")
        }
        let user = inputs["runAsDefaultUser"]?.stringValue ?? ""
        if inputs["runAsDefaultUser"].map({ $0.stringValue == nil && !$0.isNull }) == true {
            throw .content("inputs.runAsDefaultUser must be a user name (a string).")
        }
        if enabled {
            guard Self.isUserName(user) else {
                throw .content(
                    "inputs.runAsEnabled needs inputs.runAsDefaultUser: an account on the instance (letters, digits, '.', '_', '-'; at most 32)."
                )
            }
            self.runAsUser = user
        }
        // An empty string or null (as stored preferences may hold) is no profile.
        if let profile = inputs["shellProfile"], profile != "", !profile.isNull {
            guard profile.objectValue != nil, profile["linux"].map({ $0.stringValue != nil || $0.isNull }) ?? true
            else {
                throw .content("inputs.shellProfile must be {\"linux\": \"commands\"}.")
            }
            let commands = profile["linux"]?.stringValue ?? ""
            guard commands.utf8.count <= 4096, !commands.utf8.contains(0) else {
                throw .content("inputs.shellProfile.linux must be at most 4096 bytes, without NUL characters.")
            }
            if !commands.allSatisfy(\.isWhitespace) { self.shellProfile = commands }
        }
    }

    /// A user name an agent can look up: letters, digits, `.`, `_`, `-`, not starting with `-`, at most 32.
    static func isUserName(_ name: String) -> Bool {
        (1...32).contains(name.utf8.count) && !name.hasPrefix("-")
            && name.unicodeScalars.allSatisfy {
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
            }
    }

    /// A parameter's name, as parameters and placeholders write it: ASCII letters, digits and underscores.
    static func isIdentifier(_ name: String) -> Bool {
        !name.isEmpty
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_")
            }
    }

    static func hasText(_ value: JSONValue?) -> Bool {
        switch value {
        case .string(let text)?: return !text.isEmpty
        case .object(let members)?: return members.contains { Self.hasText($0.value) }
        default: return false
        }
    }

    static func parameter(_ name: String, _ definition: JSONValue) throws(DocumentError) -> Parameter {
        guard name.utf8.count <= 128, Self.isIdentifier(name) else {
            throw .content("Parameter name '\(name.prefix(130))' must be letters, digits and underscores.")
        }
        guard definition.objectValue != nil else { throw .content("Parameter \(name) must be an object.") }
        let type = definition["type"]?.stringValue ?? ""
        guard type == "String" else {
            throw .content("Parameter \(name) has type '\(type)': Jumpgate's session documents take String parameters.")
        }
        var parameter = Parameter(
            name: name,
            description: definition["description"]?.stringValue ?? "",
            defaultValue: definition["default"]?.stringValue,
            allowedValues: nil,
            allowedPattern: definition["allowedPattern"]?.stringValue
        )
        if let values = definition["allowedValues"] {
            guard let list = values.arrayValue?.compactMap(\.stringValue), list.count == values.arrayValue?.count,
                !list.isEmpty
            else { throw .content("Parameter \(name): allowedValues must be a non-empty list of strings.") }
            parameter.allowedValues = list
        }
        if let pattern = parameter.allowedPattern {
            guard AllowedPattern(pattern) != nil else {
                throw .content("Parameter \(name): allowedPattern is not a valid regular expression.")
            }
            if let problem = Self.patternProblem(pattern) {
                throw .content("Parameter \(name): allowedPattern \(problem)")
            }
        }
        if let value = parameter.defaultValue {
            do {
                try Self.check(value, against: parameter)
            } catch {
                throw .content("Parameter \(name): its default does not obey its own rules (\(error.message))")
            }
        }
        return parameter
    }

    /// Whether `value` obeys `parameter`'s allowedValues and allowedPattern.
    static func check(_ value: String, against parameter: Parameter) throws(DocumentError) {
        if let allowed = parameter.allowedValues, !allowed.contains(value) {
            throw .parameters(
                "Parameter \(parameter.name) value '\(value.prefix(100))' is not one of its allowed values: \(allowed.joined(separator: ", "))."
            )
        }
        if let pattern = parameter.allowedPattern {
            guard value.utf8.count <= Self.maximumPatternedValueLength else {
                throw .parameters(
                    "Parameter \(parameter.name) is longer than \(Self.maximumPatternedValueLength) bytes, the most a value with an allowed pattern may be."
                )
            }
            // The whole value, code point by code point (AllowedPattern).
            let matches = AllowedPattern(pattern)?.matches(value) ?? false
            guard matches else {
                throw .parameters(
                    "Parameter \(parameter.name) value '\(value.prefix(100))' does not match its allowed pattern \(pattern)."
                )
            }
        }
    }

    /// A session's parameters resolved against this document: every value checked, defaults filled in, and
    /// the properties with their placeholders replaced.
    public struct Resolved: Sendable {
        public var values: [(key: String, value: String)]
        public var properties: JSONValue
    }

    /// Resolves a StartSession's `Parameters` (each a list of one string, as the AWS CLI sends them).
    public func resolve(
        _ given: [(key: String, value: JSONValue)],
        documentName: String
    ) throws(DocumentError)
        -> Resolved
    {
        var values: [String: String] = [:]
        for (key, value) in given {
            guard let parameter = self.parameters.first(where: { $0.name == key }) else {
                throw .parameters("Parameter \(key) is not defined in \(documentName).")
            }
            guard let list = value.arrayValue, list.count == 1, let text = list[0].stringValue else {
                throw .parameters("Parameter \(key) must be a list with one string.")
            }
            guard text.utf8.count <= Self.maximumValueLength else {
                throw .parameters("Parameter \(key) is longer than \(Self.maximumValueLength) bytes.")
            }
            try Self.check(text, against: parameter)
            values[key] = text
        }
        var resolved: [(key: String, value: String)] = []
        for parameter in self.parameters {
            guard let value = values[parameter.name] ?? parameter.defaultValue else {
                throw .parameters("Parameter \(parameter.name) is required by \(documentName).")
            }
            resolved.append((parameter.name, value))
        }
        let lookup = Dictionary(resolved, uniquingKeysWith: { first, _ in first })
        return Resolved(values: resolved, properties: Self.substitute(self.json["properties"] ?? [:], lookup))
    }

    // MARK: safety

    /// The longest value checked against an allowed pattern.
    public static let maximumPatternedValueLength = 1_024

    /// Why `pattern` could make matching slow (ICU backtracks, with no time limit, on the gateway's event
    /// loop), or nil: no quantifier on a group, no backreference or lookaround, and at most two unbounded
    /// quantifiers, so that a match costs at most about the square of the value's length.
    static func patternProblem(_ pattern: String) -> String? {
        let characters = Array(pattern)
        var unbounded = 0
        var index = 0
        var inClass = false
        while index < characters.count {
            let character = characters[index]
            if character == "\\" {
                let next = index + 1 < characters.count ? characters[index + 1] : " "
                if next.isNumber || next == "k" { return "uses a backreference, which Jumpgate does not allow." }
                index += 2
                continue
            }
            if inClass {
                if character == "]" { inClass = false }
                index += 1
                continue
            }
            switch character {
            case "[":
                inClass = true
            case "(":
                if index + 2 < characters.count, characters[index + 1] == "?", "=!<".contains(characters[index + 2]) {
                    return "uses a lookaround, which Jumpgate does not allow."
                }
            case ")":
                if index + 1 < characters.count, "*+?{".contains(characters[index + 1]) {
                    return
                        "repeats a group ((...)+, (...)*, (...){n}), which can make matching take exponential time; repeat character classes instead."
                }
            case "*", "+":
                unbounded += 1
            case "{":
                if let close = characters[index...].firstIndex(of: "}"), characters[index..<close].contains(","),
                    characters[close - 1] == ","
                {
                    unbounded += 1
                }
            default:
                break
            }
            index += 1
        }
        return unbounded > 2
            ? "has more than two unbounded repetitions (*, +, {n,}), which can make matching slow." : nil
    }

    /// A key that appears twice in one object (compared without case), anywhere in `value`.
    static func duplicateKey(in value: JSONValue) -> String? {
        switch value {
        case .object(let members):
            var seen: Set<String> = []
            for (key, member) in members {
                guard seen.insert(key.lowercased()).inserted else { return key }
                if let inner = Self.duplicateKey(in: member) { return inner }
            }
            return nil
        case .array(let items):
            return items.lazy.compactMap { Self.duplicateKey(in: $0) }.first
        default:
            return nil
        }
    }

    // MARK: placeholders

    /// `{{ name }}` in every string of `value` (spaces inside the braces optional).
    static func placeholders(in value: JSONValue) -> [String] {
        switch value {
        case .string(let text): return Self.split(text).compactMap(\.placeholder)
        case .array(let items): return items.flatMap { Self.placeholders(in: $0) }
        case .object(let members): return members.flatMap { Self.placeholders(in: $0.value) }
        default: return []
        }
    }

    static func substitute(_ value: JSONValue, _ values: [String: String]) -> JSONValue {
        switch value {
        case .string(let text):
            return .string(Self.split(text).map { $0.placeholder.flatMap { values[$0] } ?? $0.text }.joined())
        case .array(let items): return .array(items.map { Self.substitute($0, values) })
        case .object(let members): return .object(members.map { ($0.key, Self.substitute($0.value, values)) })
        default: return value
        }
    }

    /// `text` cut into literal runs and `{{ name }}` placeholders.
    static func split(_ text: String) -> [(text: String, placeholder: String?)] {
        var pieces: [(text: String, placeholder: String?)] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{"), let close = rest[open.upperBound...].firstRange(of: "}}") {
            let name = rest[open.upperBound..<close.lowerBound].trimmingWhitespace()
            let literal = String(rest[..<open.lowerBound])
            if !literal.isEmpty { pieces.append((literal, nil)) }
            let whole = String(rest[open.lowerBound..<close.upperBound])
            pieces.append((whole, Self.isIdentifier(name) ? name : nil))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { pieces.append((String(rest), nil)) }
        return pieces
    }
}
