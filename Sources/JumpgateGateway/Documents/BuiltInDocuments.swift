import JumpgateWire

/// The AWS-managed session documents Jumpgate serves, with the content SSM gives them (parameters and
/// properties; descriptions shortened). They are read-only: custom documents are created beside them.
enum BuiltInDocuments {
    /// The session document StartSession uses when it names none, as in SSM: a shell.
    static let shell = "SSM-SessionManagerRunShell"

    static let portPattern =
        "^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
    static let localPortPattern =
        "^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"

    static func parameter(_ description: String, pattern: String? = nil, default value: String? = nil) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [("type", "String"), ("description", .string(description))]
        if let pattern { members.append(("allowedPattern", .string(pattern))) }
        if let value { members.append(("default", .string(value))) }
        return .object(members)
    }

    static func document(
        _ description: String,
        _ sessionType: String,
        parameters: [(key: String, value: JSONValue)] = [],
        properties: JSONValue,
        inputs: JSONValue? = nil
    ) -> String {
        var members: [(key: String, value: JSONValue)] = [
            ("schemaVersion", "1.0"), ("description", .string(description)), ("sessionType", .string(sessionType)),
        ]
        if !parameters.isEmpty { members.append(("parameters", .object(parameters))) }
        if let inputs { members.append(("inputs", inputs)) }
        members.append(("properties", properties))
        return JSONValue.object(members).serialized()
    }

    static func command(_ sessionType: String, _ description: String) -> String {
        Self.document(
            description,
            sessionType,
            parameters: [("command", Self.parameter("The command to run on the instance"))],
            properties: ["linux": ["commands": "{{ command }}", "runAsElevated": false]]
        )
    }

    /// The local port of both port-forwarding documents.
    static let localPortParameter: (key: String, value: JSONValue) = (
        "localPortNumber",
        Self.parameter(
            "Port number on the local machine (0: any free port)",
            pattern: Self.localPortPattern,
            default: "0"
        )
    )

    /// Each built-in document's content, by name.
    static let contents: [String: String] = [
        "AWS-StartPortForwardingSession": Self.document(
            "Port forwarding to a port on the instance",
            "Port",
            parameters: [
                ("portNumber", Self.parameter("Port number of the server on the instance", pattern: Self.portPattern)),
                Self.localPortParameter,
            ],
            properties: [
                "portNumber": "{{ portNumber }}", "type": "LocalPortForwarding",
                "localPortNumber": "{{ localPortNumber }}",
            ]
        ),
        "AWS-StartPortForwardingSessionToRemoteHost": Self.document(
            "Port forwarding to a host the instance reaches",
            "Port",
            parameters: [
                ("host", Self.parameter("The host to forward to (a DNS name or an IP address)")),
                ("portNumber", Self.parameter("Port number of the remote host", pattern: Self.portPattern)),
                Self.localPortParameter,
            ],
            properties: [
                "host": "{{ host }}", "portNumber": "{{ portNumber }}", "type": "LocalPortForwarding",
                "localPortNumber": "{{ localPortNumber }}",
            ]
        ),
        // The agent's own sshd (localhost; the agent's allow-list must permit it): ssh's ProxyCommand.
        "AWS-StartSSHSession": Self.document(
            "SSH to the instance's own sshd (ssh's ProxyCommand)",
            "Port",
            parameters: [
                ("portNumber", Self.parameter("Port number of sshd", pattern: Self.portPattern, default: "22"))
            ],
            properties: ["portNumber": "{{ portNumber }}"]
        ),
        Self.shell: Self.document(
            "A shell on the instance (the account's shell preferences)",
            "Standard_Stream",
            properties: [:],
            inputs: [
                "runAsEnabled": false, "runAsDefaultUser": "", "idleSessionTimeout": "", "shellProfile": ["linux": ""],
            ]
        ),
        "AWS-StartInteractiveCommand": Self.command("InteractiveCommands", "A command on a terminal"),
        "AWS-StartNonInteractiveCommand": Self.command(
            "NonInteractiveCommands",
            "A command whose output, errors and exit code come back"
        ),
    ]

    /// The parsed built-ins (their content is Jumpgate's own: it parses, as a test checks).
    static let parsed: [String: SessionDocumentContent] = Self.contents.compactMapValues {
        try? SessionDocumentContent.parse($0)
    }
}
