import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// Two session state machines back to back (no sockets, no event loop): what one writes is what the
/// other reads, as through the gateway (which keeps the agent's session state message to itself).
struct MachinePair {
    var clock = ManualClock()
    var agent: SessionStateMachine
    var client: SessionStateMachine
    /// What each side did that is not a write or a flush, in order.
    var agentEvents: [SessionStateMachine.Action] = []
    var clientEvents: [SessionStateMachine.Action] = []
    /// Frames in flight towards each side.
    var toAgent: [ByteBuffer] = []
    var toClient: [ByteBuffer] = []

    /// `sessionType` other than Port: a shell's handshake (no properties).
    init(
        agentOffers: JumpgateExtensions = .all,
        clientSupports: JumpgateExtensions = .all,
        sessionType: String = "Port"
    ) {
        let properties: [(key: String, value: String)] =
            sessionType == "Port" ? [("portNumber", "5432"), ("type", "LocalPortForwarding")] : []
        self.agent = SessionStateMachine(
            sessionID: "s-1",
            role: .agent(
                .init(
                    agentVersion: "3.3.0.0",
                    sessionType: sessionType,
                    properties: properties,
                    offeredExtensions: agentOffers
                )
            ),
            wallClockMilliseconds: { 1_700_000_000_000 }
        )
        self.client = SessionStateMachine(
            sessionID: "s-1",
            role: .client(.init(clientVersion: "1.2.0.0", supportedExtensions: clientSupports)),
            wallClockMilliseconds: { 1_700_000_000_000 }
        )
    }

    /// Sorts a side's actions: writes go to the wire, the rest to its events.
    mutating func take(_ actions: [SessionStateMachine.Action], fromAgent: Bool) {
        for action in actions {
            switch action {
            case .write(let frame):
                if fromAgent {
                    // The gateway keeps the agent's session state; everything else reaches the client.
                    if SSMMessage.peekMessageType(frame) != .agentSessionState { self.toClient.append(frame) }
                } else {
                    self.toAgent.append(frame)
                }
            case .flush:
                break
            default:
                if fromAgent { self.agentEvents.append(action) } else { self.clientEvents.append(action) }
            }
        }
    }

    mutating func attachBoth() {
        var actions: [SessionStateMachine.Action] = []
        self.agent.dataChannelAttached(now: self.clock.now, into: &actions)
        self.take(actions, fromAgent: true)
        actions = []
        self.client.dataChannelAttached(now: self.clock.now, into: &actions)
        self.take(actions, fromAgent: false)
    }

    /// Delivers what is in flight, both ways, until nothing is. Returns how many frames moved.
    @discardableResult
    mutating func pump(withholdsOutput: Bool = false) -> Int {
        var moved = 0
        while !self.toAgent.isEmpty || !self.toClient.isEmpty {
            let (forAgent, forClient) = (self.toAgent, self.toClient)
            self.toAgent = []
            self.toClient = []
            for frame in forAgent {
                var actions: [SessionStateMachine.Action] = []
                self.agent.frameReceived(frame, withholdsOutput: false, now: self.clock.now, into: &actions)
                self.take(actions, fromAgent: true)
            }
            for frame in forClient {
                var actions: [SessionStateMachine.Action] = []
                self.client.frameReceived(
                    frame,
                    withholdsOutput: withholdsOutput,
                    now: self.clock.now,
                    into: &actions
                )
                self.take(actions, fromAgent: false)
            }
            moved += forAgent.count + forClient.count
        }
        return moved
    }

    mutating func establish() {
        self.attachBoth()
        self.pump()
    }

    /// The agent sends an `output` payload (as the stream table's data would go).
    mutating func agentSends(_ text: String) -> SessionStateMachine.SendResult {
        self.agent.sendControl(.output, ByteBuffer(string: text), now: self.clock.now)
    }
}

extension SessionStateMachine.Action {
    var streamText: String? {
        if case .streamData(let payload) = self { return String(buffer: payload) }
        return nil
    }
    var endReason: (String, Bool)? {
        if case .ended(let reason, let byPeer) = self { return (reason, byPeer) }
        return nil
    }
    var refusal: SessionRefusal? {
        if case .refused(let refusal, _) = self { return refusal }
        return nil
    }
}

