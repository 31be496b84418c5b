import JumpgateWire
import Testing

@testable import JumpgateAgent
@testable import JumpgateGateway

/// A session the agent refused, as the agent journals it and as the gateway's upload endpoint checks it
/// (the end-to-end path, through real processes, is in ShellSessionTests, CommandSessionTests and
/// UnprivilegedTests).
@Suite("The agent's record of a refused session")
struct SessionRefusalRecordTests {
    @Test("the record names the session, the rule and the reason, and the gateway takes it")
    func record() throws {
        let record = AgentRunner.sessionRefusedRecord(
            sessionID: "s-1",
            refusedBy: "shell-account",
            reason: SessionAdmission.shellsOff,
            time: 1_700_000_000_123
        )
        #expect(record["event"]?.stringValue == "SessionRefused")
        #expect(record["sessionId"]?.stringValue == "s-1")
        #expect(record["refusedBy"]?.stringValue == "shell-account")
        #expect(record["reason"]?.stringValue == SessionAdmission.shellsOff)
        #expect(record["time"]?.int64Value == 1_700_000_000_123)
        #expect(record["id"]?.stringValue?.isEmpty == false)
        #expect(GatewayState.validConnectionRecord(record) != nil)
        // Each record has its own id: a resend is recognised by it, two refusals are two records.
        let again = AgentRunner.sessionRefusedRecord(sessionID: "s-1", refusedBy: "x", reason: "y", time: 1)
        #expect(again["id"] != record["id"])
    }

    @Test("a reason longer than the gateway takes is cut at a character, not refused with its record")
    func longReason() throws {
        // Two bytes a character: the cut must not split one.
        let reason = String(repeating: "é", count: 2_000)
        let record = AgentRunner.sessionRefusedRecord(
            sessionID: "s-1",
            refusedBy: "shell-account",
            reason: reason,
            time: 1
        )
        let kept = try #require(record["reason"]?.stringValue)
        #expect(kept.utf8.count == AgentRunner.maximumRefusalReasonBytes)
        #expect(reason.hasPrefix(kept))
        #expect(GatewayState.validConnectionRecord(record) != nil)
        // What the cut prevents: the same record with the whole reason is refused by the gateway.
        var members = record.objectValue ?? []
        members.removeAll { $0.key == "reason" }
        members.append(("reason", .string(reason)))
        #expect(GatewayState.validConnectionRecord(.object(members)) == nil)
    }
}
