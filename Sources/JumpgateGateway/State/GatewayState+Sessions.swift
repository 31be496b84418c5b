import CoreMetrics
import Crypto
import JumpgateAccess
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// Sessions: creation, tokens, resumption, status and the traffic their relays count.
extension GatewayState {
    public func createSession(
        owner: String,
        target: String,
        documentName: String,
        parameters: [(key: String, value: String)],
        reason: String,
        documentLimits: (idle: Int64?, maximum: Int64?) = (nil, nil)
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
                agentTokenHashes: [:],
                documentIdleTimeout: documentLimits.idle,
                documentMaximumDuration: documentLimits.maximum
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

    /// A new client token for ResumeSession (the caller was authorised: its owner, or a policy).
    public func resumeSession(id: String) throws(APIError) -> String {
        let token = Random.token()
        try self.withStorage { storage throws(APIError) in
            guard var session = storage.sessions[id] else {
                throw APIError(400, "DoesNotExistException", "Session \(id) does not exist.")
            }
            guard !session.status.isEnded else {
                // Its own client hears why, as it would have from the gateway's channel_closed.
                let message =
                    session.endReasonForClient && !session.closeReason.isEmpty
                    ? SessionEndedNotice.resumeMessage(sessionID: id, reason: session.closeReason)
                    : "Session \(id) is already terminated."
                throw APIError(400, "DoesNotExistException", message)
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

    /// Why the session ended, for a client that presents its right token after the end (an agent that
    /// refused the session before the client's data channel opened): nil for any other token or session.
    public func endReason(sessionID: String, clientToken token: String) -> String? {
        self.storage.withLockedValue { storage in
            guard let session = storage.sessions[sessionID], session.status.isEnded, session.endReasonForClient,
                let hash = session.endedClientTokenHash, SigV4.constantTimeEquals(hash, tokenHash(token))
            else { return nil }
            return session.closeReason
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
            PendingTokens.issue(tokenHash(token), expires: now + 60, now: now, in: &session.agentTokenHashes)
            storage.sessions[sessionID] = session
        }
        return token
    }

    public func consumeAgentToken(sessionID: String, instanceID: String, token: String) -> Bool {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            guard var session = storage.sessions[sessionID], session.target == instanceID,
                PendingTokens.consume(tokenHash(token), now: now, in: &session.agentTokenHashes)
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
            session.endedClientTokenHash = session.clientTokenHash
            session.endReasonForClient = true
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
                self.auditSessionEnd(ended, storage: storage)
                Counter(label: "jumpgate_sessions_ended_total", dimensions: [("status", ended.status.rawValue)])
                    .increment()
            }
        )
    }

    /// Sets a session's status; an end records `reason`, which its client hears if it comes back later
    /// unless `clientHearsReason` is false (the session's own program ended it).
    public func setStatus(
        sessionID: String,
        _ status: SessionStatus,
        reason: String? = nil,
        clientHearsReason: Bool = true
    ) {
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
                session.endedClientTokenHash = session.clientTokenHash
                session.endReasonForClient = clientHearsReason
                session.clientTokenHash = nil
                session.agentTokenHashes = [:]
            }
            storage.sessions[sessionID] = session
            self.store?.submit(.session(session))
            if status.isEnded { self.auditSessionEnd(session, storage: storage) }
        }
    }

    /// A session's end in the audit trail: target, document, destination, bytes each way, duration, reason.
    func auditSessionEnd(_ session: SessionRecord, storage: Storage) {
        guard let audit = self.audit else { return }
        var details: [(key: String, value: JSONValue)] = [
            ("sessionId", .string(session.id)), ("target", .string(session.target)),
            ("documentName", .string(session.documentName)), ("status", .string(session.status.rawValue)),
        ]
        if let destination = GatewayAPI.destination(of: session) {
            details.append(("destination", .string(destination)))
        }
        let end = session.endEpoch ?? self.clock()
        details += [
            ("bytesToTarget", .integer(session.bytesToAgent)), ("bytesFromTarget", .integer(session.bytesToClient)),
            ("startTime", .string(AuditRecords.isoTime(session.startEpoch))),
            ("durationSeconds", .integer(max(0, end - session.startEpoch))),
            ("closeReason", .string(session.closeReason)),
        ]
        let (record, index) = AuditRecords.serviceEvent(
            name: "SessionEnded",
            time: end,
            user: storage.directory.users[session.owner],
            details: .object(details),
            resources: self.resources,
            target: session.target,
            sessionID: session.id
        )
        audit.append(record, time: end, index: index)
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
