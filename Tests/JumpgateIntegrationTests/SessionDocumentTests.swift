import Foundation
import JumpgateWire
import Testing

@testable import JumpgateGateway

/// Session documents: parsing, parameter rules and placeholders (pure), and the catalog's versions.
@Suite("Session documents: content, parameters and versions")
struct SessionDocumentTests {
    static let tunnel = """
        {"schemaVersion": "1.0", "description": "The orders database only", "sessionType": "Port",
         "parameters": {
           "portNumber": {"type": "String", "description": "the port", "allowedPattern": "5432|6432"},
           "stage": {"type": "String", "description": "where", "allowedValues": ["dev", "prod"], "default": "dev"},
           "localPortNumber": {"type": "String", "description": "local", "default": "0"}},
         "properties": {"host": "orders-{{stage}}.db.internal", "portNumber": "{{ portNumber }}",
                        "type": "LocalPortForwarding", "localPortNumber": "{{localPortNumber}}"}}
        """

    static func given(_ pairs: [(String, String)]) -> [(key: String, value: JSONValue)] {
        pairs.map { (key: $0.0, value: .array([.string($0.1)])) }
    }

    @Test("every built-in document parses, with the session type and parameters StartSession relies on")
    func builtIns() throws {
        #expect(Set(BuiltInDocuments.parsed.keys) == Set(BuiltInDocuments.contents.keys))
        let types = BuiltInDocuments.parsed.mapValues(\.sessionType)
        #expect(types["AWS-StartPortForwardingSession"] == "Port" && types["AWS-StartSSHSession"] == "Port")
        #expect(types["SSM-SessionManagerRunShell"] == "Standard_Stream")
        #expect(types["AWS-StartNonInteractiveCommand"] == "NonInteractiveCommands")
        let ssh = try #require(BuiltInDocuments.parsed["AWS-StartSSHSession"])
        let resolved = try ssh.resolve([], documentName: "AWS-StartSSHSession")
        #expect(resolved.properties == ["portNumber": "22"])
    }

