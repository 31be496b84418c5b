import JumpgateNIO
import JumpgateWire

/// A session this agent refused (shells off, a session type it does not know, a command document without a
/// usable command, an account it will not start a shell as) goes into the connection journal beside the
/// connection records, and reaches the gateway's audit trail as a `SessionRefused` record under the
/// session's owner. The session's end (`SessionEnded`, Failed) says the same, but it waits only in memory
/// until the gateway acknowledges it and names no rule; the journal keeps the refusal across a restart of
/// the agent or a gateway that cannot be reached.
extension AgentRunner {
    /// The most of a reason a record carries (the gateway takes strings up to 1,024 bytes).
    static let maximumRefusalReasonBytes = 1_000

    /// The record: `refusedBy` names the rule (``SessionAdmission/Refusal/refusedBy``, or `shell-account`).
    static func sessionRefusedRecord(sessionID: String, refusedBy: String, reason: String, time: Int64) -> JSONValue {
        var bytes = 0
        let kept = reason.prefix {
            bytes += $0.utf8.count
            return bytes <= Self.maximumRefusalReasonBytes
        }
        return .object([
            ("id", .string(SystemRandom.id().description)), ("event", "SessionRefused"), ("time", .integer(time)),
            ("sessionId", .string(sessionID)), ("refusedBy", .string(refusedBy)), ("reason", .string(String(kept))),
        ])
    }

    /// Journals the refusal and sends it with the next upload.
    func journalSessionRefusal(_ sessionID: String, refusedBy: String, reason: String) {
        self.journal.append(
            Self.sessionRefusedRecord(
                sessionID: sessionID,
                refusedBy: refusedBy,
                reason: reason,
                time: Int64(WallClock.nowMilliseconds())
            )
        )
        self.scheduleReport()
    }
}
