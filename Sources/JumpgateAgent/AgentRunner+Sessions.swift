import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Sessions: each interactive_shell starts a port session on a data channel of its own; data channels
/// that drop are reconnected; each session's end is reported (and retried until acknowledged).
extension AgentRunner {
    func startSession(_ task: AgentTaskPayload) {
        let sessionID = task.sessionID
        let sessionType = task.documentContent["sessionType"]?.stringValue ?? "Port"
        var properties: [(key: String, value: String)] = []
        let makeDelegate: @Sendable (any EventLoop) -> any PortSessionDelegate
        switch SessionAdmission.decide(
            sessionType: sessionType,
            allowShell: self.options.allowShell,
            document: task.documentContent
        ) {
        case .success(.shell):
            let recording = RecordingRequest(document: task.documentContent)
            let (runAs, profile) = Self.shellInputs(task.documentContent)
            makeDelegate = { loop in
                ShellSessionDelegate(
                    runner: self,
                    sessionID: sessionID,
                    eventLoop: loop,
                    recording: recording,
                    runAs: runAs,
                    profile: profile
                )
            }
        case .success(.command(let command, let interactive)):
            let recording = RecordingRequest(document: task.documentContent)
            makeDelegate = { loop in
                ShellSessionDelegate(
                    runner: self,
                    sessionID: sessionID,
                    eventLoop: loop,
                    command: command,
                    interactive: interactive,
                    recording: recording,
                    runAs: Self.shellInputs(task.documentContent).runAs
                )
            }
        case .success(.port):
            for (key, value) in task.documentContent["properties"]?.objectValue ?? [] {
                if let s = value.stringValue { properties.append((key, s)) }
            }
            if properties.isEmpty { properties = task.parameters + [("type", "LocalPortForwarding")] }
            makeDelegate = { [properties] loop in
                AgentSessionDelegate(runner: self, sessionID: sessionID, properties: properties, eventLoop: loop)
            }
        case .failure(let refusal):
            // A security event (a shell asked of an agent that serves none): logged with who asked, journalled
            // for the audit trail (`SessionRefused`), and the session fails with the reason, which the gateway
            // records and the client prints.
            self.logger.warning(
                "session refused",
                metadata: [
                    "jumpgate.session_id": "\(sessionID)", "owner": "\(task.sessionOwner)",
                    "session_type": "\(sessionType)", "reason": "\(refusal)",
                ]
            )
            self.journalSessionRefusal(sessionID, refusedBy: refusal.refusedBy, reason: refusal.description)
            return self.refuseSession(sessionID, reason: refusal.description)
        }
        let logger = self.logger
        let blind = self.blind?.ticket(document: task.documentContent)
        Task { [properties] in
            do {
                try await self.openDataChannel(
                    sessionID: sessionID,
                    sessionType: sessionType,
                    properties: properties,
                    blind: blind,
                    makeDelegate: makeDelegate
                )
            } catch {
                // The reason becomes the session's: its client prints it, and `sessions show` keeps it.
                let reason = "The agent could not open the session's data channel: " + self.explain(error)
                logger.warning(
                    "session could not start",
                    metadata: ["jumpgate.session_id": "\(sessionID)", "reason": "\(reason)"]
                )
                self.reportComplete(sessionID: sessionID, status: "Failed", output: reason)
            }
        }
    }

    /// The account a start's document asks shells to run as (`inputs.runAsEnabled` with
    /// `runAsDefaultUser`), and its shell profile (`inputs.shellProfile.linux`), as SSM's agent reads them.
    static func shellInputs(_ document: JSONValue) -> (runAs: String?, profile: String?) {
        let inputs = document["inputs"]
        let enabled = inputs?["runAsEnabled"]?.boolValue == true || inputs?["runAsEnabled"]?.stringValue == "true"
        let user = inputs?["runAsDefaultUser"]?.stringValue ?? ""
        let profile = inputs?["shellProfile"]?["linux"]?.stringValue ?? ""
        return (enabled && !user.isEmpty ? user : nil, profile.allSatisfy(\.isWhitespace) ? nil : profile)
    }

    /// A session this agent will not serve: it ends as Failed with `reason`, which its client prints.
    func refuseSession(_ sessionID: String, reason: String) {
        self.reportComplete(sessionID: sessionID, status: "Failed", output: reason)
    }