extension SessionStateMachine.SendResult {
    /// The message written; a test that takes only it must not have an acknowledgement riding with it,
    /// which would be lost (the sender counts it as sent).
    var frame: ByteBuffer? {
        guard case .write(let frame, _, let acknowledgement) = self else { return nil }
        if acknowledgement != nil { Issue.record("an acknowledgement rode with this message and was dropped") }
        return frame
    }
}

@Suite("Session state machine")
struct SessionStateMachineTests {
    @Test(
        "agent and client shake hands back to back, for each extension combination",
        arguments: [
            JumpgateExtensions.all, [], [.digestFree], [.cumulativeAck], [.connectErrors],
        ]
    )
    func handshake(offered: JumpgateExtensions) throws {
        var pair = MachinePair(agentOffers: offered)
        pair.establish()
        let agentView = try #require(pair.agent.negotiated)
        let clientView = try #require(pair.client.negotiated)
        // The same settings on both ends (only the agent's smux keep-alive is its own).
        #expect(agentView.extensions == offered && clientView.extensions == offered)
        guard case .mux(let agentSmux, _) = agentView.mode, case .mux(let clientSmux, _) = clientView.mode else {
            Issue.record("not smux: \(agentView.mode) \(clientView.mode)")
            return
        }
        #expect(agentSmux == clientSmux && agentSmux == (offered.contains(.smuxV2) ? 2 : 1))
        #expect(agentView.sessionType == "Port" && clientView.sessionType == "Port")
        #expect(pair.agentEvents.count == 1 && pair.clientEvents.count == 1, "\(pair.agentEvents) \(pair.clientEvents)")
        guard case .established = pair.agentEvents.first, case .established = pair.clientEvents.first else {
            Issue.record("not established: \(pair.agentEvents) \(pair.clientEvents)")
            return
        }
        #expect(pair.agent.validationProfile == (offered.contains(.digestFree) ? .digestFree : .agent))
        // Nothing left to wait for but, with cumulative acknowledgements, the next interval.
        if !offered.contains(.cumulativeAck) {
            #expect(pair.agent.deadline(mayResend: true) == nil && pair.client.deadline(mayResend: true) == nil)
        }
    }

    @Test("the agent gives up on a handshake the client never answers")
    func handshakeTimeout() throws {
        var pair = MachinePair()
        pair.attachBoth()
        pair.toClient.removeAll()  // the request is lost for good
        let deadline = try #require(pair.agent.deadline(mayResend: false))
        var actions: [SessionStateMachine.Action] = []
        pair.agent.timerFired(now: deadline - .milliseconds(1), mayResend: false, into: &actions)
        #expect(!actions.contains { $0.endReason != nil }, "ended before the deadline")
        pair.agent.timerFired(now: deadline, mayResend: false, into: &actions)
        let end = try #require(actions.compactMap(\.endReason).first)
        #expect(!end.1 && pair.agent.isEnded)
        #expect(pair.agent.deadline(mayResend: true) == nil, "an ended session waits for nothing")
    }

