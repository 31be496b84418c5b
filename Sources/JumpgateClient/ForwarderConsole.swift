import FoundationEssentials
import JumpgateNIO
import JumpgateWire

/// Where a forwarder writes the lines a person (or a tool waiting on a pipe) reads. Every line is
/// flushed as it is written.
public protocol ForwarderConsole: Sendable {
    func write(_ text: String)
    /// The data channel dropped and is being resumed, or was resumed (default: a line on stderr, which
    /// leaves standard output to the official plugin's lines).
    func resumeChanged(_ change: ResumeProgress)
    /// The gateway says the session's agent went away or came back (default: its reason as a line).
    func agentStatusChanged(_ status: AgentStatusPayload)
}

/// Progress of resuming a session whose connection to the gateway dropped.
public enum ResumeProgress: Sendable, Equatable {
    case resuming
    case resumed(attempts: Int, seconds: Double)
}

extension ForwarderConsole {
    public func agentStatusChanged(_ status: AgentStatusPayload) {
        self.write("\n\(status.reason)\n")
    }

    public func resumeChanged(_ change: ResumeProgress) {
        switch change {
        case .resuming:
            StandardStream.error.write("Connection to the gateway lost; resuming the session...\n")
        case .resumed(let attempts, let seconds):
            let tries = attempts == 1 ? "1 attempt" : "\(attempts) attempts"
            StandardStream.error.write("Session resumed after \(DecimalText.fixed(seconds, 1)) s (\(tries)).\n")
        }
    }
}

public struct StandardOutputConsole: ForwarderConsole {
    public init() {}
    /// A line that cannot be written (a terminal that hung up, a closed pipe) is dropped, not fatal.
    public func write(_ text: String) {
        StandardStream.output.write(text)
    }
}

/// The same lines on standard error: for sessions whose standard output is the stream itself
/// (AWS-StartSSHSession under ssh's ProxyCommand), so nothing but the stream reaches ssh.
public struct StandardErrorConsole: ForwarderConsole {
    public init() {}
    public func write(_ text: String) {
        StandardStream.error.write(text)
    }

    /// The console for a session started with `documentName`.
    public static func forDocument(_ documentName: String?) -> any ForwarderConsole {
        SessionDocuments.outputIsTheStream(documentName) ? StandardErrorConsole() : StandardOutputConsole()
    }
}

/// Session documents the client treats specially.
public enum SessionDocuments {
    /// SSH to the agent's own sshd; the client's standard input and output are the stream.
    public static let ssh = "AWS-StartSSHSession"
    /// A command whose standard output is the client's, byte for byte.
    public static let nonInteractiveCommand = "AWS-StartNonInteractiveCommand"

    /// Whether the client's standard output carries the session's stream and nothing else: the client's own
    /// lines go to standard error.
    public static func outputIsTheStream(_ documentName: String?) -> Bool {
        documentName == Self.ssh || documentName == Self.nonInteractiveCommand
    }
}