    /// Opens a session's data channel with a new session handler whose delegate `makeDelegate` creates on the
    /// session's event loop: the relay-blind path first when the start offered it (`blind`), else, or when
    /// it fails, the WebSocket path.
    func openDataChannel(
        sessionID: String,
        sessionType: String,
        properties: [(key: String, value: String)],
        blind: BlindTicket? = nil,
        makeDelegate: @escaping @Sendable (any EventLoop) -> any PortSessionDelegate
    ) async throws {
        let eventLoop = self.group.next()
        let configuration = AgentHandshakeStateMachine.Configuration(
            agentVersion: self.options.reportedVersion,
            sessionType: sessionType,
            properties: properties,
            offeredExtensions: self.options.offerExtensions ? .all : []
        )
        let logger = self.logger
        let session = try await eventLoop.submit {
            let session = PortSession(sessionID: sessionID, role: .agent(configuration), logger: logger)
            session.delegate = makeDelegate(eventLoop)
            session.onDisconnect = { [weak self] session in
                self?.dataChannelLost(session, sessionID: sessionID, eventLoop: eventLoop)
            }
            let bound = NIOLoopBound(session, eventLoop: eventLoop)
            self.live.withLockedValue { $0[sessionID] = LiveSession(session: bound) }
            return bound
        }.get()
        if let blind, await self.connectBlind(blind, sessionID: sessionID, session: session, eventLoop: eventLoop) {
            return
        }
        try await self.connectDataChannel(sessionID: sessionID, session: session, eventLoop: eventLoop)
        self.logger.info("session started", metadata: ["jumpgate.session_id": "\(sessionID)"])
    }

    /// The session on its relay-blind path; false (logged) when that did not work out, and the caller
    /// takes the WebSocket path. A wrong client secret is a security event: logged as a warning.
    func connectBlind(
        _ ticket: BlindTicket,
        sessionID: String,
        session: NIOLoopBound<PortSession>,
        eventLoop: any EventLoop
    ) async -> Bool {
        do {
            _ = try await self.gateway.connectBlind(ticket, eventLoop: eventLoop) { _ in [session.value] }
            self.logger.info(
                "data channel on the relay-blind path",
                metadata: ["jumpgate.session_id": "\(sessionID)"]
            )
            return true
        } catch {
            // Someone paired as the client without its secret: counted and reported with the agent's other
            // refusals (the gateway's metrics and audit trail, on the session).
            if error is ClientSecretMismatch { self.messageRefused(.clientSecretMismatch, sessionID: sessionID) }
            let level: Logger.Level = error is ClientSecretMismatch ? .warning : .info
            self.logger.log(
                level: level,
                "relay-blind path not taken; using the WebSocket path",
                metadata: ["jumpgate.session_id": "\(sessionID)", "reason": "\(error)"]
            )
            return false
        }
    }

    /// Opens the session's data channel (a fresh token each time) with `session` as its handler.
    /// `askingBlind`: the session was on a relay-blind pair when it broke; the token request asks for the
    /// path again, and when the answer offers it, it is tried first. Returns whether the channel is a pair.
    @discardableResult
    func connectDataChannel(
        sessionID: String,
        session: NIOLoopBound<PortSession>,
        eventLoop: any EventLoop,
        askingBlind: Bool = false
    )
        async throws -> Bool
    {
        let path = "/v1/data-channel/\(sessionID)"
        let (token, reply) = try await self.channelTokenReply(path: path, askingBlind: askingBlind)
        if askingBlind, let ticket = self.blind?.ticket(tokenReply: reply),
            await self.connectBlind(ticket, sessionID: sessionID, session: session, eventLoop: eventLoop)
        {
            return true
        }
        let query = "role=publish_subscribe"
        let opening = OpenDataChannelInput(tokenValue: token, clientInstanceID: self.state.instanceID, clientID: "")
            .json
        _ = try await self.gateway.connectWebSocket(
            pathAndQuery: "\(path)?\(query)",
            headers: self.signedUpgradeHeaders(path: path, query: query),
            eventLoop: eventLoop,
            configuration: .portSession
        ) { _ in
            [OpeningFrameWriter(json: opening), session.value]
        }
        return false
    }

    /// The data channel dropped (the gateway restarted, the network blinked): target connections stay
    /// open while a new data channel is tried with backoff; unacknowledged messages are resent on it.
    func dataChannelLost(_ session: PortSession, sessionID: String, eventLoop: any EventLoop) {
        guard !self.draining.withLockedValue({ $0 }) else { return }
        let bound = NIOLoopBound(session, eventLoop: eventLoop)
        // A session that was on a relay-blind pair asks for the path again (docs/BLIND-RELAY.md, "Breaks").
        let askingBlind = session.isOnBlindPath && self.blind != nil
        let deadline = NIODeadline.now() + self.options.resumeTimeout
        let logger = self.logger
        logger.warning("data channel lost; reconnecting", metadata: ["jumpgate.session_id": "\(sessionID)"])
        Task {
            var delay = 0.2
            var attempt = 0
            while NIODeadline.now() < deadline {
                attempt += 1
                if (try? await eventLoop.submit({ bound.value.isEnded }).get()) ?? true { return }
                do {
                    let blind = try await self.connectDataChannel(
                        sessionID: sessionID,
                        session: bound,
                        eventLoop: eventLoop,
                        askingBlind: askingBlind
                    )
                    logger.info(
                        "data channel reconnected",
                        metadata: [
                            "jumpgate.session_id": "\(sessionID)", "attempt": "\(attempt)",
                            "path": .string(blind ? "relay-blind" : "WebSocket"),
                        ]
                    )
                    return
                } catch let error as AgentError where error.isFinal {
                    logger.info(
                        "the gateway ended the session while its data channel was down",
                        metadata: ["jumpgate.session_id": "\(sessionID)", "error": "\(error)"]
                    )
                    eventLoop.execute { bound.value.closedByGateway(reason: "The gateway ended the session.") }
                    return
                } catch {
                    logger.info(
                        "data channel reconnect failed",
                        metadata: [
                            "jumpgate.session_id": "\(sessionID)", "attempt": "\(attempt)",
                            "problem": "\(self.explain(error))",
                        ]
                    )
                }
                try? await Task.sleep(nanoseconds: UInt64(delay * Double.random(in: 0.5...1.0) * 1e9))
                delay = min(delay * 2, 10)
            }
            eventLoop.execute {
                bound.value.shutdown(reason: "The agent could not reconnect the session's data channel in time.")
            }
        }
    }