    @Test("stream payloads arrive once and in order across duplicates and gaps, each acknowledged")
    func duplicatesAndGaps() throws {
        var pair = MachinePair(agentOffers: [])  // per-message acknowledgements
        pair.establish()
        pair.clientEvents.removeAll()
        let frames = try (0..<4).map { try #require(pair.agentSends("m\($0)").frame) }
        // 2 and 3 first (held), 2 again (a duplicate), then 0, then 1 twice.
        for index in [2, 3, 2, 0, 1, 1] {
            var actions: [SessionStateMachine.Action] = []
            pair.client.frameReceived(frames[index], withholdsOutput: false, now: pair.clock.now, into: &actions)
            let acks = actions.filter { if case .write = $0 { return true } else { return false } }
            #expect(!acks.isEmpty, "message \(index) was not acknowledged")
            pair.take(actions, fromAgent: false)
        }
        #expect(pair.clientEvents.compactMap(\.streamText) == ["m0", "m1", "m2", "m3"])
        pair.pump()
        #expect(pair.agent.reliability.unacknowledgedCount == 0)
    }

    @Test("a basic-mode client without a connection neither takes nor acknowledges output; the resend is taken")
    func withheldOutput() throws {
        var pair = MachinePair(agentOffers: [])
        pair.establish()
        pair.clientEvents.removeAll()
        pair.toClient.append(try #require(pair.agentSends("early").frame))
        #expect(pair.pump(withholdsOutput: true) == 1, "the withheld message was acknowledged")
        #expect(pair.clientEvents.isEmpty)
        // Still unacknowledged: the agent resends once its deadline comes.
        let deadline = try #require(pair.agent.deadline(mayResend: true))
        pair.clock.advance(by: deadline - pair.clock.now)
        var actions: [SessionStateMachine.Action] = []
        pair.agent.timerFired(now: pair.clock.now, mayResend: true, into: &actions)
        pair.take(actions, fromAgent: true)
        pair.pump()
        #expect(pair.clientEvents.compactMap(\.streamText) == ["early"])
        #expect(pair.agent.reliability.unacknowledgedCount == 0)
    }

    @Test("resume: what was sent while the data channel was away goes on the new one, oldest first")
    func resume() throws {
        var pair = MachinePair()
        pair.establish()
        pair.clientEvents.removeAll()
        var actions: [SessionStateMachine.Action] = []
        pair.agent.dataChannelLost(reason: "gone", canResume: true, into: &actions)
        guard case .awaitResume = actions.first else {
            Issue.record("no resume: \(actions)")
            return
        }
        #expect(pair.agent.reliability.unacknowledgedCount == 0)
        for index in 0..<3 {
            guard case .held = pair.agentSends("while away \(index)") else {
                Issue.record("a message was not held while the channel was away")
                return
            }
        }
        actions = []
        pair.agent.dataChannelAttached(now: pair.clock.now, into: &actions)
        #expect(actions.contains(.notice(.resumed(resent: 3))))
        #expect(actions.contains { if case .sendWindowOpened = $0 { return true } else { return false } })
        pair.take(actions, fromAgent: true)
        pair.pump()
        #expect(pair.clientEvents.compactMap(\.streamText) == ["while away 0", "while away 1", "while away 2"])
    }

    @Test("the data channel lost for good, or refused before the session started, ends the session")
    func lostForGood() throws {
        var pair = MachinePair()
        pair.establish()
        var actions: [SessionStateMachine.Action] = []
        pair.client.dataChannelLost(reason: "the data channel closed", canResume: false, into: &actions)
        #expect(actions.compactMap(\.endReason).first?.1 == true)

        var refused = MachinePair()
        refused.client.dataChannelRefused(reason: "token already used")
        actions = []
        refused.client.dataChannelLost(reason: "closed", canResume: true, into: &actions)
        let reason = try #require(actions.compactMap(\.endReason).first)
        #expect(reason.0 == "The gateway refused the data channel: token already used.")
        #expect(!reason.1, "the refusal is this side's end, not the peer's")
    }

    @Test(
        "after the handshake, any refused data channel resumes, one refused because the session ended too"
    )
    func refusedAfterHandshake() throws {
        // A WebSocket close reason is cut to 123 bytes, too short for most end reasons, so the client does not
        // end with it: its resume's ResumeSession answers DoesNotExistException with the whole reason.
        let long =
            "The agent on mi-0123456789abcdef0 was lost: it did not reconnect within 300 seconds "
            + "(its process or host may have stopped, or its network is down), so the session's connections are gone."
        var pair = MachinePair()
        pair.establish()
        for refusal in [SessionEndedNotice.refusal(reason: long), "invalid or expired token for this session", nil] {
            var actions: [SessionStateMachine.Action] = []
            if let refusal { pair.client.dataChannelRefused(reason: refusal) }
            pair.client.dataChannelLost(reason: "the data channel closed", canResume: true, into: &actions)
            #expect(actions.compactMap(\.endReason).isEmpty, "\(String(describing: refusal))")
            guard case .awaitResume = actions.first else {
                Issue.record("no resume after \(String(describing: refusal)): \(actions)")
                continue
            }
            pair.client.dataChannelAttached(now: pair.clock.now, into: &actions)
        }
    }

    @Test(
        "the session-ended notice: the reason back from the refusal and ResumeSession's message, nothing from other text"
    )
    func sessionEndedNotice() {
        for reason in ["Session terminated by alice.", "Session terminated by alice", "The agent on mi-1 was lost."] {
            let sentence = reason.hasSuffix(".") ? reason : reason + "."
            #expect(SessionEndedNotice.reason(in: SessionEndedNotice.refusal(reason: reason)) == sentence)
            let message = SessionEndedNotice.resumeMessage(sessionID: "s-1", reason: reason)
            #expect(message == "Session s-1 has ended: \(sentence)")
            #expect(SessionEndedNotice.reason(in: message) == sentence)
        }
        #expect(
            SessionEndedNotice.refusal(reason: "Idle for 20 minutes.") == "the session has ended: Idle for 20 minutes"
        )
        for text in [
            "invalid or expired token for this session", "Session s-1 is already terminated.", "has ended: ",
            "has ended: .",
        ] {
            #expect(SessionEndedNotice.reason(in: text) == nil, "\(text)")
        }
    }

    @Test("channel_closed and TerminateSession end the session as the peer's doing; later input is ignored")
    func endedByPeer() throws {
        var pair = MachinePair()
        pair.establish()
        let closed = SSMMessage(
            messageType: .channelClosed,
            createdDate: 1,
            payload: ChannelClosedPayload(
                createdDate: "2026-12-04T00:00:00Z",
                destinationID: "mi-1",
                sessionID: "s-1",
                output: "Session terminated"
            ).encoded()
        )
        var actions: [SessionStateMachine.Action] = []
        pair.client.frameReceived(closed.encoded(), withholdsOutput: false, now: pair.clock.now, into: &actions)
        #expect(actions.compactMap(\.endReason).map(\.0) == ["Session terminated"])
        actions = []
        pair.client.frameReceived(closed.encoded(), withholdsOutput: false, now: pair.clock.now, into: &actions)
        #expect(actions.isEmpty, "an ended session took more input: \(actions)")

        var terminated = MachinePair()
        terminated.establish()
        terminated.toAgent.append(
            try #require(
                terminated.client.sendControl(.flag, FlagPayload.terminateSession.encoded(), now: .now()).frame
            )
        )
        terminated.pump()
        #expect(terminated.agentEvents.compactMap(\.endReason).map(\.0) == ["the client terminated the session"])
    }

