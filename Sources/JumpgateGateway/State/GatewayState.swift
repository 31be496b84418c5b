import CoreMetrics
import Crypto
import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// An error the SSM API returns: `{"__type": type, "message": message}` with an HTTP status.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var type: String
    public var message: String

    public init(_ status: Int, _ type: String, _ message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    public var description: String { "\(self.type): \(self.message)" }
}

/// Random identifiers and secrets.
enum Random {
    static func hex(_ count: Int) -> String {
        SystemRandom.string(count, from: Array("0123456789abcdef"))
    }

    static func token(bytes: Int = 32) -> String {
        Base64.encode(SystemRandom.bytes(bytes)).replacingOccurrences("+", "-").replacingOccurrences("/", "_")
            .replacingOccurrences("=", "")
    }

    static func alphanumeric(_ count: Int) -> String {
        SystemRandom.string(count, from: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    }
}

extension String {
    func replacingOccurrences(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}

/// Tokens are stored hashed: a leaked table cannot open a channel.
func tokenHash(_ token: String) -> String {
    SigV4.hexSHA256(Array(token.utf8))
}

/// The gateway's state: users' keys, activations, instances, sessions, and the live channels.
/// Guarded by one lock; no lock is held while writing to a channel.
public final class GatewayState: Sendable {
    struct Storage {
        /// Users, groups, access keys and policies.
        var directory = IdentityDirectory()
        /// Session documents: the built-in ones and custom ones with their versions.
        var documents = DocumentCatalog()
        var activations: [String: Activation] = [:]
        var instances: [String: ManagedInstance] = [:]
        var sessions: [String: SessionRecord] = [:]
        /// Recordings of shell and command sessions, by session id (their bytes are in the store).
        var recordings: [String: RecordingRecord] = [:]
        /// Recordings with a piece being written (one at a time each).
        var recordingWrites: Set<String> = []
        /// Recordings whose digest is being computed.
        var recordingSeals: Set<String> = []
        var sessionsCreated: Int64 = 0
        var controlChannels: [String: any Channel] = [:]
        /// Each agent's process run id, from its control channel's opening frame (runtime only).
        var agentRunIDs: [String: String] = [:]
        /// The SHA-256 of each agent's relay-blind certificate, from its control channel's opening frame
        /// (runtime only; a new process makes a new one).
        var blindCertificates: [String: String] = [:]
        /// Instances whose deregistration, and sessions whose termination, is being written: nothing may
        /// write their rows meanwhile (a write-behind update landing after the deletion would bring a
        /// revoked row back), and an agent being deregistered cannot attach.
        var revokingInstances: Set<String> = []
        var terminatingSessions: Set<String> = []
        /// Control-channel tokens waiting to be used, per instance (``PendingTokens``).
        var controlTokens: [String: [String: Int64]] = [:]
        var relays: [String: SessionRelay] = [:]
        /// Failed sign-ins and registrations (per source, access key id, activation id), and the
        /// per-source summary of refused requests for the log.
        var throttle = FailureThrottle()
        var refusals = RefusalSummary()
        var publicURL = ""
        /// Connection record ids recorded lately, and their order (oldest first), for dropping resends.
        var recentRecordIDs: Set<String> = []
        var recentRecordOrder = CircularBuffer<String>()
        /// Agents' refusal report ids seen lately (``rememberRefusalReport(_:)``).
        var recentReportIDs: Set<String> = []
        var recentReportOrder = CircularBuffer<String>()

        /// Remembers an agent's refusal report (instance and report id); false if it was already there. The
        /// last 10,000 are kept: an agent resends a report within seconds.
        mutating func rememberRefusalReport(_ key: String) -> Bool {
            guard self.recentReportIDs.insert(key).inserted else { return false }
            self.recentReportOrder.append(key)
            if self.recentReportOrder.count > 10_000 {
                self.recentReportIDs.remove(self.recentReportOrder.removeFirst())
            }
            return true
        }

