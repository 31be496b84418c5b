import JumpgateWire

/// Whether this agent serves a session the gateway asks it to start: a pure decision (the refusal's text
/// reaches the user through the gateway, so it is short: a WebSocket close reason carries 123 bytes).
public enum SessionAdmission {
    public enum Kind: Hashable, Sendable {
        case port
        case shell
        /// A command run by the account's shell (`-c`): on a terminal of its own (InteractiveCommands), or
        /// with its standard output and error streamed apart and its exit code sent (NonInteractiveCommands).
        case command(String, interactive: Bool)
    }

    public struct Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        /// The rule that refused, as the audit trail names it (`SessionRefused`'s `refusedBy`):
        /// `allow-shell` (the agent serves no shells or commands), `session-type` (none it knows), or
        /// `document` (a command document without a usable command).
        public let refusedBy: String
        public let description: String

        init(_ refusedBy: String, _ description: String) {
            self.refusedBy = refusedBy
            self.description = description
        }
    }

    public static let shellsOff =
        "Shell sessions are off on this agent: start it with 'jumpgate agent run --allow-shell'."
    public static let commandsOff =
        "Command sessions are off on this agent: start it with 'jumpgate agent run --allow-shell'."
    /// A command longer than this is refused (the argument limit of one exec is far above it; a command
    /// document is a command line, not a script to upload).
    public static let maximumCommandLength = 16_384

    /// Port sessions always (their destinations are the allow-list's to refuse, per connection); shells and
    /// commands only with `--allow-shell` (a command is as powerful as a shell); anything else never.
    /// `document`: the session document's content, whose `properties.linux.commands` holds a command.
    public static func decide(
        sessionType: String,
        allowShell: Bool,
        document: JSONValue = [:]
    ) -> Result<
        Kind, Refusal
    > {
        switch sessionType {
        case "Port":
            return .success(.port)
        case "Standard_Stream":
            return allowShell ? .success(.shell) : .failure(Refusal("allow-shell", Self.shellsOff))
        case "InteractiveCommands", "NonInteractiveCommands":
            guard allowShell else { return .failure(Refusal("allow-shell", Self.commandsOff)) }
            return Self.command(in: document).map { .command($0, interactive: sessionType == "InteractiveCommands") }
        default:
            return .failure(Refusal("session-type", "Unknown session type '\(sessionType.prefix(40))'."))
        }
    }

    /// The command a command document gives (`properties.linux.commands`: a string, or a list of lines as
    /// SSM documents also write it), checked.
    static func command(in document: JSONValue) -> Result<String, Refusal> {
        let value = document["properties"]?["linux"]?["commands"]
        let command: String
        if let text = value?.stringValue {
            command = text
        } else if let lines = value?.arrayValue, lines.allSatisfy({ $0.stringValue != nil }) {
            command = lines.compactMap(\.stringValue).joined(separator: "\n")
        } else {
            return .failure(Refusal("document", "The session document gives no command to run."))
        }
        guard !command.allSatisfy(\.isWhitespace) else {
            return .failure(Refusal("document", "The command to run is empty."))
        }
        guard command.utf8.count <= Self.maximumCommandLength else {
            return .failure(Refusal("document", "The command is longer than \(Self.maximumCommandLength) bytes."))
        }
        guard !command.utf8.contains(0) else {
            return .failure(Refusal("document", "The command contains a NUL byte."))
        }
        return .success(command)
    }
}