    /// SIGTERM: every open session is told why it ends (its client gets the reason through the gateway's
    /// channel_closed), then the control channel closes.
    public func drain(timeout: TimeAmount = .seconds(2)) async {
        self.draining.withLockedValue { $0 = true }
        let sessions = self.live.withLockedValue { live -> [LiveSession] in
            defer { live = [:] }
            return Array(live.values)
        }
        let reason = "The agent on \(self.state.instanceID) is shutting down."
        for entry in sessions {
            try? await entry.eventLoop.submit { entry.session.value.shutdown(reason: reason) }.get()
        }
        if !sessions.isEmpty {
            self.logger.info("drained sessions", metadata: ["count": "\(sessions.count)"])
            // Let the agent_task_complete messages reach the gateway before the control channel closes.
            try? await Task.sleep(nanoseconds: UInt64(timeout.nanoseconds))
        }
        // What sessions refused goes to the log now, not at the end of its interval, and to the gateway.
        self.flushRefusals(all: true, report: false)
        await self.uploadBeforeExit()
        await self.uploadRecordingsBeforeExit()
        try? await self.control.withLockedValue({ $0 })?.close()
    }

    /// `channel_closed` on the control channel: the session ends (as ended by the peer) if it is live here.
    func sessionClosedByGateway(_ sessionID: String, reason: String) {
        guard let entry = self.live.withLockedValue({ $0[sessionID] }) else { return }
        entry.eventLoop.execute { entry.session.value.closedByGateway(reason: reason) }
    }

    /// A session ended (either kind): forgotten here, logged, and reported to the gateway (retried until
    /// acknowledged). Ended by the peer (or, for a shell, by its program) is a success.
    /// `report`: the text reported with a successful end (a program's exit status); none by default.
    func sessionDidEnd(_ sessionID: String, reason: String, byPeer: Bool, report: String? = nil) {
        _ = self.live.withLockedValue { $0.removeValue(forKey: sessionID) }
        self.logger.info("session ended", metadata: ["jumpgate.session_id": "\(sessionID)", "reason": "\(reason)"])
        let status = byPeer ? "Success" : (self.draining.withLockedValue { $0 } ? "Cancelled" : "Failed")
        self.reportComplete(sessionID: sessionID, status: status, output: byPeer ? report ?? "" : reason)
    }

    /// `agent_task_complete` on the control channel, retried 3 times 1 s apart until the gateway's
    /// `agent_task_acknowledge` arrives (and again after a control-channel reconnect).
    func reportComplete(sessionID: String, status: String, output: String) {
        let payload = AgentTaskCompletePayload(
            taskID: sessionID,
            finalTaskStatus: status,
            instanceID: self.state.instanceID,
            output: output
        )
        self.unacknowledgedCompletions.withLockedValue { $0[sessionID] = payload }
        self.sendCompletion(payload)
        let logger = self.logger
        Task {
            for retry in 1...3 {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                guard var pending = self.unacknowledgedCompletions.withLockedValue({ $0[sessionID] }) else { return }
                pending.retryNumber = Int64(retry)
                logger.debug(
                    "agent_task_complete not acknowledged; sending again",
                    metadata: ["jumpgate.session_id": "\(sessionID)", "retry": "\(retry)"]
                )
                self.sendCompletion(pending)
            }
        }
    }

    func sendCompletion(_ payload: AgentTaskCompletePayload) {
        guard let channel = self.control.withLockedValue({ $0 }) else { return }
        let message = SSMMessage(
            messageType: .agentTaskComplete,
            createdDate: WallClock.nowMilliseconds(),
            payload: payload.encoded()
        )
        channel.writeAndFlush(WebSocketMessage.binary(message.encoded()), promise: nil)
    }

    /// The gateway acknowledged a session's agent_task_complete.
    func completionAcknowledged(taskID: String) {
        let removed = self.unacknowledgedCompletions.withLockedValue { $0.removeValue(forKey: taskID) }
        if removed != nil {
            self.logger.debug("agent_task_complete acknowledged", metadata: ["jumpgate.session_id": "\(taskID)"])
        }
    }

    /// Session ids whose end the gateway has not acknowledged yet.
    public var unacknowledgedSessionEnds: [String] {
        self.unacknowledgedCompletions.withLockedValue { Array($0.keys) }
    }
}
