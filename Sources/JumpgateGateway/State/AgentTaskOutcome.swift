/// What the gateway makes of an agent's `agent_task_complete` for a session (pure; `ControlChannelHandler`
/// carries it out): the status and reason it records, whether a client that returns later hears that reason
/// (ResumeSession's "has ended" answer, `SessionRecord.endReasonForClient`), and the reason the live data
/// channel's close carries to the client.
struct AgentTaskOutcome: Equatable {
    var status: SessionStatus
    var reason: String
    var clientHearsReason: Bool
    /// Empty for the session's own normal end (a shell that exited): the client is told only that the
    /// session ended, and an official plugin prints "Exiting session with sessionId ...".
    var closeReason: String
}

// In an extension, so that the memberwise initializer stays (the tests spell outcomes with it).
extension AgentTaskOutcome {
    init(finalTaskStatus: String, output: String) {
        let failed = finalTaskStatus == "Failed"
        let success = finalTaskStatus == "Success"
        self.status = failed ? .failed : .terminated
        // An agent reports no text when the other side ended the session: an end here (the API) was recorded
        // already, so it was the client (Ctrl+C, SIGTERM, the end of --exec).
        self.reason = !output.isEmpty ? output : failed ? "The agent reported a failure." : "Ended by the client."
        // A returning client hears the agent's failure, or another end the agent explained; not its program's
        // own end (Success), nor the "Ended by the client." guessed for an end it did not explain.
        self.clientHearsReason = failed || (!success && !output.isEmpty)
        self.closeReason = success ? "" : self.reason
    }
}