    @Test(
        "parameters: defaults filled in, placeholders replaced, allowedValues and an anchored allowedPattern enforced"
    )
    func resolve() throws {
        let document = try SessionDocumentContent.parse(Self.tunnel)
        let resolved = try document.resolve(Self.given([("portNumber", "5432")]), documentName: "tunnel")
        #expect(
            resolved.values.map(\.key)
                == ["localPortNumber", "portNumber", "stage"].sorted { a, b in
                    document.parameters.firstIndex { $0.name == a }! < document.parameters.firstIndex { $0.name == b }!
                }
        )
        #expect(resolved.properties["host"] == "orders-dev.db.internal")
        #expect(resolved.properties["portNumber"] == "5432" && resolved.properties["localPortNumber"] == "0")
        let prod = try document.resolve(Self.given([("portNumber", "6432"), ("stage", "prod")]), documentName: "t")
        #expect(prod.properties["host"] == "orders-prod.db.internal")
    }

    @Test(
        "StartSession's parameters refused: each rule, with InvalidParameters",
        arguments: [
            ([("portNumber", "15432")], "does not match its allowed pattern 5432|6432"),
            ([("portNumber", "54321")], "does not match its allowed pattern"),
            ([("portNumber", "5432"), ("stage", "test")], "is not one of its allowed values: dev, prod"),
            ([("portNumber", "5432"), ("host", "evil")], "Parameter host is not defined in tunnel."),
            ([], "Parameter portNumber is required by tunnel."),
            ([("portNumber", String(repeating: "5", count: 5000))], "is longer than 4096 bytes"),
            // The whole value: not a line of it (ICU's $ matches before a final line break).
            ([("portNumber", "5432\n")], "does not match its allowed pattern"),
            ([("portNumber", "5432"), ("stage", "dev\n")], "is not one of its allowed values"),
            ([("portNumber", String(repeating: "5", count: 2000))], "the most a value with an allowed pattern may be"),
        ]
    )
    func refusedParameters(_ pairs: [(String, String)], _ message: String) throws {
        let document = try SessionDocumentContent.parse(Self.tunnel)
        let error = #expect(throws: DocumentError.self) {
            try document.resolve(Self.given(pairs), documentName: "tunnel")
        }
        #expect(error?.type == "InvalidParameters")
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test("a parameter given as something else than a list of one string is refused")
    func parameterShape() throws {
        let document = try SessionDocumentContent.parse(Self.tunnel)
        for value: JSONValue in ["5432", ["5432", "6432"], [1]] {
            #expect(throws: DocumentError.parameters("Parameter portNumber must be a list with one string.")) {
                try document.resolve([("portNumber", value)], documentName: "tunnel")
            }
        }
    }

    @Test(
        "document content refused: each rule, with InvalidDocumentContent",
        arguments: [
            ("not json", "is not a JSON object"),
            (#"{"schemaVersion": "2.2", "sessionType": "Port", "properties": {"portNumber": "1"}}"#, "schemaVersion"),
            (#"{"schemaVersion": "1.0", "sessionType": "Command", "properties": {}}"#, "sessionType must be one of"),
            (#"{"schemaVersion": "1.0", "sessionType": "Port", "properties": {}}"#, "give portNumber"),
            (
                #"{"schemaVersion": "1.0", "sessionType": "NonInteractiveCommands", "properties": {"linux": {}}}"#,
                "give linux.commands"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "properties": {"portNumber": "{{ port }}"}}"#,
                "The placeholder {{ port }} names no parameter"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "StringList"}}, "properties": {"portNumber": "1"}}"#,
                "take String parameters"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "String", "allowedPattern": "("}}, "properties": {"portNumber": "1"}}"#,
                "not a valid regular expression"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "String", "allowedValues": ["a"], "default": "b"}}, "properties": {"portNumber": "1"}}"#,
                "its default does not obey its own rules"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"a-b": {"type": "String"}}, "properties": {"portNumber": "1"}}"#,
                "must be letters, digits and underscores"
            ),
            // The same key twice, or in two cases: the policy check and the agent could read different ones.
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "properties": {"host": "a.internal", "portNumber": "5432", "host": "b.internal"}}"#,
                "The key host is given more than once"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "properties": {"Host": "a.internal", "host": "b", "portNumber": "1"}}"#,
                "is given more than once"
            ),
            // Patterns that could make the gateway's event loop backtrack for ever.
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "String", "allowedPattern": "([a-z0-9]+\\.?)+"}}, "properties": {"portNumber": "{{p}}"}}"#,
                "repeats a group"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "String", "allowedPattern": "\\d*\\d*\\d*x"}}, "properties": {"portNumber": "{{p}}"}}"#,
                "more than two unbounded repetitions"
            ),
            (
                #"{"schemaVersion": "1.0", "sessionType": "Port", "parameters": {"p": {"type": "String", "allowedPattern": "(a)\\1"}}, "properties": {"portNumber": "{{p}}"}}"#,
                "backreference"
            ),
        ]
    )
    func refusedContent(_ content: String, _ message: String) {
        let error = #expect(throws: DocumentError.self) { try SessionDocumentContent.parse(content) }
        #expect(error?.type == "InvalidDocumentContent")
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test("content over 64 KiB is refused as AWS does")
    func tooLarge() {
        let content = #"{"schemaVersion": "1.0", "description": ""# + String(repeating: "x", count: 70_000) + "\"}"
        let error = #expect(throws: DocumentError.self) { try SessionDocumentContent.parse(content) }
        #expect(error?.type == "MaxDocumentSizeExceeded")
    }

    @Test("the catalog: create, versions, the default version, delete; restored as stored")
    func catalog() throws {
        var catalog = DocumentCatalog()
        let first = try catalog.create(name: "orders-tunnel", content: Self.tunnel, now: 10)
        #expect(first.version == 1)
        let (second, seeded) = try catalog.update(
            name: "orders-tunnel",
            content: Self.tunnel.replacingOccurrences(of: "5432|6432", with: "5432"),
            expected: "$LATEST",
            now: 20
        )
        #expect(second.version == 2 && seeded == nil)
        // A new version is not the default until made so, as in SSM.
        #expect(try catalog.find("orders-tunnel").version == 1)
        #expect(try catalog.find("orders-tunnel", version: "$LATEST").version == 2)
        #expect(try catalog.setDefault(name: "orders-tunnel", version: "2") == 2)
        let found = try catalog.find("orders-tunnel")
        #expect(found.version == 2 && found.latestVersion == 2 && found.defaultVersion == 2 && !found.isBuiltIn)
        #expect(catalog.names.suffix(1) == ["orders-tunnel"])

        var restored = DocumentCatalog()
        restored.restore(versions: [second, first], defaults: ["orders-tunnel": 2])
        #expect(restored.custom == catalog.custom)

        try catalog.delete(name: "orders-tunnel")
        #expect(throws: DocumentError("InvalidDocument", "Document orders-tunnel does not exist.")) {
            try catalog.find("orders-tunnel")
        }
    }

    @Test(
        "catalog refusals: reserved and invalid names, duplicates, built-ins read-only, stale versions, same content",
        arguments: [
            "AWS-Mine", "ssm-mine", "Amazon.x", "ab", "bad name", "AWS-StartSSHSession", "taken", "update-builtin",
            "stale", "same", "default-missing", "delete-builtin", "missing",
        ]
    )
    func catalogRefusals(_ case: String) throws {
        var catalog = DocumentCatalog()
        _ = try catalog.create(name: "taken", content: Self.tunnel, now: 1)
        let expected: String
        let error: DocumentError?
        switch `case` {
        case "taken":
            expected = "DocumentAlreadyExists"
            error = #expect(throws: DocumentError.self) {
                try catalog.create(name: "taken", content: Self.tunnel, now: 2)
            }
        case "update-builtin":
            expected = "InvalidDocumentOperation"
            error = #expect(throws: DocumentError.self) {
                try catalog.update(name: "AWS-StartSSHSession", content: Self.tunnel, expected: nil, now: 2)
            }
        case "stale":
            expected = "InvalidDocumentVersion"
            error = #expect(throws: DocumentError.self) {
                try catalog.update(name: "taken", content: Self.tunnel + " ", expected: "7", now: 2)
            }
        case "same":
            expected = "DuplicateDocumentContent"
            error = #expect(throws: DocumentError.self) {
                try catalog.update(name: "taken", content: Self.tunnel, expected: nil, now: 2)
            }
        case "default-missing":
            expected = "InvalidDocumentVersion"
            error = #expect(throws: DocumentError.self) { try catalog.setDefault(name: "taken", version: "3") }
        case "delete-builtin":
            expected = "InvalidDocumentOperation"
            error = #expect(throws: DocumentError.self) { try catalog.delete(name: "SSM-SessionManagerRunShell") }
        case "missing":
            expected = "InvalidDocument"
            error = #expect(throws: DocumentError.self) { try catalog.delete(name: "missing") }
        default:
            expected = "ValidationException"
            error = #expect(throws: DocumentError.self) {
                try catalog.create(name: `case`, content: Self.tunnel, now: 2)
            }
        }
        #expect(error?.type == expected, "\(`case`): \(String(describing: error))")
        // Nothing changed.
        #expect(catalog.custom.keys.sorted() == ["taken"] && catalog.custom["taken"]?.versions.count == 1)
    }

    static func preferences(_ inputs: String) -> String {
        #"{"schemaVersion": "1.0", "description": "prefs", "sessionType": "Standard_Stream", "inputs": "#
            + inputs + #", "properties": {}}"#
    }

    @Test(
        "preferences: idleSessionTimeout and maxSessionDuration in minutes; what Jumpgate does not apply yet is refused"
    )
    func inputs() throws {
        let set = try SessionDocumentContent.parse(
            Self.preferences(
                #"{"idleSessionTimeout": "20", "maxSessionDuration": "90", "runAsEnabled": false, "s3BucketName": "", "shellProfile": {"linux": ""}}"#
            )
        )
        #expect(set.idleTimeoutSeconds == 1200 && set.maximumDurationSeconds == 5400)
        let empty = try SessionDocumentContent.parse(Self.preferences(#"{"idleSessionTimeout": ""}"#))
        #expect(empty.idleTimeoutSeconds == nil && empty.maximumDurationSeconds == nil)
        // The run-as account and the shell profile, as SSM writes them.
        let shell = try SessionDocumentContent.parse(
            Self.preferences(
                #"{"runAsEnabled": true, "runAsDefaultUser": "deploy", "shellProfile": {"linux": "cd /srv\nexport A=1", "windows": ""}}"#
            )
        )
        #expect(shell.runAsUser == "deploy" && shell.shellProfile == "cd /srv\nexport A=1")
        let off = try SessionDocumentContent.parse(
            Self.preferences(#"{"runAsEnabled": false, "runAsDefaultUser": "deploy"}"#)
        )
        #expect(off.runAsUser == nil && off.shellProfile == nil)
        for inputs in [
            #"{"idleSessionTimeout": "0"}"#, #"{"idleSessionTimeout": "61"}"#, #"{"maxSessionDuration": "1441"}"#,
            #"{"idleSessionTimeout": 20}"#, #"{"runAsEnabled": true}"#,
            #"{"runAsEnabled": true, "runAsDefaultUser": "a b"}"#,
            #"{"runAsEnabled": "yes"}"#, #"{"runAsDefaultUser": 3}"#, #"{"shellProfile": "cd /srv"}"#,
            #"{"shellProfile": {"linux": 3}}"#,
            "{\"shellProfile\": {\"linux\": \"" + String(repeating: "x", count: 4097) + "\"}}",
            #"{"kmsKeyId": "k"}"#,
        ] {
            let error = #expect(throws: DocumentError.self) {
                try SessionDocumentContent.parse(Self.preferences(inputs))
            }
            #expect(error?.type == "InvalidDocumentContent", "\(inputs)")
        }
    }

    @Test("SSM-SessionManagerRunShell is updatable (its first version is the built-in one) and keeps its session type")
    func preferencesDocument() throws {
        var catalog = DocumentCatalog()
        let name = "SSM-SessionManagerRunShell"
        let (version, seeded) = try catalog.update(
            name: name,
            content: Self.preferences(#"{"idleSessionTimeout": "5"}"#),
            expected: nil,
            now: 9
        )
        #expect(version.version == 2 && seeded?.version == 1 && seeded?.content == BuiltInDocuments.contents[name])
        let tunnel = try SessionDocumentContent.parse(Self.tunnel)
        // Not the default yet: the built-in preferences (none) still apply.
        #expect(catalog.limits(for: tunnel).idle == nil)
        _ = try catalog.setDefault(name: name, version: "2")
        #expect(catalog.limits(for: tunnel) == (300, nil))
        #expect(catalog.names.filter { $0 == name }.count == 1)
        #expect(try catalog.find(name).isBuiltIn)
        let error = #expect(throws: DocumentError.self) {
            try catalog.update(name: name, content: Self.tunnel, expected: nil, now: 10)
        }
        #expect(error?.message.contains("keeps its session type") == true)
        #expect(throws: DocumentError.self) { try catalog.delete(name: name) }
    }

    static func session(_ id: String, started: Int64, documentMaximum: Int64?) -> SessionRecord {
        SessionRecord(
            id: id,
            owner: "o",
            target: "mi-0123456789abcdef0",
            documentName: "d",
            parameters: [],
            reason: "",
            status: .connected,
            startEpoch: started,
            endEpoch: nil,
            closeReason: "",
            clientTokenHash: nil,
            agentTokenHashes: [:],
            documentMaximumDuration: documentMaximum
        )
    }

    @Test("a document's limits apply within the gateway's, which are caps")
    func limits() {
        var session = Self.session("s", started: 0, documentMaximum: nil)
        #expect(GatewayState.limits(of: session, idle: 1200, maximumDuration: nil) == (1200, false, nil, false))
        session.documentIdleTimeout = 300
        session.documentMaximumDuration = 7200
        #expect(GatewayState.limits(of: session, idle: 1200, maximumDuration: nil) == (300, true, 7200, true))
        #expect(GatewayState.limits(of: session, idle: 60, maximumDuration: 3600) == (60, false, 3600, false))
    }

    @Test("the sweeper ends a session at its document's maximum duration, and at the gateway's when that is lower")
    func sweeper() throws {
        let now: Int64 = 1_700_000_000
        func session(_ id: String, startedAgo: Int64, documentMaximum: Int64?) -> SessionRecord {
            Self.session(id, started: now - startedAgo, documentMaximum: documentMaximum)
        }
        let state = GatewayState(clock: { now })
        state.restore(
            StoreSnapshot(sessions: [
                session("by-document", startedAgo: 130, documentMaximum: 120),
                session("by-gateway", startedAgo: 3700, documentMaximum: 7200),
                session("within", startedAgo: 130, documentMaximum: nil),
            ])
        )
        let ended = Dictionary(
            uniqueKeysWithValues: state.sessionsToEnd(idle: .max, maximumDuration: 3600).map { ($0.0.id, $0.reason) }
        )
        #expect(Set(ended.keys) == ["by-document", "by-gateway"])
        #expect(ended["by-document"]?.contains("its session document's maximum session duration (2 minutes)") == true)
        #expect(ended["by-gateway"]?.contains("the gateway's maximum session duration (1 hour)") == true)
    }
}