        /// Remembers an agent's connection record id; returns false if it was already there (a resend
        /// after a lost answer). The last ``GatewayState/rememberedRecordIDs`` ids are kept.
        @discardableResult
        mutating func remember(_ id: String) -> Bool {
            guard self.recentRecordIDs.insert(id).inserted else { return false }
            self.recentRecordOrder.append(id)
            if self.recentRecordOrder.count > GatewayState.rememberedRecordIDs {
                self.recentRecordIDs.remove(self.recentRecordOrder.removeFirst())
            }
            return true
        }
    }

    let storage = NIOLockedValueBox(Storage())
    /// The relay-blind pairings offered and waiting (GatewayState+Pairing), apart from the main lock: a
    /// pairing line takes only this one.
    let pairings = NIOLockedValueBox(PairingTable<PairingConnection>())
    /// Halves of re-offers after a break, kept for the side that has not asked yet (GatewayState+Pairing).
    let keptHalves = NIOLockedValueBox([String: KeptHalf]())
    /// Whether the gateway carries relay-blind pairs (`--no-blind-relay` turns it off).
    public let blindRelay: Bool
    public let clock: @Sendable () -> Int64
    /// Where durable changes go (nil: memory only, for tests of the state alone). Changes are submitted
    /// while the lock is held, so the store applies them in the order they happened here.
    let store: (any GatewayStorage)?
    public let metrics = GatewayMetrics()
    /// The registry GET /metrics serves (nil: no endpoint).
    public let metricsRegistry: PrometheusCollectorRegistry?
    public let limits: SessionLimits
    /// Whether shell and command sessions are recorded, their size limit and retention.
    public let recordingSettings: RecordingSettings
    /// The connections' admission, deadlines and shared buffer budget (nil: unlimited, for tests of the
    /// state alone).
    public let connections: GatewayConnections?
    /// The region and account ARNs are written in (`jumpgate server --region`, `--account-id`).
    public let resources: ResourceNames
    /// The append-only audit trail (nil: not recorded, for tests of the state alone).
    public let audit: AuditTrail?

    /// When the gateway ends sessions by itself.
    public struct SessionLimits: Sendable {
        public var idleTimeoutSeconds: Int64 = 1200
        public var maximumDurationSeconds: Int64?
        public init() {}
    }

    public init(
        clock: @escaping @Sendable () -> Int64,
        store: (any GatewayStorage)? = nil,
        metricsRegistry: PrometheusCollectorRegistry? = nil,
        limits: SessionLimits = SessionLimits(),
        recordings: RecordingSettings = RecordingSettings(),
        connections: GatewayConnections? = nil,
        resources: ResourceNames = ResourceNames(),
        audit: AuditTrail? = nil,
        blindRelay: Bool = true
    ) {
        self.blindRelay = blindRelay
        self.connections = connections
        self.resources = resources
        self.audit = audit
        self.clock = clock
        self.store = store
        self.metricsRegistry = metricsRegistry
        self.limits = limits
        self.recordingSettings = recordings
    }

    /// Brings the sampled gauges up to date (sessions, agents, each session's buffered bytes).
    public func sampleMetrics(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let (active, online, relays) = self.storage.withLockedValue { storage in
            (
                storage.sessions.values.filter { !$0.status.isEnded }.count,
                storage.controlChannels.count,
                Array(storage.relays.values)
            )
        }
        self.metrics.sessionsActive.record(active)
        self.metrics.agentsOnline.record(online)
        if let process = ProcessStatistics.sample() {
            self.metrics.openFileDescriptors.record(process.openFileDescriptors)
            self.metrics.residentMemoryBytes.record(process.residentBytes)
        }
        let samples = relays.map { $0.sampleBufferedBytes(on: eventLoop) }
        let metrics = self.metrics
        let connections = self.connections
        // The store is probed with a real write when its last outcome is old (30 s while fine, 1 s while
        // failing), so the gauge notices a full disk on a gateway that has nothing to write.
        let writeProblem = self.store?.writeProblem().hop(to: eventLoop) ?? eventLoop.makeSucceededFuture(nil)
        return EventLoopFuture.whenAllSucceed(samples, on: eventLoop).and(writeProblem).map { sizes, problem in
            metrics.storeWritable.record(problem == nil ? 1 : 0)
            let relayed = sizes.reduce(0, +)
            metrics.sessionBufferedBytesMax.record(sizes.max() ?? 0)
            metrics.relayBufferedBytes.record(relayed)
            // Everything the gateway holds for its peers: request bodies, relays' held frames and their
            // sockets' outbound buffers.
            metrics.bufferedBytes.record(relayed + (connections?.httpBytesInUse ?? 0))
            metrics.connectionsOpen.record(connections?.openConnections ?? 0)
        }
    }

