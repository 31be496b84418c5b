/// Whether this agent serves a session the gateway asks it to start: a pure decision (the refusal's text
/// reaches the user through the gateway, so it is short: a WebSocket close reason carries 123 bytes).
public enum SessionAdmission {
    public enum Kind: Hashable, Sendable {
        case port
        case shell
    }

    public struct Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
    }

    public static let shellsOff =
        "Shell sessions are off on this agent: start it with 'jumpgate agent run --allow-shell'."

    /// Port sessions always (their destinations are the allow-list's to refuse, per connection); shells only
    /// with `--allow-shell`; commands not yet; anything else never.
    public static func decide(sessionType: String, allowShell: Bool) -> Result<Kind, Refusal> {
        switch sessionType {
        case "Port":
            return .success(.port)
        case "Standard_Stream":
            return allowShell ? .success(.shell) : .failure(Refusal(description: Self.shellsOff))
        case "InteractiveCommands", "NonInteractiveCommands":
            return .failure(Refusal(description: "This agent does not serve \(sessionType) sessions yet."))
        default:
            return .failure(Refusal(description: "Unknown session type '\(sessionType.prefix(40))'."))
        }
    }
}
