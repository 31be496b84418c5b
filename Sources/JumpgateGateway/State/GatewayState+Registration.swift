import CoreMetrics
import Crypto
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// Activations, agents' registration and deregistration: changes written to the store before they take
/// effect (`commitThenApply`).
extension GatewayState {
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
        tags: [String: String] = [:],
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<(id: String, code: String)> {
        let id = SystemRandom.id().description
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
            createdEpoch: now,
            tags: tags
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
        /// The agent's own tags (`jumpgate agent register --tag`), over the activation's.
        public var tags: [String: String] = [:]
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
                self.metrics.refused(throttled ? "ThrottlingException" : "InvalidActivation")
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
            // The activation's tags win over the agent's own: whoever holds the code chooses the latter, and
            // tags decide access (ssm:resourceTag).
            let tags = registration.tags.merging(activation.tags) { _, fromActivation in fromActivation }
            try Self.validate(tags: tags)
            activation.registrationsCount += 1
            storage.activations[activation.id] = activation
            self.store?.submit(.activation(activation))
            var instance = ManagedInstance(
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
            instance.tags = tags
            if !instance.name.isEmpty { instance.tags["Name"] = instance.name }
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
                storage.controlTokens.removeValue(forKey: instanceID)
                let open = storage.sessions.values.filter { $0.target == instanceID && !$0.status.isEnded }
                return (control: control, sessions: open)
            }
        )
    }

    public func instances() -> [ManagedInstance] {
        self.storage.withLockedValue { Array($0.instances.values) }.sorted { $0.registeredEpoch < $1.registeredEpoch }
    }
}
