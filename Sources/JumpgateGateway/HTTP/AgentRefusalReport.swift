import JumpgateAccess
import JumpgateWire
import NIOConcurrencyHelpers

/// What an agent reports it refused from the clients of its sessions, beside its connection records
/// (`POST /v1/connection-records/<instance-id>`): counts by type since its last report, for
/// `jumpgate_agent_refusals_total`, and its per-session summaries (one per session per interval), for the
/// audit trail. Validated like everything an agent sends: known types only, bounded numbers and sizes. The
/// agent is trusted for what it saw (as for its connection records): it can report only its own sessions.
struct AgentRefusalReport: Equatable, Sendable {
    struct Line: Equatable, Sendable {
        var sessionID: String
        var count: Int
        var types: [SessionRefusal: Int]
        var windowStart: Int64
    }

    /// The agent's id for this report: a resend (after a lost or failed answer) carries the same id, and
    /// is counted and audited once.
    var reportID: String
    var counts: [SessionRefusal: Int] = [:]
    var lines: [Line] = []

    /// The most one report may count per type, and carry as lines (an agent reports every second).
    static let maximumCount = 100_000_000
    static let maximumLines = 1_000
    /// How far a summary's window start may be from the gateway's clock (the agent's clock may be off, but
    /// not by more than this; and an absurd time is not written into the audit trail).
    static let windowSkewSeconds: ClosedRange<Int64> = -30 * 86_400...86_400

    /// The report in an upload's body: nil when the body has none, `.some(nil)` when its fields are
    /// malformed (then ignored whole: known types only, bounded numbers and sizes, a line's count the sum of
    /// its types, its window near `now`).
    static func parse(_ body: JSONValue, now: Int64) -> AgentRefusalReport?? {
        guard body["RefusedMessages"] != nil || body["RefusalSummaries"] != nil || body["ReportId"] != nil else {
            return .none
        }
        return .some(AgentRefusalReport(body: body, now: now))
    }

    private init?(body: JSONValue, now: Int64) {
        guard let reportID = body["ReportId"]?.stringValue, (1...64).contains(reportID.utf8.count) else {
            return nil
        }
        self.reportID = reportID
        if let counts = body["RefusedMessages"] {
            guard let members = counts.objectValue, members.count <= SessionRefusal.allCases.count * 2 else {
                return nil
            }
            for (key, value) in members {
                guard let count = value.int64Value, (0...Int64(Self.maximumCount)).contains(count) else { return nil }
                // A type this gateway does not know (a newer agent's) is not counted, not an error.
                guard let type = SessionRefusal(rawValue: key) else { continue }
                self.counts[type, default: 0] = min(Self.maximumCount, self.counts[type, default: 0] + Int(count))
            }
        }
        if let lines = body["RefusalSummaries"] {
            guard let lines = lines.arrayValue, lines.count <= Self.maximumLines else { return nil }
            for line in lines {
                guard let sessionID = line["SessionId"]?.stringValue, (1...128).contains(sessionID.utf8.count),
                    let count = line["Count"]?.int64Value, (1...Int64(Self.maximumCount)).contains(count),
                    let windowStart = line["WindowStart"]?.int64Value,
                    // Compared, never subtracted: an agent's Int64.min must not overflow here.
                    windowStart >= now + Self.windowSkewSeconds.lowerBound,
                    windowStart <= now + Self.windowSkewSeconds.upperBound,
                    let types = line["Types"]?.objectValue,
                    (1...SessionRefusal.allCases.count * 2).contains(types.count)
                else { return nil }
                var known: [SessionRefusal: Int] = [:]
                var sum: Int64 = 0
                for (key, value) in types {
                    guard let n = value.int64Value, (1...Int64(Self.maximumCount)).contains(n) else { return nil }
                    sum += n
                    if let type = SessionRefusal(rawValue: key) { known[type, default: 0] += Int(n) }
                }
                guard sum == count else { return nil }
                self.lines.append(Line(sessionID: sessionID, count: Int(count), types: known, windowStart: windowStart))
            }
        }
    }

    init(reportID: String, counts: [SessionRefusal: Int] = [:], lines: [Line] = []) {
        self.reportID = reportID
        self.counts = counts
        self.lines = lines
    }
}

extension GatewayState {
    /// Counts an agent's refusals and audits its summaries: one record per summary line, on the session's
    /// owner, for sessions that run on this agent (a line naming another agent's session is ignored).
    /// Returns how many of its lines were for this agent's sessions (and audited), or nil for a resend of
    /// a report already recorded (nothing is counted or audited again).
    @discardableResult
    func recordAgentRefusals(_ report: AgentRefusalReport, instanceID: String, source: String) -> Int? {
        let owned = self.storage.withLockedValue { storage -> [(AgentRefusalReport.Line, User?)]? in
            // Remembered apart from connection-record ids (a flood of reports cannot push those out), per
            // agent (another agent's report with the same id is another report).
            guard storage.rememberRefusalReport(instanceID + " " + report.reportID) else { return nil }
            return report.lines.compactMap { line -> (AgentRefusalReport.Line, User?)? in
                guard let session = storage.sessions[line.sessionID], session.target == instanceID else { return nil }
                return (line, storage.directory.users[session.owner])
            }
        }
        guard let owned else { return nil }  // a resend: counted and audited the first time
        for (type, count) in report.counts where count > 0 { self.metrics.agentRefused(type, count: count) }
        guard let audit = self.audit else { return owned.count }
        // The record's time is the gateway's, as for connection records; the agent's window start is beside it.
        let time = self.clock()
        for (line, owner) in owned {
            let types = line.types.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { ($0.key.rawValue, JSONValue.integer(Int64($0.value))) }
            let (record, index) = AuditRecords.serviceEvent(
                name: "SessionMessagesRefused",
                time: time,
                user: owner,
                sourceIP: source,
                details: [
                    "count": .integer(Int64(line.count)), "refusalTypes": .object(types),
                    "windowStart": .string(AuditRecords.isoTime(line.windowStart)),
                    "instanceId": .string(instanceID),
                ],
                resources: self.resources,
                error: (
                    "SessionMessagesRefused", "\(line.count) message(s) from the session's client refused by the agent"
                ),
                target: instanceID,
                sessionID: line.sessionID
            )
            audit.append(record, time: time, index: index)
        }
        return owned.count
    }
}
