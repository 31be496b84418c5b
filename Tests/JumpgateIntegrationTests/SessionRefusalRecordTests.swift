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
            refusedBy: "allow-shell",
            reason: SessionAdmission.shellsOff,
            time: 1_700_000_000_123
        )
        #expect(record["event"]?.stringValue == "SessionRefused")
        #expect(record["sessionId"]?.stringValue == "s-1")
        #expect(record["refusedBy"]?.stringValue == "allow-shell")
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

    /// `record` with `member` set to `value`, or removed when its name starts with "-".
    static func changed(_ record: JSONValue, _ member: String, _ value: JSONValue) -> JSONValue {
        let key = member.hasPrefix("-") ? String(member.dropFirst()) : member
        var members = (record.objectValue ?? []).filter { $0.key != key }
        if !member.hasPrefix("-") { members.append((key, value)) }
        return .object(members)
    }

    @Test(
        "the gateway refuses a SessionRefused without a known rule, a reason or a session, or with a connection's members",
        arguments: [
            ("refusedBy", "because"), ("-refusedBy", .null), ("refusedBy", 1), ("-reason", .null),
            ("-sessionId", .null), ("sessionId", ""), ("streamId", 1), ("destination", "127.0.0.1:22"),
            ("bytesToTarget", 5), ("owner", "alice"), ("reason", .string(String(repeating: "x", count: 1_025))),
        ] as [(String, JSONValue)]
    )
    func refusedByTheGateway(_ member: String, _ value: JSONValue) {
        let record = AgentRunner.sessionRefusedRecord(sessionID: "s-1", refusedBy: "document", reason: "no", time: 1)
        #expect(GatewayState.validConnectionRecord(record) != nil)
        #expect(GatewayState.validConnectionRecord(Self.changed(record, member, value)) == nil)
    }

    @Test("every rule the agent refuses a session by is one the gateway takes")
    func rulesAgree() {
        let documents: [JSONValue] = [[:], ["properties": ["linux": ["commands": ""]]]]
        var rules: Set<String> = ["shell-account"]
        for type in ["Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Shell"] {
            for allowShell in [false, true] {
                for document in documents {
                    if case .failure(let refusal) = SessionAdmission.decide(
                        sessionType: type,
                        allowShell: allowShell,
                        document: document
                    ) {
                        rules.insert(refusal.refusedBy)
                    }
                }
            }
        }
        #expect(rules == GatewayState.sessionRefusalRules)
    }
}
