import Foundation
import JumpgateWire
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

    static func take(_ refusals: inout AgentRefusals) -> AgentRefusals.Report { refusals.takeReport() }
    static func flush(_ refusals: inout AgentRefusals, now: Int64, all: Bool) -> [RefusalSummary.Line] {
        refusals.flush(now: now, all: all)
    }

    @Test("the agent's counts go with the next upload, its summary lines when their window ends")
    func agentRefusals() throws {
        var refusals = AgentRefusals(windowSeconds: 60)
        refusals.record(.invalidMessage, sessionID: "s-1", now: 10)
        refusals.record(.invalidMessage, sessionID: "s-1", now: 11)
        refusals.record(.unexpectedMessage, sessionID: "s-2", now: 12)
        #expect(Self.flush(&refusals, now: 20, all: false).isEmpty)
        let report = Self.take(&refusals)
        #expect(report.counts == [.invalidMessage: 2, .unexpectedMessage: 1] && report.lines.isEmpty)
        #expect(Self.take(&refusals).isEmpty, "counts were reported twice")
        // A failed upload puts its refusals back; the next one carries them with what came since.
        refusals.putBack(report)
        refusals.record(.smuxProtocolError, sessionID: "s-2", now: 13)
        let lines = Self.flush(&refusals, now: 70, all: false)
        #expect(lines.map(\.source) == ["s-1"] && lines.first?.count == 2)
        let next = Self.take(&refusals)
        #expect(next.counts == [.invalidMessage: 2, .unexpectedMessage: 1, .smuxProtocolError: 1])
        #expect(next.lines == lines)
        // What the gateway reads from the upload is what the agent sent.
        let body = JSONValue.object([("Records", .array([]))] + next.fields.map { ($0.0, $0.1) })
        let parsed = try #require(AgentRefusalReport(body: try JSONValue(parsing: Array(body.serialized().utf8))))
        #expect(parsed.counts == next.counts)
        #expect(
            parsed.lines == [.init(sessionID: "s-1", count: 2, types: [.invalidMessage: 2], windowStart: 10)]
        )
    }

    @Test("summary lines kept for an unreachable gateway are bounded")
    func pendingLinesBounded() {
        var refusals = AgentRefusals(windowSeconds: 1)
        for i in 0..<(AgentRefusals.maximumPendingLines + 10) {
            refusals.record(.invalidMessage, sessionID: "s-\(i)", now: 0)
        }
        _ = Self.flush(&refusals, now: 5, all: false)
        let report = Self.take(&refusals)
        #expect(report.lines.count == AgentRefusals.maximumPendingLines)
        #expect(report.counts[.invalidMessage] == AgentRefusals.maximumPendingLines + 10, "counts are never dropped")
    }

    @Test("an upload's refusal fields: each malformed one is refused, unknown types are ignored")
    func reportValidation() throws {
        func parse(_ text: String) throws -> AgentRefusalReport? {
            AgentRefusalReport(body: try JSONValue(parsing: Array(("{\"Records\":[]," + text + "}").utf8)))
        }
        func line(_ fields: String) -> String { "\"RefusalSummaries\":[{" + fields + "}]" }
        let good = "\"SessionId\":\"s-1\",\"Count\":3,\"Types\":{\"InvalidMessage\":3},\"WindowStart\":5"
        #expect(try parse(line(good))?.lines.count == 1)
        #expect(
            try parse("\"RefusedMessages\":{\"InvalidMessage\":4,\"FromTheFuture\":9}")?.counts == [.invalidMessage: 4]
        )
        #expect(AgentRefusalReport(body: ["Records": []]) == AgentRefusalReport(), "no fields: an empty report")
        for bad in [
            "\"RefusedMessages\":[1]",
            "\"RefusedMessages\":{\"InvalidMessage\":-1}",
            "\"RefusedMessages\":{\"InvalidMessage\":\"3\"}",
            "\"RefusedMessages\":{\"InvalidMessage\":100000001}",
            "\"RefusalSummaries\":{}",
            line(good.replacingOccurrences(of: "\"s-1\"", with: "\"\"")),
            line(good.replacingOccurrences(of: "\"s-1\"", with: "\"" + String(repeating: "s", count: 129) + "\"")),
            line(good.replacingOccurrences(of: "\"Count\":3", with: "\"Count\":0")),
            line(good.replacingOccurrences(of: "\"WindowStart\":5", with: "\"WindowStart\":-5")),
            line(good.replacingOccurrences(of: "{\"InvalidMessage\":3}", with: "[3]")),
            line(good.replacingOccurrences(of: ",\"Types\":{\"InvalidMessage\":3}", with: "")),
            "\"RefusalSummaries\":["
                + Array(repeating: "{" + good + "}", count: AgentRefusalReport.maximumLines + 1).joined(separator: ",")
                + "]",
        ] {
            #expect(try parse(bad) == nil, "accepted: \(bad.prefix(120))")
        }
    }
}