    /// Loads what the store holds. Sessions that were open when the gateway stopped are kept open as
    /// Disconnected, with a fresh relay: their client (through ResumeSession) and agent reconnect and
    /// resend what was not acknowledged. Those not resumed expire (``expireDisconnected(after:)``).
    public func restore(_ snapshot: StoreSnapshot) {
        let now = self.clock()
        self.storage.withLockedValue { storage in
            storage.directory.restore(
                users: snapshot.users,
                groups: snapshot.groups,
                keys: snapshot.accessKeys,
                policies: snapshot.policies
            )
            storage.documents.restore(versions: snapshot.documentVersions, defaults: snapshot.documentDefaults)
            for activation in snapshot.activations { storage.activations[activation.id] = activation }
            for instance in snapshot.instances { storage.instances[instance.id] = instance }
            for recording in snapshot.recordings { storage.recordings[recording.sessionID] = recording }
            for var session in snapshot.sessions {
                storage.sessionsCreated += 1
                session.creationIndex = storage.sessionsCreated
                if !session.status.isEnded {
                    session.status = .disconnected
                    session.disconnectedSince = now
                    // Whatever happened before the restart, tokens are single-use from now on.
                    session.handshakeCompleted = true
                    storage.relays[session.id] = SessionRelay(
                        sessionID: session.id,
                        state: self,
                        restored: true,
                        relayedBytes: (session.bytesToAgent, session.bytesToClient)
                    )
                    self.store?.submit(.session(session))
                }
                storage.sessions[session.id] = session
            }
        }
    }

    /// Why the store cannot write now, on `eventLoop` (nil: it can, or there is no store).
    public func storeWriteProblem(on eventLoop: any EventLoop) -> EventLoopFuture<String?> {
        guard let store = self.store else { return eventLoop.makeSucceededFuture(nil) }
        return store.writeProblem().hop(to: eventLoop)
    }

    /// Completes when every change made so far is on disk (at once without a store).
    public func flush(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let store = self.store else { return eventLoop.makeSucceededVoidFuture() }
        return store.flush().hop(to: eventLoop)
    }

