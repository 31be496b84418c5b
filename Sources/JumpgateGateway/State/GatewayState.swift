import CoreMetrics
import Crypto
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
        var rng = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in "0123456789abcdef".randomElement(using: &rng)! })
    }

    static func token(bytes: Int = 32) -> String {
        var rng = SystemRandomNumberGenerator()
        let raw = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return Base64.encode(raw).replacingOccurrences("+", "-").replacingOccurrences("/", "_").replacingOccurrences(
            "=",
            ""
        )
    }

    static func alphanumeric(_ count: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<count).map { _ in alphabet.randomElement(using: &rng)! })
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
    public var agentTokenHashes: [String: Int64]
    /// When the session last lost a data channel (runtime only): a session nobody resumes expires.
    public var disconnectedSince: Int64? = nil
    /// Order of creation among sessions that started in the same second (runtime only; after a restart,
    /// the store's order: start time, then id), so listings and their pages are stable.
    public var creationIndex: Int64 = 0
    /// Whether the agent's handshake_complete went through (runtime only): from then on the StartSession
    /// token is spent and every ResumeSession token works once.
    public var handshakeCompleted = false
}

/// The gateway's state: users' keys, activations, instances, sessions, and the live channels.
/// Guarded by one lock; no lock is held while writing to a channel.
public final class GatewayState: Sendable {
    struct Storage {
        var accessKeys: [String: (secret: String, user: String)] = [:]
        var activations: [String: Activation] = [:]
        var instances: [String: ManagedInstance] = [:]
        var sessions: [String: SessionRecord] = [:]
        var sessionsCreated: Int64 = 0
        var controlChannels: [String: any Channel] = [:]
        /// Each agent's process run id, from its control channel's opening frame (runtime only).
        var agentRunIDs: [String: String] = [:]
        /// Instances whose deregistration, and sessions whose termination, is being written: nothing may
        /// write their rows meanwhile (a write-behind update landing after the deletion would bring a
        /// revoked row back), and an agent being deregistered cannot attach.
        var revokingInstances: Set<String> = []
        var terminatingSessions: Set<String> = []
        var controlTokens: [String: (instanceID: String, expires: Int64)] = [:]
        var relays: [String: SessionRelay] = [:]
        /// Failed sign-ins and registrations (per source, access key id, activation id), and the
        /// per-source summary of refused requests for the log.
        var throttle = FailureThrottle()
        var refusals = RefusalSummary()
        var publicURL = ""
    }

    let storage = NIOLockedValueBox(Storage())
    public let clock: @Sendable () -> Int64
    /// Where durable changes go (nil: memory only, for tests of the state alone). Changes are submitted
    /// while the lock is held, so the store applies them in the order they happened here.
    let store: GatewayStore?
    public let metrics = GatewayMetrics()
    /// The registry GET /metrics serves (nil: no endpoint).
    public let metricsRegistry: PrometheusCollectorRegistry?
    public let limits: SessionLimits
    /// The connections' admission, deadlines and shared buffer budget (nil: unlimited, for tests of the
    /// state alone).
    public let connections: GatewayConnections?

    /// When the gateway ends sessions by itself.
    public struct SessionLimits: Sendable {
        public var idleTimeoutSeconds: Int64 = 1200
        public var maximumDurationSeconds: Int64?
        public init() {}
    }

