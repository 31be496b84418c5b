// What the gateway records about activations, managed instances and sessions (kept in the store).

public struct Activation: Sendable {
    public var id: String
    public var codeHash: String
    public var iamRole: String
    public var description: String
    public var defaultInstanceName: String
    public var registrationLimit: Int
    public var registrationsCount: Int
    public var expirationEpoch: Int64
    public var createdEpoch: Int64
    /// Applied to every instance registered with it (CreateActivation's Tags, as AWS).
    public var tags: [String: String] = [:]
}

public struct ManagedInstance: Sendable {
    public var id: String
    public var secret: String
    public var name: String
    public var activationID: String
    public var platformType: String
    public var platformName: String
    public var platformVersion: String
    public var agentVersion: String
    public var ipAddress: String
    public var hostname: String
    public var registeredEpoch: Int64
    public var lastPingEpoch: Int64
    public var online: Bool
    /// Its tags (`Name` is its name); policies see them as `ssm:resourceTag/KEY`.
    public var tags: [String: String] = [:]
}

public enum SessionStatus: String, Sendable {
    case connecting = "Connecting"
    case connected = "Connected"
    case disconnected = "Disconnected"
    case terminating = "Terminating"
    case terminated = "Terminated"
    case failed = "Failed"

    /// Terminated or Failed: the session is over.
    public var isEnded: Bool { self == .terminated || self == .failed }
}

public struct SessionRecord: Sendable {
    public var id: String
    public var owner: String
    public var target: String
    public var documentName: String
    public var parameters: [(key: String, value: String)]
    public var reason: String
    public var status: SessionStatus
    public var startEpoch: Int64
    public var endEpoch: Int64?
    public var closeReason: String
    /// Bytes relayed (WebSocket payloads) toward the agent and toward the client; kept in the store at
    /// every status change and every 30 seconds while the session is open.
    public var bytesToAgent: Int64 = 0
    public var bytesToClient: Int64 = 0
    /// Hash of the client's data-channel token; valid until the session ends or is resumed (see the
    /// issue note: it should stop working once the first handshake completes).
    public var clientTokenHash: String?
    /// The client's token hash as it was when the session ended (runtime only): its client, connecting
    /// late, hears why the session ended (``GatewayState/endReason(sessionID:clientToken:)``); it opens
    /// nothing.
    public var endedClientTokenHash: String? = nil
    /// Whether the client may be told `closeReason` when it comes back after the end (runtime only): the
    /// gateway or the API ended the session, or the agent reported a failure. Not when the session's own
    /// program ended it (the agent's Success, recorded with its words, which its client is not sent).
    public var endReasonForClient = false
    public var agentTokenHashes: [String: Int64]
    /// The session document's idle timeout and maximum duration (seconds), if it sets them: they apply
    /// within the gateway's own, which are caps.
    public var documentIdleTimeout: Int64? = nil
    public var documentMaximumDuration: Int64? = nil
    /// When the session last lost a data channel (runtime only): a session nobody resumes expires.
    public var disconnectedSince: Int64? = nil
    /// Order of creation among sessions that started in the same second (runtime only; after a restart,
    /// the store's order: start time, then id), so listings and their pages are stable.
    public var creationIndex: Int64 = 0
    /// Whether the agent's handshake_complete went through (runtime only): from then on the StartSession
    /// token is spent and every ResumeSession token works once.
    public var handshakeCompleted = false
}

/// A shell or command session's recording, as the gateway holds it: the bytes the agent delivered so far
/// (sealed in the store, `GatewayStore+Recordings.swift`), whether the agent said it is complete, and its
/// digest once it is (which the audit trail records, linking the session to its recording).
public struct RecordingRecord: Sendable, Equatable {
    public var sessionID: String
    /// Bytes stored (the agent's next upload starts there).
    public var length: Int64
    public var maximumBytes: Int64
    public var complete = false
    /// The agent offered more than ``maximumBytes``: what was past it is not stored.
    public var truncated = false
    public var startedEpoch: Int64
    public var completedEpoch: Int64? = nil
    /// SHA-256 of the whole recording (hex), once complete and read back from the store.
    public var sha256 = ""

    public init(sessionID: String, maximumBytes: Int64, startedEpoch: Int64, length: Int64 = 0) {
        self.sessionID = sessionID
        self.maximumBytes = maximumBytes
        self.startedEpoch = startedEpoch
        self.length = length
    }
}

/// Whether and how the gateway records shell and command sessions (`jumpgate server --recordings`,
/// `--recording-max-mib`, `--recording-retention`).
public struct RecordingSettings: Sendable {
    public var enabled = true
    public var maximumBytes: Int64 = 64 << 20
    /// Recordings of sessions that ended longer ago are deleted (nil: kept for ever).
    public var retentionSeconds: Int64? = 90 * 86400
    public init() {}
}
