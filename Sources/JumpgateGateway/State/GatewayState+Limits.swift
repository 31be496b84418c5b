import JumpgateWire
import NIOConcurrencyHelpers

/// When the gateway ends sessions by itself: idle ones, too old ones (the session document's limits within
/// the gateway's), and disconnected ones nobody resumed.
extension GatewayState {
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
            // The session document's limits apply within the gateway's, which are caps.
            let limits = Self.limits(of: session, idle: idle, maximumDuration: maximumDuration)
            if let maximum = limits.maximum, now - session.startEpoch >= maximum {
                result.append(
                    (
                        session,
                        "The session reached \(limits.maximumIsDocument ? "its session document's" : "the gateway's") "
                            + "maximum session duration (\(Self.describe(seconds: maximum))); start a new session to continue."
                    )
                )
            } else if let relay, now - relay.lastActivity(now: now) >= limits.idle {
                result.append(
                    (
                        session,
                        "The session was idle for \(Self.describe(seconds: limits.idle)) (no bytes on any connection) "
                            + "and was ended by \(limits.idleIsDocument ? "its session document's" : "the gateway's") "
                            + "idle timeout; start a new session to continue."
                    )
                )
            }
        }
        return result
    }

    /// The limits that apply to `session`: the lower of its document's and the gateway's, and whose each is.
    static func limits(
        of session: SessionRecord,
        idle: Int64,
        maximumDuration: Int64?
    ) -> (idle: Int64, idleIsDocument: Bool, maximum: Int64?, maximumIsDocument: Bool) {
        let documentIdle = session.documentIdleTimeout.flatMap { $0 < idle ? $0 : nil }
        let documentMaximum = session.documentMaximumDuration.flatMap { value in
            maximumDuration.map { value < $0 } ?? true ? value : nil
        }
        return (documentIdle ?? idle, documentIdle != nil, documentMaximum ?? maximumDuration, documentMaximum != nil)
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
                session.endReasonForClient = true
                session.clientTokenHash = nil
                session.agentTokenHashes = [:]
                storage.sessions[id] = session
                self.store?.submit(.session(session))
                self.auditSessionEnd(session, storage: storage)
                expired.append(session)
            }
            return expired
        }
    }
}
