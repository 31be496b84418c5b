/// Refusals, summarised: one line per source per window (a minute unless told; its count,
/// the error types and up to five access key ids), so a flood can neither hide who sent it nor fill the log.
/// Pure: the owner asks for the lines of windows that are over. The gateway summarises unauthenticated or
/// failed requests by source address; the agent, messages it refused within a session, by session.
public struct RefusalSummary: Sendable {
    public struct Line: Sendable, Equatable {
        public var source: String
        public var count: Int
        /// Error type -> how many.
        public var types: [String: Int]
        /// Up to five access key ids (or instance / activation ids) named by the refused requests.
        public var keyIDs: [String]
        public var windowStart: Int64

        public init(source: String, count: Int, types: [String: Int], keyIDs: [String], windowStart: Int64) {
            self.source = source
            self.count = count
            self.types = types
            self.keyIDs = keyIDs
            self.windowStart = windowStart
        }
    }

    public let windowSeconds: Int64
    private var open: [String: Line] = [:]
    /// At most this many sources are summarised separately in a window; the rest as "other".
    public let maximumSources: Int

    public init(windowSeconds: Int64 = 60, maximumSources: Int = 10_000) {
        self.windowSeconds = windowSeconds
        self.maximumSources = maximumSources
    }

    public mutating func record(source: String, type: String, keyID: String?, now: Int64) {
        let source = self.open[source] != nil || self.open.count < self.maximumSources ? source : "other"
        var line = self.open[source] ?? Line(source: source, count: 0, types: [:], keyIDs: [], windowStart: now)
        line.count += 1
        line.types[type, default: 0] += 1
        if let keyID, !keyID.isEmpty, line.keyIDs.count < 5, !line.keyIDs.contains(keyID) {
            line.keyIDs.append(String(keyID.prefix(64)))
        }
        self.open[source] = line
    }

    /// The lines whose minute is over (or all of them with `all`), removed from the summary.
    public mutating func due(now: Int64, all: Bool = false) -> [Line] {
        let due = self.open.values.filter { all || now - $0.windowStart >= self.windowSeconds }
        for line in due { self.open[line.source] = nil }
        return due.sorted { $0.source < $1.source }
    }
}
