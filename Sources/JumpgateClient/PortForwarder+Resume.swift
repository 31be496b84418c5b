import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Resuming a session whose data channel dropped: ResumeSession and a new data channel, with backoff, while
/// the local connections stay open.
extension PortForwarder {
    /// The data channel dropped while the session is open (on the event loop): local connections stay
    /// open while ResumeSession and a new data channel are tried, with backoff, until `resumeTimeout`.
    func dataChannelLost(_ session: PortSession) {
        guard let resume = self.resume, !self.state.withLockedValue({ $0.terminated }) else { return }
        let now = NIODeadline.now()
        let start = self.state.withLockedValue { state -> NIODeadline in
            // A channel that dropped again right after a resume is the same outage.
            if let lastResumed = state.lastResumed, now - lastResumed < .seconds(10), let outage = state.outageStart {
                return outage
            }
            state.outageStart = now
            return now
        }
        let deadline = start + self.resumeTimeout
        let (sessionID, logger, loop) = (self.grant.sessionID, self.logger, self.eventLoop)
        let (grantURL, caFile) = (self.grant.streamURL, self.caFile)
        // A session that was on a relay-blind pair asks for the path again, for the agent certificate it
        // pinned at the start (docs/BLIND-RELAY.md, "When it is not taken, and when it breaks").
        let pin = session.isOnBlindPath ? self.grant.blindPath?.agentCertificateSHA256 : nil
        logger.info(
            "connection to the gateway lost; resuming the session",
            metadata: ["jumpgate.session_id": "\(sessionID)"]
        )
        self.console.resumeChanged(.resuming)
        let bound = NIOLoopBound(session, eventLoop: loop)
        let endedByUser = { loop.execute { bound.value.shutdown(reason: "The session was ended by the user.") } }
        Task {
            var delay = 0.2
            var attempt = 0
            while NIODeadline.now() < deadline {
                // Ctrl+C during the outage ends the attempts, and the session with them.
                if self.state.withLockedValue({ $0.terminated }) { return endedByUser() }
                attempt += 1
                do {
                    let grant = Self.checked(try await resume(sessionID, pin != nil), pin: pin, logger: logger)
                    let channel = try await self.connect(grant: grant) { bound.value }
                    if self.state.withLockedValue({ $0.terminated }) {
                        channel.close(promise: nil)
                        return endedByUser()
                    }
                    self.state.withLockedValue { state in
                        state.dataChannel = channel
                        state.lastResumed = .now()
                        state.resumes += 1
                    }
                    let blind = (try? await loop.submit { bound.value.isOnBlindPath }.get()) == true
                    logger.info(
                        "session resumed",
                        metadata: [
                            "jumpgate.session_id": "\(sessionID)", "attempt": "\(attempt)",
                            "path": .string(blind ? "relay-blind" : "WebSocket"),
                        ]
                    )
                    let outage = Double((NIODeadline.now() - now).nanoseconds) / 1e9
                    self.console.resumeChanged(.resumed(attempts: attempt, seconds: outage))
                    return
                } catch {
                    if (try? await loop.submit({ bound.value.isEnded }).get()) ?? true { return }
                    logger.info(
                        "resume attempt failed",
                        metadata: [
                            "attempt": "\(attempt)",
                            "error":
                                "\((error as? ClientError)?.description ?? FailureText.reachingGateway(grantURL, caFile: caFile, NetworkFailure(error)))",
                        ]
                    )
                    // The gateway says the session is over (or not ours): retrying cannot help.
                    if let refusal = error as? ClientError, let type = refusal.awsErrorType,
                        Self.finalResumeErrors.contains(type)
                    {
                        // A session the gateway ended meanwhile ends with the gateway's reason (exit status 2).
                        let ended =
                            type == "DoesNotExistException"
                            ? refusal.awsErrorMessage.flatMap(SessionEndedNotice.reason(in:)) : nil
                        loop.execute {
                            if let ended {
                                bound.value.closedByGateway(reason: ended)
                            } else {
                                bound.value.shutdown(reason: "The session could not be resumed: \(error)")
                            }
                        }
                        return
                    }
                }
                // Exponential backoff with jitter, capped at 10 s, never past the deadline.
                let jittered = delay * Double.random(in: 0.5...1.0)
                try? await Task.sleep(nanoseconds: UInt64(jittered * 1e9))
                delay = min(delay * 2, 10)
            }
            let limit = SessionGrant.duration(self.resumeTimeout.nanoseconds / 1_000_000_000)
            loop.execute {
                bound.value.shutdown(
                    reason: "The connection to the gateway was lost and could not be resumed within \(limit); "
                        + "check the network and that the gateway is running, then start a new session."
                )
            }
        }
    }

    /// A resume's grant with its relay-blind offer kept only if asked for and for the certificate pinned at
    /// the start: the agent's certificate cannot change within a session (an agent that restarts ends its
    /// sessions), so an offer that names another one is refused, with a warning, for the WebSocket path.
    static func checked(_ grant: SessionGrant, pin: String?, logger: Logger) -> SessionGrant {
        guard let offer = grant.blindPath else { return grant }
        var grant = grant
        grant.blindPath = nil
        guard let pin else { return grant }
        guard offer.agentCertificateSHA256 == pin.lowercased() else {
            logger.warning(
                "the gateway offered the relay-blind path again for another agent certificate than the session's; using the WebSocket path",
                metadata: ["jumpgate.session_id": "\(grant.sessionID)"]
            )
            return grant
        }
        grant.blindPath = offer
        return grant
    }

    /// ResumeSession refusals that no retry can change.
    static let finalResumeErrors: Set<String> = [
        "DoesNotExistException", "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    ]
}
