import JumpgateNIO
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The gateway's once-a-second housekeeping: sessions nobody resumed, agents that stay away, idle and
/// too-old sessions end; traffic counts are written every 30 s; the refusal summaries reach the log and
/// the audit trail; audit batches that failed are retried; the audit trail is pruned hourly.
extension GatewayServer {
    static func startSweeper(
        state: GatewayState,
        configuration: GatewayConfiguration,
        on eventLoop: any EventLoop,
        logger: Logger
    ) -> RepeatedTask {
        let retention = configuration.auditRetentionSeconds
        // Sessions whose client never came back (after a drop, or after this gateway restarted) end.
        let (grace, idle, maximum, agentLoss) = (
            configuration.resumeGraceSeconds, configuration.idleTimeoutSeconds,
            configuration.maximumSessionDurationSeconds, configuration.agentLoss
        )
        let ticks = NIOLockedValueBox(0)
        return eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let tick = ticks.withLockedValue { tick in
                tick += 1
                return tick
            }
            if tick % 30 == 0 { state.checkpointTraffic() }
            if tick % 3600 == 0, let retention {
                Task { await Self.pruneAudit(state: state, olderThan: retention, logger: logger) }
            }
            if tick % 3600 == 1, let keep = state.recordingSettings.retentionSeconds {
                Self.pruneRecordings(state: state, olderThan: keep, logger: logger)
            }
            state.audit?.retry()
            state.expirePairings()
            for session in state.expireDisconnected(after: grace) {
                logger.info(
                    "session expired",
                    metadata: ["jumpgate.session_id": "\(session.id)", "reason": "\(session.closeReason)"]
                )
                GatewayAPI.terminate(session, state: state, reason: session.closeReason)
            }
            let refusals = state.refusalSummaries()
            Self.logRefusals(refusals, logger: logger)
            state.auditRefusals(refusals)
            for (session, relay, absence) in state.agentLossSweep(policy: agentLoss) {
                switch AgentLoss.decide(absence, policy: agentLoss) {
                case .none:
                    break
                case .notifyClient:
                    relay.notifyAgentLost(
                        reason: AgentLoss.noticeReason(instanceID: session.target, policy: agentLoss),
                        waitSeconds: agentLoss.timeoutSeconds
                    )
                case .end:
                    let reason = AgentLoss.lossReason(
                        instanceID: session.target,
                        absence: absence,
                        agentOnline: state.controlChannel(instanceID: session.target) != nil
                    )
                    logger.info(
                        "session ended",
                        metadata: ["jumpgate.session_id": "\(session.id)", "reason": "\(reason)"]
                    )
                    GatewayAPI.terminate(session, state: state, reason: reason, status: .failed)
                }
            }
            for (session, reason) in state.sessionsToEnd(idle: idle, maximumDuration: maximum) {
                logger.info("session ended", metadata: ["jumpgate.session_id": "\(session.id)", "reason": "\(reason)"])
                GatewayAPI.terminate(session, state: state, reason: reason)
            }
        }
    }

    /// Deletes recordings past the retention (hourly, and at start), with a log line saying how many.
    static func pruneRecordings(state: GatewayState, olderThan retention: Int64, logger: Logger) {
        let deleted = state.pruneRecordings(olderThan: retention)
        guard !deleted.isEmpty else { return }
        logger.info(
            "recordings past their retention deleted",
            metadata: ["count": "\(deleted.count)", "retention_seconds": "\(retention)"]
        )
    }
}