    @Test("stream flags and connect errors go to the streams; a connect error needs the extension")
    func streamControl() throws {
        var pair = MachinePair()
        pair.establish()
        pair.clientEvents.removeAll()
        for flag in [FlagPayload.connectToPortError, .disconnectToPort] {
            pair.toClient.append(try #require(pair.agent.sendControl(.flag, flag.encoded(), now: .now()).frame))
        }
        let error = ConnectErrorPayload(streamID: 3, reason: "connection refused")
        pair.toClient.append(
            try #require(pair.agent.sendControl(.jumpgateConnectError, error.encoded(), now: .now()).frame)
        )
        pair.pump()
        #expect(pair.clientEvents.count == 3)
        #expect(pair.clientEvents.contains { if case .streamFlag(.connectToPortError) = $0 { true } else { false } })
        #expect(pair.clientEvents.contains { if case .streamFlag(.disconnectToPort) = $0 { true } else { false } })
        #expect(pair.clientEvents.contains { if case .connectError(error) = $0 { true } else { false } })

        var official = MachinePair(agentOffers: [])
        official.establish()
        official.clientEvents.removeAll()
        official.toClient.append(
            try #require(official.agent.sendControl(.jumpgateConnectError, error.encoded(), now: .now()).frame)
        )
        official.pump()
        #expect(official.clientEvents.compactMap(\.refusal) == [.unexpectedMessage])
    }

    @Test("every refusal: bad bytes, a negative sequence number, a foreign payload type, acks of what was never sent")
    func refusals() throws {
        var pair = MachinePair(agentOffers: [])
        pair.establish()
        var actions: [SessionStateMachine.Action] = []
        pair.client.frameReceived(
            ByteBuffer(string: "not a message"),
            withholdsOutput: false,
            now: .now(),
            into: &actions
        )
        // A handshake request to the agent: only clients take one.
        let request = try #require(
            pair.client.sendControl(.handshakeRequest, ByteBuffer(string: "{}"), now: .now()).frame
        )
        pair.agent.frameReceived(request, withholdsOutput: false, now: .now(), into: &actions)
        // An acknowledgement of a message the client never sent.
        let ack = SSMMessage(
            messageType: .acknowledge,
            createdDate: 1,
            payload: AcknowledgeContent(
                acknowledgedMessageType: .inputStreamData,
                acknowledgedMessageID: MessageID(high: 1, low: 1),
                acknowledgedSequenceNumber: 1_000
            ).encoded()
        )
        pair.client.frameReceived(ack.encoded(), withholdsOutput: false, now: .now(), into: &actions)
        // Agent status is for clients only.
        let status = SSMMessage(
            messageType: .jumpgateAgentStatus,
            createdDate: 1,
            payload: AgentStatusPayload(status: .lost, reason: "the agent went away").encoded()
        )
        pair.agent.frameReceived(status.encoded(), withholdsOutput: false, now: .now(), into: &actions)
        #expect(
            actions.compactMap(\.refusal) == [
                .invalidMessage, .unexpectedMessage, .unexpectedMessage, .unexpectedMessage,
            ]
        )
        #expect(!pair.agent.isEnded && !pair.client.isEnded, "a refusal ended the session")
        actions = []
        pair.client.frameReceived(status.encoded(), withholdsOutput: false, now: .now(), into: &actions)
        #expect(actions.count == 1)
        guard case .agentStatus(let received) = actions.first else {
            Issue.record("the client did not take the agent status: \(actions)")
            return
        }
        #expect(received.status == .lost)