    public init(
        clock: @escaping @Sendable () -> Int64,
        store: GatewayStore? = nil,
        metricsRegistry: PrometheusCollectorRegistry? = nil,
        limits: SessionLimits = SessionLimits(),
        connections: GatewayConnections? = nil
    ) {
        self.connections = connections
        self.clock = clock
        self.store = store
        self.metricsRegistry = metricsRegistry
        self.limits = limits
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
        let samples = relays.map { $0.sampleBufferedBytes(on: eventLoop) }
        let metrics = self.metrics
        let connections = self.connections
        return EventLoopFuture.whenAllSucceed(samples, on: eventLoop).map { sizes in
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
            for key in snapshot.accessKeys { storage.accessKeys[key.id] = (key.secret, key.user) }
            for activation in snapshot.activations { storage.activations[activation.id] = activation }
            for instance in snapshot.instances { storage.instances[instance.id] = instance }
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

    /// Open sessions that went `idle` seconds without a frame in either direction, or are older than
    /// `maximumDuration`: with the reason to give their client and agent (the caller terminates them).
    public func sessionsToEnd(idle: Int64, maximumDuration: Int64?) -> [(SessionRecord, reason: String)] {
        let now = self.clock()
        let candidates = self.storage.withLockedValue { storage in
            storage.sessions.values.filter { !$0.status.isEnded }.map {
                ($0, storage.relays[$0.id])
            }
        }
        var result: [(SessionRecord, reason: String)] = []
        for (session, relay) in candidates {
            if let maximumDuration, now - session.startEpoch >= maximumDuration {
                result.append(
                    (
                        session,
                        "The session reached the gateway's maximum session duration "
                            + "(\(Self.describe(seconds: maximumDuration))); start a new session to continue."
                    )
                )
            } else if let relay, now - relay.lastActivity >= idle {
                result.append(
                    (
                        session,
                        "The session was idle for \(Self.describe(seconds: idle)) (no bytes on any connection) "
                            + "and was ended by the gateway's idle timeout; start a new session to continue."
                    )
                )
            }
        }
        return result
    }

    static func describe(seconds: Int64) -> String {
        if seconds % 3600 == 0 { return "\(seconds / 3600) hour\(seconds == 3600 ? "" : "s")" }
        if seconds % 60 == 0 { return "\(seconds / 60) minute\(seconds == 60 ? "" : "s")" }
        return "\(seconds) second\(seconds == 1 ? "" : "s")"
    }

    /// Sessions disconnected for longer than `seconds` (nobody resumed them): marked Failed with a reason,
    /// and returned so that their relays and agents can be told.
    public func expireDisconnected(after seconds: Int64) -> [SessionRecord] {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            var expired: [SessionRecord] = []
            for (id, var session) in storage.sessions where session.status == .disconnected {
                guard let since = session.disconnectedSince, now - since >= seconds else { continue }
                session.status = .failed
                session.endEpoch = now
                session.closeReason = "The session's client did not reconnect within \(seconds) seconds."
                session.clientTokenHash = nil
                session.agentTokenHashes = [:]
                storage.sessions[id] = session
                self.store?.submit(.session(session))
                expired.append(session)
            }
            return expired
        }
    }

    /// Completes when every change made so far is on disk (at once without a store).
    public func flush(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let store = self.store else { return eventLoop.makeSucceededVoidFuture() }
        return store.flush().hop(to: eventLoop)
    }

    /// Runs `body` under the lock, keeping its typed error.
    private func withStorage<T>(_ body: (inout Storage) throws(APIError) -> T) throws(APIError) -> T {
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

    public func addAccessKey(id: String, secret: String, user: String) {
        self.storage.withLockedValue { storage in
            if let existing = storage.accessKeys[id], existing == (secret, user) { return }
            storage.accessKeys[id] = (secret, user)
            self.store?.submit(.accessKey(id: id, secret: secret, user: user))
        }
    }

    /// A user's secret (for `ssm` API calls).
    public func userSecret(accessKeyID: String) -> (secret: String, user: String)? {
        self.storage.withLockedValue { $0.accessKeys[accessKeyID] }
    }

    /// An agent's secret: its access key id is its instance id.
    public func instanceSecret(instanceID: String) -> String? {
        self.storage.withLockedValue { $0.instances[instanceID]?.secret }
    }

    // MARK: activations and registration

    /// Writes `change` to the store and only once it is on disk applies `apply` to memory; when the write
    /// fails, memory stays as it was and the future fails. For what an API answer reports (an activation,
    /// a revocation): the answer must describe what is on disk. Without a store, applies at once.
    /// `undo` runs instead of `apply` when the write fails (to release what the caller marked meanwhile).
    func commitThenApply<T: Sendable>(
        _ change: StoreChange,
        on eventLoop: any EventLoop,
        undo: (@Sendable (inout Storage) -> Void)? = nil,
        apply: @escaping @Sendable (inout Storage) -> T
    ) -> EventLoopFuture<T> {
        guard let store = self.store else {
            return eventLoop.makeSucceededFuture(self.storage.withLockedValue { apply(&$0) })
        }
        let committed = store.commit(change).hop(to: eventLoop).map { self.storage.withLockedValue { apply(&$0) } }
        if let undo { committed.whenFailure { _ in self.storage.withLockedValue { undo(&$0) } } }
        return committed
    }

    public func createActivation(
        iamRole: String,
        description: String,
        defaultInstanceName: String,
        registrationLimit: Int,
        expirationEpoch: Int64?,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<(id: String, code: String)> {
        let id = MessageID.random().description
        let code = Random.alphanumeric(20)
        let now = self.clock()
        let activation = Activation(
            id: id,
            codeHash: tokenHash(code),
            iamRole: iamRole,
            description: description,
            defaultInstanceName: defaultInstanceName,
            registrationLimit: registrationLimit,
            registrationsCount: 0,
            expirationEpoch: expirationEpoch ?? now + 86400,
            createdEpoch: now
        )
        return self.commitThenApply(.activation(activation), on: eventLoop) { storage in
            storage.activations[id] = activation
            return (id, code)
        }
    }

    public func activations() -> [Activation] {
        self.storage.withLockedValue { Array($0.activations.values) }.sorted { $0.createdEpoch < $1.createdEpoch }
    }

    public func deleteActivation(id: String, on eventLoop: any EventLoop) throws(APIError) -> EventLoopFuture<Void> {
        guard self.storage.withLockedValue({ $0.activations[id] }) != nil else {
            throw APIError(400, "InvalidActivationId", "Activation ID \(id) does not exist.")
        }
        return self.commitThenApply(.activationDeleted(id: id), on: eventLoop) {
            _ = $0.activations.removeValue(forKey: id)
        }
    }

    public struct Registration: Sendable {
        public var activationID: String
        public var activationCode: String
        public var name: String
        public var platformType: String
        public var platformName: String
        public var platformVersion: String
        public var agentVersion: String
        public var hostname: String
        public var ipAddress: String
    }

    /// Registers an agent. Every failure gives the same message; failures are rate-limited per source.
    public func register(_ registration: Registration, source: String) throws(APIError) -> ManagedInstance {
        let now = self.clock()
        return try self.withStorage { storage throws(APIError) -> ManagedInstance in
            // A correct code always registers, whatever failed before it (FailureThrottle).
            guard var activation = storage.activations[registration.activationID],
                SigV4.constantTimeEquals(activation.codeHash, tokenHash(registration.activationCode)),
                activation.expirationEpoch > now, activation.registrationsCount < activation.registrationLimit
            else {
                let throttled = storage.throttle.failed(
                    ["source:" + source, "activation:" + registration.activationID],
                    now: now
                )
                storage.refusals.record(
                    source: source,
                    type: throttled ? "ThrottlingException" : "InvalidActivation",
                    keyID: registration.activationID,
                    now: now
                )
                if throttled {
                    throw APIError(
                        400,
                        "ThrottlingException",
                        "Too many failed activation attempts from this address or for this activation; "
                            + "try again in a minute."
                    )
                }
                throw APIError(
                    400,
                    "InvalidActivation",
                    "The activation is not valid: it does not exist, the code is wrong, it expired, or its registration limit was reached."
                )
            }
            activation.registrationsCount += 1
            storage.activations[activation.id] = activation
            self.store?.submit(.activation(activation))
            let instance = ManagedInstance(
                id: "mi-" + Random.hex(17),
                secret: Random.alphanumeric(40),
                // The agent's --name, else the activation's DefaultInstanceName, else the host's name (as AWS).
                name: !registration.name.isEmpty
                    ? registration.name
                    : activation.defaultInstanceName.isEmpty ? registration.hostname : activation.defaultInstanceName,
                activationID: activation.id,
                platformType: registration.platformType,
                platformName: registration.platformName,
                platformVersion: registration.platformVersion,
                agentVersion: registration.agentVersion,
                ipAddress: registration.ipAddress,
                hostname: registration.hostname,
                registeredEpoch: now,
                lastPingEpoch: 0,
                online: false
            )
            storage.instances[instance.id] = instance
            self.store?.submit(.instance(instance))
            return instance
        }
    }

    /// Removes a managed instance (DeregisterManagedInstance): its credentials stop working at once.
    /// Returns its control channel and open sessions, for the caller to close.
    public func deregister(
        instanceID: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<(control: (any Channel)?, sessions: [SessionRecord])> {
        let known = self.storage.withLockedValue { storage -> Bool in
            guard storage.instances[instanceID] != nil else { return false }
            storage.revokingInstances.insert(instanceID)
            return true
        }
        guard known else {
            throw APIError(400, "InvalidInstanceId", "Instance \(instanceID) is not a registered managed instance.")
        }
        // Memory changes only once the store has the deletion: a failed write leaves the instance
        // registered everywhere (and the API says so), never revoked in memory only.
        return self.commitThenApply(
            .instanceDeleted(id: instanceID),
            on: eventLoop,
            undo: { $0.revokingInstances.remove(instanceID) },
            apply: { storage in
                storage.revokingInstances.remove(instanceID)
                storage.instances.removeValue(forKey: instanceID)
                let control = storage.controlChannels.removeValue(forKey: instanceID)
                storage.controlTokens = storage.controlTokens.filter { $0.value.instanceID != instanceID }
                let open = storage.sessions.values.filter { $0.target == instanceID && !$0.status.isEnded }
                return (control: control, sessions: open)
            }
        )
    }

    public func instances() -> [ManagedInstance] {
        self.storage.withLockedValue { Array($0.instances.values) }.sorted { $0.registeredEpoch < $1.registeredEpoch }
    }

    // MARK: control channels

    public func issueControlToken(instanceID: String) -> String {
        let token = Random.token()
        let now = self.clock()
        self.storage.withLockedValue { $0.controlTokens[tokenHash(token)] = (instanceID, now + 60) }
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
            guard let entry = storage.controlTokens.removeValue(forKey: tokenHash(token)),
                entry.instanceID == instanceID, !storage.revokingInstances.contains(instanceID),
                entry.expires >= now, var instance = storage.instances[instanceID]
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

    /// Open sessions whose agent data channel is absent, with what ``AgentLoss`` decides for each.
    public func agentLossSweep(policy: AgentLoss.Policy) -> [(SessionRecord, SessionRelay, AgentLoss.Absence)] {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            storage.sessions.values.compactMap { session in
                guard !session.status.isEnded,
                    let relay = storage.relays[session.id], let absence = relay.agentAbsence(now: now)
                else { return nil }
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

    // MARK: sessions

    public func createSession(
        owner: String,
        target: String,
        documentName: String,
        parameters: [(key: String, value: String)],
        reason: String
    ) throws(APIError) -> (SessionRecord, token: String) {
        let token = Random.token()
        let now = self.clock()
        return try self.withStorage { storage throws(APIError) -> (SessionRecord, token: String) in
            guard storage.instances[target] != nil else {
                throw APIError(400, "InvalidTarget", "Target \(target) is not a registered managed instance.")
            }
            guard storage.controlChannels[target] != nil else {
                throw APIError(400, "TargetNotConnected", "\(target) is not connected.")
            }
            storage.sessionsCreated += 1
            var session = SessionRecord(
                id: "\(owner)-\(Random.hex(17))",
                owner: owner,
                target: target,
                documentName: documentName,
                parameters: parameters,
                reason: reason,
                status: .connecting,
                startEpoch: now,
                endEpoch: nil,
                closeReason: "",
                clientTokenHash: tokenHash(token),
                agentTokenHashes: [:]
            )
            session.creationIndex = storage.sessionsCreated
            storage.sessions[session.id] = session
            self.store?.submit(.session(session))
            storage.relays[session.id] = SessionRelay(sessionID: session.id, state: self)
            self.metrics.sessionsStarted.increment()
            return (session, token)
        }
    }

    public func session(id: String) -> SessionRecord? {
        self.storage.withLockedValue { $0.sessions[id] }
    }

    public func sessions() -> [SessionRecord] {
        self.storage.withLockedValue { Array($0.sessions.values) }.sorted {
            ($0.startEpoch, $0.creationIndex) < ($1.startEpoch, $1.creationIndex)
        }
    }

    public func relay(sessionID: String) -> SessionRelay? {
        self.storage.withLockedValue { $0.relays[sessionID] }
    }

    /// A new client token for ResumeSession.
    public func resumeSession(id: String, owner: String) throws(APIError) -> String {
        let token = Random.token()
        try self.withStorage { storage throws(APIError) in
            guard var session = storage.sessions[id], session.owner == owner else {
                throw APIError(400, "DoesNotExistException", "Session \(id) does not exist.")
            }
            guard !session.status.isEnded else {
                throw APIError(400, "DoesNotExistException", "Session \(id) is already terminated.")
            }
            session.clientTokenHash = tokenHash(token)
            storage.sessions[id] = session
        }
        return token
    }

    /// Checks a client's data-channel token, atomically. Until the first handshake completes the token
    /// may be presented again (the official plugin retries its first connection with it); after that a
    /// token (from ResumeSession) opens one data channel and is spent.
    public func consumeClientToken(sessionID: String, token: String) -> Bool {
        self.storage.withLockedValue { storage in
            guard var session = storage.sessions[sessionID], let hash = session.clientTokenHash,
                SigV4.constantTimeEquals(hash, tokenHash(token)), session.status != .terminated,
                session.status != .failed
            else { return false }
            if session.handshakeCompleted {
                session.clientTokenHash = nil
                storage.sessions[sessionID] = session
            }
            return true
        }
    }

    /// The agent's handshake_complete went through the relay: the StartSession token stops working.
    func handshakeCompleted(sessionID: String) {
        self.storage.withLockedValue { storage in
            guard var session = storage.sessions[sessionID], !session.handshakeCompleted else { return }
            session.handshakeCompleted = true
            session.clientTokenHash = nil
            storage.sessions[sessionID] = session
        }
    }

    public func issueAgentToken(sessionID: String, instanceID: String) throws(APIError) -> String {
        let token = Random.token()
        let now = self.clock()
        try self.withStorage { storage throws(APIError) in
            guard var session = storage.sessions[sessionID], session.target == instanceID else {
                throw APIError(403, "AccessDeniedException", "Session \(sessionID) does not target \(instanceID).")
            }
            guard !session.status.isEnded else {
                throw APIError(400, "BadRequest", "Session is already terminated")
            }
            session.agentTokenHashes[tokenHash(token)] = now + 60
            storage.sessions[sessionID] = session
        }
        return token
    }

    public func consumeAgentToken(sessionID: String, instanceID: String, token: String) -> Bool {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            guard var session = storage.sessions[sessionID], session.target == instanceID,
                let expires = session.agentTokenHashes.removeValue(forKey: tokenHash(token)), expires >= now
            else { return false }
            storage.sessions[sessionID] = session
            return true
        }
    }

    /// Ends a session as Terminated once the store has it (TerminateSession): a failed write leaves it open
    /// in memory and on disk, and the call fails, so a revocation is never in memory only.
    public func terminateDurably(
        sessionID: String,
        reason: String,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<Void> {
        let now = self.clock()
        let ended = self.storage.withLockedValue { storage -> SessionRecord? in
            guard var session = storage.sessions[sessionID], !session.status.isEnded
            else { return nil }
            if let relay = storage.relays[sessionID] {
                (session.bytesToAgent, session.bytesToClient) = relay.relayedBytes
            }
            session.status = .terminated
            session.closeReason = reason
            session.endEpoch = now
            session.disconnectedSince = nil
            session.clientTokenHash = nil
            session.agentTokenHashes = [:]
            storage.terminatingSessions.insert(sessionID)
            return session
        }
        guard let ended else { return eventLoop.makeSucceededVoidFuture() }
        return self.commitThenApply(
            .session(ended),
            on: eventLoop,
            undo: { $0.terminatingSessions.remove(sessionID) },
            apply: { storage in
                storage.terminatingSessions.remove(sessionID)
                guard let current = storage.sessions[sessionID], !current.status.isEnded else { return }
                storage.sessions[sessionID] = ended
                Counter(label: "jumpgate_sessions_ended_total", dimensions: [("status", ended.status.rawValue)])
                    .increment()
            }
        )
    }

    public func setStatus(sessionID: String, _ status: SessionStatus, reason: String? = nil) {
        let now = self.clock()
        self.storage.withLockedValue { storage in
            guard var session = storage.sessions[sessionID], !storage.terminatingSessions.contains(sessionID) else {
                return
            }
            if session.status.isEnded { return }
            if let relay = storage.relays[sessionID] {
                (session.bytesToAgent, session.bytesToClient) = relay.relayedBytes
            }
            if status == .disconnected, session.status != .disconnected { session.disconnectedSince = now }
            if status != .disconnected { session.disconnectedSince = nil }
            session.status = status
            if let reason { session.closeReason = reason }
            if status.isEnded {
                Counter(label: "jumpgate_sessions_ended_total", dimensions: [("status", status.rawValue)]).increment()
                session.endEpoch = now
                session.clientTokenHash = nil
                session.agentTokenHashes = [:]
            }
            storage.sessions[sessionID] = session
            self.store?.submit(.session(session))
        }
    }

    /// Writes the traffic counts of open sessions whose counts moved since the last write (the sweeper
    /// calls it every 30 s), so a crash loses at most that much of a session's byte counts.
    public func checkpointTraffic() {
        self.storage.withLockedValue { storage in
            for (id, relay) in storage.relays where !storage.terminatingSessions.contains(id) {
                guard var session = storage.sessions[id] else { continue }
                let counts = relay.relayedBytes
                guard counts != (session.bytesToAgent, session.bytesToClient) else { continue }
                (session.bytesToAgent, session.bytesToClient) = counts
                storage.sessions[id] = session
                self.store?.submit(.session(session))
            }
        }
    }

    /// A session's traffic so far: live from its relay while it is open, else as recorded.
    public func relayedBytes(of session: SessionRecord) -> (toAgent: Int64, toClient: Int64) {
        self.relay(sessionID: session.id)?.relayedBytes ?? (session.bytesToAgent, session.bytesToClient)
    }

    func removeRelay(sessionID: String) {
        _ = self.storage.withLockedValue { $0.relays.removeValue(forKey: sessionID) }
    }
}
