import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire

/// What `forward` and `start-session` say about a session as it runs and ends: lines for people, or the
/// JSON events of docs/CLIENT.md.
enum SessionEvents {
    /// The gateway says the session's agent went away or came back: a line on stderr (text) or an
    /// `agent-lost` / `agent-back` event (json).
    static func agentStatus(sessionID: String, json: Bool) -> @Sendable (AgentStatusPayload) -> Void {
        { status in
            if json {
                var event: [(key: String, value: JSONValue)] = [
                    ("sessionId", .string(sessionID)), ("reason", .string(status.reason)),
                ]
                if let seconds = status.seconds { event.append(("waitSeconds", .integer(seconds))) }
                JSONEvents.emit(status.status == .lost ? "agent-lost" : "agent-back", event)
            } else {
                StatusLine.withLineCleared {
                    StandardStream.error.write("Session \(sessionID): \(status.reason)\n")
                }
            }
        }
    }

    /// How a forward ended: nothing for the user's own end in text mode, a line on stderr for a failure,
    /// and in json an `ended` event for every end (`by`: user, remote or failure).
    /// `endedWith`: another forward's session whose end ended this one (`by` is then `together`).
    static func report(_ outcome: PortForwarder.Outcome, sessionID: String, json: Bool, endedWith: String? = nil) {
        let (by, reason): (String, String)
        switch outcome {
        case .endedByUser where endedWith != nil:
            (by, reason) = ("together", "Ended with session \(endedWith ?? ""): forwards start and end together.")
        case .endedByUser: (by, reason) = ("user", "Ended here (Ctrl+C, SIGTERM or the end of --exec).")
        case .ended(let text): (by, reason) = ("remote", text)
        case .failed(let text): (by, reason) = ("failure", text)
        case .exited(let status): (by, reason) = ("remote", "The shell exited with status \(status).")
        }
        if json {
            JSONEvents.emit(
                "ended",
                [
                    ("sessionId", .string(sessionID)), ("by", .string(by)), ("reason", .string(reason)),
                    ("exitStatus", .integer(Int64(outcome.exitStatus))),
                ]
            )
        }
        switch outcome {
        case .failed(let message):
            StatusLine.withLineCleared { StandardStream.error.write("Error: \(message)\n") }
        case .ended(let reason) where !json:
            emit("Session \(sessionID) ended: \(reason)\n")
        default:
            break
        }
    }

}

/// `forward` prints its own lines, not the official plugin's; of what the forwarder says, only the
/// resume progress is kept: `resuming` and `resumed` lines (text), or events (json).
struct ForwardConsole: ForwarderConsole {
    let sessionID: String
    let json: Bool

    func write(_ text: String) {}

    func agentStatusChanged(_ status: AgentStatusPayload) {
        SessionEvents.agentStatus(sessionID: self.sessionID, json: self.json)(status)
    }

    func resumeChanged(_ change: ResumeProgress) {
        switch change {
        case .resuming:
            if self.json {
                JSONEvents.emit("resuming", [("sessionId", .string(self.sessionID))])
            } else {
                StatusLine.withLineCleared {
                    StandardStream.error.write(
                        "Session \(self.sessionID): connection to the gateway lost; resuming...\n"
                    )
                }
            }
        case .resumed(let attempts, let seconds):
            if self.json {
                JSONEvents.emit(
                    "resumed",
                    [
                        ("sessionId", .string(self.sessionID)), ("attempts", .integer(Int64(attempts))),
                        ("outageSeconds", .double(seconds)),
                    ]
                )
            } else {
                StatusLine.withLineCleared {
                    StandardStream.error.write(
                        "Session \(self.sessionID): resumed after \(DecimalText.fixed(seconds, 1)) s (\(attempts) attempt\(attempts == 1 ? "" : "s")).\n"
                    )
                }
            }
        }
    }
}
