import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers

/// What the agent refused from clients inside sessions (garbage or forged messages, wrong payload types,
/// smux violations): counted per type for the gateway's `jumpgate_agent_refusals_total` (sent with the
/// next connection-record upload), and summarised one log line per session per window
/// (`refused session messages`; `--refusal-summary-interval`), the lines also sent to the gateway for its
/// audit trail. Pure: time is passed in.
struct AgentRefusals: Sendable {
    /// What the next upload carries.
    struct Report: Sendable, Equatable {
        /// Sent with every attempt of this report, so the gateway counts and audits it once.
        var id = SystemRandom.id().description
        var counts: [SessionRefusal: Int] = [:]
        var lines: [RefusalSummary.Line] = []
        var isEmpty: Bool { self.counts.isEmpty && self.lines.isEmpty }

        /// The upload's fields beside `Records`.
        var fields: [(String, JSONValue)] {
            guard !self.isEmpty else { return [] }
            let counts = self.counts.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { ($0.key.rawValue, JSONValue.integer(Int64($0.value))) }
            let lines = self.lines.map { line -> JSONValue in
                .object([
                    ("SessionId", .string(line.source)),
                    ("Count", .integer(Int64(line.count))),
                    (
                        "Types",
                        .object(line.types.sorted { $0.key < $1.key }.map { ($0.key, .integer(Int64($0.value))) })
                    ),
                    ("WindowStart", .integer(line.windowStart)),
                ])
            }
            return [
                ("ReportId", .string(self.id)), ("RefusedMessages", .object(counts)),
                ("RefusalSummaries", .array(lines)),
            ]
        }
    }

    /// Summary lines kept for the gateway while it cannot be reached; older ones go (their counts were
    /// reported, and the agent's own log has them).
    static let maximumPendingLines = 1_000
    /// The most a report counts per type (the gateway's bound); a flood beyond it in one report is clipped.
    static let maximumCount = 100_000_000

    private var summary: RefusalSummary
    private var pending = Report()
    /// The report being sent, resent as it is (same id) until the gateway takes it; what comes meanwhile
    /// waits in `pending` for the next one.
    private var inFlight: Report?
    /// Whether a summary flush is scheduled (one per window).
    var flushScheduled = false

    init(windowSeconds: Int64 = 60) {
        self.summary = RefusalSummary(windowSeconds: max(1, windowSeconds), maximumSources: 10_000)
    }

    var windowSeconds: Int64 { self.summary.windowSeconds }

    mutating func record(_ refusal: SessionRefusal, sessionID: String, now: Int64) {
        self.pending.counts[refusal] = min(Self.maximumCount, self.pending.counts[refusal, default: 0] + 1)
        self.summary.record(source: sessionID, type: refusal.rawValue, keyID: nil, now: now)
    }

    /// The summary lines to log now (all of them with `all`); they also join the next upload.
    mutating func flush(now: Int64, all: Bool) -> [RefusalSummary.Line] {
        let lines = self.summary.due(now: now, all: all)
        self.pending.lines.append(contentsOf: lines)
        if self.pending.lines.count > Self.maximumPendingLines {
            self.pending.lines.removeFirst(self.pending.lines.count - Self.maximumPendingLines)
        }
        return lines
    }

    /// What the next upload carries: the report in flight if there is one (it failed: sent again as it
    /// was), else what is pending, which then becomes the report in flight.
    mutating func nextReport() -> Report {
        if let inFlight = self.inFlight { return inFlight }
        guard !self.pending.isEmpty else { return Report() }
        self.inFlight = self.pending
        self.pending = Report()
        return self.inFlight ?? Report()
    }

    /// The gateway took the report with this id.
    mutating func delivered(_ id: String) {
        if self.inFlight?.id == id { self.inFlight = nil }
    }
}

extension AgentRunner {
    /// A session refused something from its client (on the session's event loop).
    func messageRefused(_ refusal: SessionRefusal, sessionID: String) {
        let now = WallClock.nowSeconds()
        let scheduleFlush = self.refusals.withLockedValue { refusals -> Bool in
            refusals.record(refusal, sessionID: sessionID, now: now)
            defer { refusals.flushScheduled = true }
            return !refusals.flushScheduled
        }
        self.scheduleReport()
        guard scheduleFlush else { return }
        let window = self.refusals.withLockedValue { $0.windowSeconds }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(window) * 1_000_000_000)
            self.flushRefusals(all: true, scheduled: true)
        }
    }

    /// Logs the refusal summary (one line per session) and sends it with the next upload (`report`; at
    /// shutdown the caller uploads at once). `scheduled`: the interval's flush, after which the next
    /// refusal schedules another (a shutdown flush leaves the schedule alone).
    func flushRefusals(all: Bool, scheduled: Bool = false, report: Bool = true) {
        let now = WallClock.nowSeconds()
        let lines = self.refusals.withLockedValue { refusals in
            if scheduled { refusals.flushScheduled = false }
            return refusals.flush(now: now, all: all)
        }
        guard !lines.isEmpty else { return }
        for line in lines {
            let types = line.types.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            self.logger.warning(
                "refused session messages",
                metadata: [
                    "jumpgate.session_id": "\(line.source)", "count": "\(line.count)",
                    "types": "\(types.joined(separator: ","))",
                ]
            )
        }
        if report { self.scheduleReport() }
    }
}
