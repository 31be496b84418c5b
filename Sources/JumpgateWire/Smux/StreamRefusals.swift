/// Which stream the agent refused, on the client. The official agent signals a stream it could not
/// connect with a ConnectToPortError flag that names no stream, followed by that stream's FIN; Jumpgate's
/// `connect-errors` extension sends the stream id and the agent's reason before the flag. The flag
/// belongs to the next FIN of a stream that never got a byte from the agent (or of the stream a reason
/// named), not to any FIN: a stream that was answered and then ended normally is not a refusal. Pure.
public struct StreamRefusals: Sendable {
    /// Reasons held at most (a FIN removes its stream's); more are dropped rather than kept for ever.
    public static let maximumReasons = 1024

    public struct Refusal: Sendable, Equatable {
        /// The agent's reason (`connect-errors`); nil from an official agent.
        public var reason: String?
        public init(reason: String?) { self.reason = reason }
    }

    private var flagPending = false
    private var reasons: [SmuxStreamID: String] = [:]

    public init() {}

    /// A ConnectToPortError flag arrived.
    public mutating func flagReceived() {
        self.flagPending = true
    }

    /// A `connect-errors` message named stream `id` and why; false if it was dropped (too many held).
    @discardableResult
    public mutating func reasonReceived(_ reason: String, for id: SmuxStreamID) -> Bool {
        guard self.reasons[id] != nil || self.reasons.count < Self.maximumReasons else { return false }
        self.reasons[id] = reason
        return true
    }

    /// Stream `id` got its FIN; `streamGotData` says whether any data came on it first. Returns the
    /// refusal this FIN completes, or nil for a normal end.
    public mutating func finReceived(for id: SmuxStreamID, streamGotData: Bool) -> Refusal? {
        let reason = self.reasons.removeValue(forKey: id)
        guard self.flagPending, reason != nil || !streamGotData else { return nil }
        self.flagPending = false
        return Refusal(reason: reason)
    }
}