        // A cumulative acknowledgement below -1 once the agent's oldest unacknowledged message is past 0:
        // Int64.min overflowed the distance to it and stopped the agent (one crafted message through the
        // gateway, from anyone who may start a session).
        #expect(pair.agent.reliability.nextSequenceNumber > 1)
        actions = []
        for highest in [Int64.min, -2] {
            let cumulative = SSMMessage(
                messageType: .acknowledge,
                createdDate: 1,
                payloadType: .jumpgateCumulativeAck,
                payload: CumulativeAckPayload(highestContiguousSequenceNumber: highest).encoded()
            )
            pair.agent.frameReceived(cumulative.encoded(), withholdsOutput: false, now: .now(), into: &actions)
        }
        #expect(actions.compactMap(\.refusal) == [.unexpectedMessage, .unexpectedMessage])
        #expect(!pair.agent.isEnded)
        // The state machine itself, past the session's check: no trap, nothing acknowledged.
        var reliability = pair.agent.reliability
        #expect(reliability.cumulativeAcknowledgementReceived(upTo: .min, now: .now()) == .unknown)
    }

    @Test("resends wait while the channel may not carry them; an acknowledgement reopens the send window")
    func deadlinesAndWindow() throws {
        var pair = MachinePair(agentOffers: [])
        pair.establish()
        pair.agentEvents.removeAll()
        var sent: [ByteBuffer] = []
        while pair.agent.reliability.canSend {
            sent.append(try #require(pair.agentSends(String(repeating: "x", count: 60_000)).frame))
        }
        #expect(pair.agent.deadline(mayResend: false) == nil, "a resend is awaited on a channel that may not carry it")
        let deadline = try #require(pair.agent.deadline(mayResend: true))
        var actions: [SessionStateMachine.Action] = []
        pair.agent.timerFired(now: deadline, mayResend: true, into: &actions)
        #expect(actions.filter { if case .write = $0 { true } else { false } }.count == 1, "one resend per firing")
        // The client receives everything: its acknowledgements reopen the agent's window.
        pair.toClient = sent
        pair.pump()
        #expect(pair.agent.reliability.canSend)
        #expect(pair.agentEvents.contains { if case .sendWindowOpened = $0 { true } else { false } })
    }
}