    /// Runs `body` under the lock, keeping its typed error.
    func withStorage<T>(_ body: (inout Storage) throws(APIError) -> T) throws(APIError) -> T {
        let result: Result<T, APIError> = self.storage.withLockedValue { storage in
            do throws(APIError) {
                return .success(try body(&storage))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The URL clients reach the gateway at (StreamUrl starts with it, as `wss://`).
    public func setPublicURL(_ url: String) {
        self.storage.withLockedValue { $0.publicURL = url }
    }

    public var streamBase: String {
        let url = self.storage.withLockedValue { $0.publicURL }
        return url.hasPrefix("https://") ? "wss://" + url.dropFirst("https://".count) : url
    }

    // MARK: keys

    /// A user's active key (for `ssm` API calls and the client side of data channels).
    public func userKey(accessKeyID: String) -> AccessKey? {
        self.storage.withLockedValue { $0.directory.activeKey(accessKeyID) }
    }

    /// An agent's secret: its access key id is its instance id.
    public func instanceSecret(instanceID: String) -> String? {
        self.storage.withLockedValue { $0.instances[instanceID]?.secret }
    }

    // MARK: control channels

    public func issueControlToken(instanceID: String) -> String {
        let token = Random.token()
        let now = self.clock()
        self.storage.withLockedValue {
            PendingTokens.issue(
                tokenHash(token),
                expires: now + 60,
                now: now,
                in: &$0.controlTokens[instanceID, default: [:]]
            )
        }
        return token
    }

    /// Consumes a control-channel token and records the channel as the instance's live control channel.
    /// Returns nil when refused; otherwise the instance's open sessions that a new agent process
    /// (another `runID`) cannot continue, for the caller to end (``AgentLoss``).
    public func attachControlChannel(
        instanceID: String,
        token: String,
        channel: any Channel,
        agentVersion: String,
        platformName: String,
        ipAddress: String,
        runID: String? = nil
    ) -> [SessionRecord]? {
        let now = self.clock()
        let attached = self.storage.withLockedValue { storage -> (previous: (any Channel)?, stale: [SessionRecord])? in
            guard var tokens = storage.controlTokens[instanceID] else { return nil }
            let valid = PendingTokens.consume(tokenHash(token), now: now, in: &tokens)
            storage.controlTokens[instanceID] = tokens.isEmpty ? nil : tokens
            guard valid, !storage.revokingInstances.contains(instanceID), var instance = storage.instances[instanceID]
            else { return nil }
            let previous = storage.controlChannels[instanceID]
            storage.controlChannels[instanceID] = channel
            var stale: [SessionRecord] = []
            if AgentLoss.isRestart(previousRunID: storage.agentRunIDs[instanceID], newRunID: runID) {
                stale = storage.sessions.values.filter {
                    $0.target == instanceID && !$0.status.isEnded
                }
            }
            if let runID { storage.agentRunIDs[instanceID] = runID }
            instance.online = true
            instance.lastPingEpoch = now
            if !agentVersion.isEmpty { instance.agentVersion = agentVersion }
            if !platformName.isEmpty { instance.platformName = platformName }
            if !ipAddress.isEmpty { instance.ipAddress = ipAddress }
            storage.instances[instanceID] = instance
            self.store?.submit(.instance(instance))
            return (previous, stale)
        }
        guard let attached else { return nil }
        if let old = attached.previous, old !== channel { old.close(promise: nil) }
        return attached.stale
    }

    /// Open sessions whose agent data channel is absent, with what ``AgentLoss`` decides for each. An agent
    /// that waits in a relay-blind pairing for its session is present (its process is alive and connected
    /// to this gateway): its absence starts again when it stops waiting, so a pairing that takes its whole
    /// window never counts towards a short `--agent-loss-timeout`.
    public func agentLossSweep(policy: AgentLoss.Policy) -> [(SessionRecord, SessionRelay, AgentLoss.Absence)] {
        let now = self.clock()
        let pairing = self.pairings.withLockedValue { $0.sessionsWaiting(.agent) }
        return self.storage.withLockedValue { storage in
            storage.sessions.values.compactMap { session in
                guard !session.status.isEnded, let relay = storage.relays[session.id] else { return nil }
                if pairing.contains(session.id) {
                    relay.agentWaitingInPairing(now: now)
                    return nil
                }
                guard let absence = relay.agentAbsence(now: now) else { return nil }
                return (session, relay, absence)
            }
        }
    }

    public func controlChannelClosed(instanceID: String, channel: any Channel) {
        self.storage.withLockedValue { storage in
            guard let current = storage.controlChannels[instanceID], current === channel else { return }
            storage.controlChannels[instanceID] = nil
            storage.instances[instanceID]?.online = false
            if let instance = storage.instances[instanceID], !storage.revokingInstances.contains(instanceID) {
                self.store?.submit(.instance(instance))
            }
        }
    }

    public func controlChannelActivity(instanceID: String) {
        let now = self.clock()
        self.storage.withLockedValue { $0.instances[instanceID]?.lastPingEpoch = now }
    }

    public func controlChannel(instanceID: String) -> (any Channel)? {
        self.storage.withLockedValue { $0.controlChannels[instanceID] }
    }
}
