import Foundation
import JumpgateWire
import NIOEmbedded
import Testing

@testable import JumpgateAgent
@testable import JumpgateGateway

/// The refusal summaries (pure): the gateway's per-source lines, the agent's per-session ones, and the
/// report an agent sends with its connection records, which the gateway validates field by field.
@Suite("Refusal summaries and the agent's refusal report")
struct RefusalReportTests {
    @Test("one line per source per window, with its count, types and at most five key ids")
    func summaryWindows() {
        var summary = RefusalSummary(windowSeconds: 60, maximumSources: 2)
        for i in 0..<7 { summary.record(source: "a", type: "T\(i % 2)", keyID: "k\(i)", now: 100) }
        summary.record(source: "b", type: "T0", keyID: nil, now: 130)
        summary.record(source: "c", type: "T0", keyID: nil, now: 130)  // a third source: counted as other
        #expect(summary.due(now: 159).isEmpty, "a window ended early")
        let first = summary.due(now: 160)
        #expect(first.map(\.source) == ["a"])
        #expect(first.first?.count == 7 && first.first?.types == ["T0": 4, "T1": 3])
        #expect(first.first?.keyIDs == ["k0", "k1", "k2", "k3", "k4"])
        #expect(summary.due(now: 160).isEmpty, "a line came twice")
        let rest = summary.due(now: 160, all: true)
        #expect(rest.map(\.source) == ["b", "other"])
    }

    static func next(_ refusals: inout AgentRefusals) -> AgentRefusals.Report { refusals.nextReport() }
    static func flush(_ refusals: inout AgentRefusals, now: Int64, all: Bool) -> [RefusalSummary.Line] {
        refusals.flush(now: now, all: all)
    }
    static let now: Int64 = 1_700_000_000

    /// The report as the gateway reads it from an upload's body.
    static func parsed(_ report: AgentRefusals.Report, now: Int64 = Self.now) throws -> AgentRefusalReport?? {
        let body = JSONValue.object([("Records", .array([]))] + report.fields.map { ($0.0, $0.1) })
        return AgentRefusalReport.parse(try JSONValue(parsing: Array(body.serialized().utf8)), now: now)
    }

