/// Throttling of failed authentication (bad signatures, unknown or wrong keys, wrong activation codes):
/// failures are counted per key (a source address, an access key id, an activation id) in one-minute
/// windows. Only a request that fails is ever answered ThrottlingException: a correct signature or a
/// correct activation code always goes through, whatever others did (ids are not secret, and the secrets
/// are far too long to guess), so one bad actor cannot lock out a fleet behind one NAT. Pure: time is
/// passed in.
public struct FailureThrottle: Sendable {
    public let limit: Int
    public let windowSeconds: Int64
    private var windows: [String: (start: Int64, count: Int)] = [:]

    public init(limit: Int = 10, windowSeconds: Int64 = 60) {
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    /// Records one failure under each of `keys`; returns whether any of them is now over the limit
    /// (the failure is then answered ThrottlingException instead of its own error).
    public mutating func failed(_ keys: [String], now: Int64) -> Bool {
        var throttled = false
        for var key in keys {
            // A full table (the sweeper prunes it every second) takes no new key: their failures count
            // together, so made-up ids cannot grow it or make each failure scan it.
            if self.windows[key] == nil, self.windows.count >= Self.maximumKeys { key = "overflow" }
            var window = self.windows[key] ?? (now, 0)
            if now - window.start >= self.windowSeconds { window = (now, 0) }
            window.count += 1
            self.windows[key] = window
            if window.count > self.limit { throttled = true }
        }
        return throttled
    }

    /// Forgets windows that are over (the table stays small whatever the number of sources).
    public mutating func prune(now: Int64) {
        self.windows = self.windows.filter { now - $0.value.start < self.windowSeconds }
    }

    public var trackedKeys: Int { self.windows.count }
    public static let maximumKeys = 50_000
}
