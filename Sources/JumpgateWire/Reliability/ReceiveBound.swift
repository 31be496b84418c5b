/// The bound on what one end of a session holds for its local connections: bytes delivered by the peer
/// and not yet written to a socket (a local reader that stops, a target still being dialled). smux v2
/// bounds each stream with its window; smux v1 and basic mode have no window, so past ``limit`` the end
/// stops reading its data channel and restarts once half of it has drained. Pure: the handler carries out
/// what ``evaluate()`` returns.
public struct ReceiveBound: Sendable, Equatable {
    public enum Change: Sendable, Equatable {
        case pause
        case resume
    }

    /// The official plugin's smux v1 session buffer is 4 MiB; the same here.
    public static let defaultLimit = 4 << 20

    public let limit: Int
    public private(set) var queuedBytes = 0
    public private(set) var isPaused = false
    /// False when something else (the smux v2 window) bounds each stream: the data channel is never paused.
    public var isEnabled = true

    public init(limit: Int = Self.defaultLimit) {
        precondition(limit > 0)
        self.limit = limit
    }

    public mutating func queued(_ count: Int) {
        self.queuedBytes += count
    }

    public mutating func written(_ count: Int) {
        self.queuedBytes = max(0, self.queuedBytes - count)
    }

    /// Whether reading must stop or may restart now; nil when nothing changes.
    public mutating func evaluate() -> Change? {
        if !self.isPaused, self.isEnabled, self.queuedBytes > self.limit {
            self.isPaused = true
            return .pause
        }
        if self.isPaused, !self.isEnabled || self.queuedBytes <= self.limit / 2 {
            self.isPaused = false
            return .resume
        }
        return nil
    }
}