    @Test(
        "the agent's counts go with the next upload, its summary lines when their window ends; a failed report goes again as it was"
    )
    func agentRefusals() throws {
        var refusals = AgentRefusals(windowSeconds: 60)
        refusals.record(.invalidMessage, sessionID: "s-1", now: Self.now + 10)
        refusals.record(.invalidMessage, sessionID: "s-1", now: Self.now + 11)
        refusals.record(.unexpectedMessage, sessionID: "s-2", now: Self.now + 12)
        #expect(Self.flush(&refusals, now: Self.now + 20, all: false).isEmpty)
        let report = Self.next(&refusals)
        #expect(report.counts == [.invalidMessage: 2, .unexpectedMessage: 1] && report.lines.isEmpty)
        // Not delivered yet (the upload failed): the same report, same id, whatever came since.
        refusals.record(.smuxProtocolError, sessionID: "s-2", now: Self.now + 13)
        #expect(Self.next(&refusals) == report)
        refusals.delivered(report.id)
        let lines = Self.flush(&refusals, now: Self.now + 70, all: false)
        #expect(lines.map(\.source) == ["s-1"] && lines.first?.count == 2)
        let second = Self.next(&refusals)
        #expect(second.id != report.id)
        #expect(second.counts == [.smuxProtocolError: 1] && second.lines == lines)
        refusals.delivered(second.id)
        #expect(Self.next(&refusals).isEmpty, "a delivered report came again")
        // What the gateway reads from the upload is what the agent sent.
        let read = try #require(try Self.parsed(second) ?? nil)
        #expect(read.reportID == second.id && read.counts == second.counts)
        #expect(
            read.lines == [.init(sessionID: "s-1", count: 2, types: [.invalidMessage: 2], windowStart: Self.now + 10)]
        )
    }

    @Test("summary lines kept for an unreachable gateway are bounded; counts are clipped, never dropped")
    func pendingLinesBounded() {
        var refusals = AgentRefusals(windowSeconds: 1)
        for i in 0..<(AgentRefusals.maximumPendingLines + 10) {
            refusals.record(.invalidMessage, sessionID: "s-\(i)", now: 0)
        }
        _ = Self.flush(&refusals, now: 5, all: false)
        let report = Self.next(&refusals)
        #expect(report.lines.count == AgentRefusals.maximumPendingLines)
        #expect(report.counts[.invalidMessage] == AgentRefusals.maximumPendingLines + 10)
    }

    @Test("a resent report is counted and audited once; an agent's lines count only for its own sessions")
    func resendRecordedOnce() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish(acceptAlreadyClosed: true) }
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, _) = try GatewayStateTests.portSession(state, target: target)
        let line = { (id: String) in
            AgentRefusalReport.Line(sessionID: id, count: 1, types: [.invalidMessage: 1], windowStart: Self.now)
        }
        let report = AgentRefusalReport(
            reportID: "r-1",
            counts: [.invalidMessage: 2],
            lines: [line(session.id), line("s-nobody")]
        )
        #expect(state.recordAgentRefusals(report, instanceID: target, source: "127.0.0.1") == 1)
        #expect(state.recordAgentRefusals(report, instanceID: target, source: "127.0.0.1") == nil, "recorded twice")
        // Another agent: the same id is another report, and the session is not its own.
        #expect(state.recordAgentRefusals(report, instanceID: "mi-0fffffffffffffff0", source: "127.0.0.1") == 0)
    }

    @Test("an upload's refusal fields: each malformed report is refused whole, unknown types are ignored")
    func reportValidation() throws {
        func parse(_ text: String) throws -> AgentRefusalReport?? {
            AgentRefusalReport.parse(
                try JSONValue(parsing: Array(("{\"Records\":[],\"ReportId\":\"r-1\"," + text + "}").utf8)),
                now: Self.now
            )
        }
        func line(_ fields: String) -> String { "\"RefusalSummaries\":[{" + fields + "}]" }
        let good = "\"SessionId\":\"s-1\",\"Count\":3,\"Types\":{\"InvalidMessage\":3},\"WindowStart\":\(Self.now)"
        #expect(try parse(line(good))??.lines.count == 1)
        #expect(
            try parse("\"RefusedMessages\":{\"InvalidMessage\":4,\"FromTheFuture\":9}")??.counts == [.invalidMessage: 4]
        )
        let none = AgentRefusalReport.parse(["Records": []], now: Self.now)
        #expect(none == .none, "no fields: no report")
        #expect(
            AgentRefusalReport.parse(["Records": [], "RefusedMessages": ["InvalidMessage": 1]], now: Self.now)
                == .some(nil),
            "a report without its id"
        )
        let lines = Array(repeating: "{" + good + "}", count: AgentRefusalReport.maximumLines + 1)
        for bad in [
            "\"RefusedMessages\":[1]",
            "\"RefusedMessages\":{\"InvalidMessage\":-1}",
            "\"RefusedMessages\":{\"InvalidMessage\":\"3\"}",
            "\"RefusedMessages\":{\"InvalidMessage\":100000001}",
            "\"RefusalSummaries\":{}",
            line(good.replacingOccurrences(of: "\"s-1\"", with: "\"\"")),
            line(good.replacingOccurrences(of: "\"s-1\"", with: "\"" + String(repeating: "s", count: 129) + "\"")),
            line(good.replacingOccurrences(of: "\"Count\":3", with: "\"Count\":0")),
            line(good.replacingOccurrences(of: "\"Count\":3", with: "\"Count\":4")),
            line(good.replacingOccurrences(of: "\(Self.now)", with: "-5")),
            line(good.replacingOccurrences(of: "\(Self.now)", with: "67770000000000000")),
            line(good.replacingOccurrences(of: "\(Self.now)", with: "-9223372036854775808")),
            line(good.replacingOccurrences(of: "\(Self.now)", with: "9223372036854775807")),
            line(good.replacingOccurrences(of: "\(Self.now)", with: "\(Self.now + 2 * 86_400)")),
            line(good.replacingOccurrences(of: "{\"InvalidMessage\":3}", with: "[3]")),
            line(good.replacingOccurrences(of: "{\"InvalidMessage\":3}", with: "{}")),
            line(good.replacingOccurrences(of: ",\"Types\":{\"InvalidMessage\":3}", with: "")),
            "\"RefusalSummaries\":[" + lines.joined(separator: ",") + "]",
        ] {
            #expect(try parse(bad) == .some(nil), "accepted: \(bad.prefix(120))")
        }
    }
}
