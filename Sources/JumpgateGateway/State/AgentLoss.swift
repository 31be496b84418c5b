/// What the gateway does about a session whose agent is gone. A link blip (the agent process alive)
/// resumes on its own; a dead agent process cannot, since its target connections died with it. So:
/// - an agent that reconnects as a new process (another run id on its control channel) ends its earlier
///   sessions at once, Failed (``restartReason(instanceID:)``);
/// - a session with no agent data channel for ``Policy/timeoutSeconds`` ends Failed (time its agent spends
///   waiting in a relay-blind pairing for it does not count: ``absentSince(_:waitingInPairing:now:)``);
/// - meanwhile, after ``Policy/noticeSeconds``, a Jumpgate client is told the agent is unreachable.
/// Pure decisions; GatewayServer's sweeper and the control channel carry them out.
public enum AgentLoss {
    public struct Policy: Sendable, Equatable {
        /// How long a session waits for its agent's data channel before it ends: the agent's own resume
        /// window (it retries a dropped data channel for 5 minutes), so a live agent's outage never ends it.
        public var timeoutSeconds: Int64 = 300
        /// How long an absence lasts before the client is told (shorter ones are blips).
        public var noticeSeconds: Int64 = 2
        public init() {}
    }

    public struct Absence: Sendable, Equatable {
        /// How long no agent data channel has been attached.
        public var seconds: Int64
        /// Whether the agent ever attached to this session (false: it never opened it).
        public var everAttached: Bool
        /// Whether the client was told already.
        public var clientNotified: Bool
    }

    public enum Action: Sendable, Equatable {
        case none
        case notifyClient
        case end
    }

    /// When the agent's absence started, as far as the timeout is concerned: an agent waiting in a
    /// relay-blind pairing for the session is alive and connected to the gateway, so it counts as present,
    /// and an absence that goes on after the wait counts from `now`. Nil while the agent is attached.
    public static func absentSince(_ since: Int64?, waitingInPairing: Bool, now: Int64) -> Int64? {
        guard let since else { return nil }
        return waitingInPairing ? now : since
    }

    public static func decide(_ absence: Absence, policy: Policy) -> Action {
        if absence.seconds >= policy.timeoutSeconds { return .end }
        if absence.everAttached, !absence.clientNotified, absence.seconds >= policy.noticeSeconds {
            return .notifyClient
        }
        return .none
    }

    /// Why the session ended when its agent did not come back.
    public static func lossReason(instanceID: String, absence: Absence, agentOnline: Bool) -> String {
        let waited = "\(absence.seconds) seconds"
        if !absence.everAttached {
            return "The agent on \(instanceID) did not open the session within \(waited) "
                + (agentOnline ? "(it is online but could not connect the session; see its log)" : "(it is offline)")
                + ". Start a new session once the agent is online."
        }
        return "The agent on \(instanceID) was lost: it did not reconnect within \(waited) "
            + (agentOnline
                ? "(it is online again but did not resume this session)"
                : "(its process or host may have stopped, or its network is down)")
            + ", so the session's connections are gone. Start a new session once the agent is back."
    }

    /// What the client is told while the gateway waits.
    public static func noticeReason(instanceID: String, policy: Policy) -> String {
        "The agent on \(instanceID) is unreachable; the gateway waits up to \(policy.timeoutSeconds) seconds "
            + "for it to come back before it ends the session."
    }

    /// Why a session ended when its agent came back as a new process.
    public static func restartReason(instanceID: String) -> String {
        "The agent on \(instanceID) restarted (a new agent process connected), so the session's connections "
            + "ended with the old process. Start a new session."
    }

    /// Whether a control channel's run id means a new agent process: only when both are known and differ
    /// (after the gateway's own restart it knows none, and official agents send none).
    public static func isRestart(previousRunID: String?, newRunID: String?) -> Bool {
        guard let previousRunID, let newRunID else { return false }
        return previousRunID != newRunID
    }
}
