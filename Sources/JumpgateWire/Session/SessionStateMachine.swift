import NIOCore

/// One end of a session above its data channel, as a pure state machine: the handshake (either role),
/// reliable delivery (sequencing, acknowledgements, resends, resume), which message goes where, the
/// deadlines the owner's single timer waits for, and the session's end. It returns ``Action``s; the NIO
/// handler (`PortSession`) carries them out in order and gives the stream payloads to the stream table
/// (``StreamTable``). Nothing here touches a socket or a clock: the monotonic time comes with each call,
/// the wall clock (a message's CreatedDate) from the function given at init.
public struct SessionStateMachine {
    public enum Role: Sendable {
        case agent(AgentHandshakeStateMachine.Configuration)
        case client(ClientHandshakeStateMachine.Configuration)
    }

    enum Handshake {
        case agent(AgentHandshakeStateMachine)
        case client(ClientHandshakeStateMachine)
    }

    /// What the owner does, in order.
    public enum Action: Equatable {
        /// Write an encoded message (an acknowledgement, a resend, a handshake message, the agent's
        /// session state) to the data channel. A read burst's writes are flushed at its end.
        case write(ByteBuffer)
        /// Flush the data channel now (the handshake and a resume happen outside read bursts).
        case flush
        /// The handshake completed: the streams start with these settings.
        case established(NegotiatedSession, customerMessage: String)
        /// An `output` payload, in sequence order: the stream table takes it (smux bytes, or basic mode's
        /// raw bytes).
        case streamData(ByteBuffer)
        /// A flag for the streams (connect_to_port_error, disconnect_to_port).
        case streamFlag(FlagPayload)
        /// Client, `connect-errors`: why the agent could not connect a stream.
        case connectError(ConnectErrorPayload)
        /// Client: the gateway reports the agent away or back.
        case agentStatus(AgentStatusPayload)
        /// Agent, terminal session: the client's terminal has this size now.
        case terminalSize(TerminalSize)
        /// Client, terminal session: text for standard error (the agent's start-up errors).
        case standardError(ByteBuffer)
        /// Client, terminal session (`exit-code`): the program's exit status; the session ends next.
        case exitCode(Int32)
        /// Something from the peer was refused and dropped; the owner counts it.
        case refused(SessionRefusal, String)
        /// Acknowledgements reopened the send window: streams that wait for it may send.
        case sendWindowOpened
        /// Something worth a log line happened.
        case notice(Notice)
        /// The data channel is gone and the owner reconnects it: the streams stay open meanwhile, and what
        /// they send is held (`unacknowledged` messages wait for the new channel).
        case awaitResume(unacknowledged: Int)
        /// The session is over: reset the streams, tell the owner, close the data channel.
        case ended(reason: String, byPeer: Bool)
    }

    public enum Notice: Equatable, Sendable {
        /// A new data channel replaced a lost one; `resent` unacknowledged messages went again.
        case resumed(resent: Int)
        case publicationPaused
        case publicationResumed(resent: Int)
        /// Resent messages the peer had and does not acknowledge twice were taken as delivered.
        case assumedDelivered(count: Int)
    }

    /// What became of a message the streams asked to send.
    public enum SendResult {
        /// Write it, after `acknowledgement` if there is one (a cumulative acknowledgement that rides with
        /// it); `headChanged`: it is the only unacknowledged message, so the resend deadline moved.
        case write(ByteBuffer, headChanged: Bool, acknowledgement: ByteBuffer?)
        /// Held for later (no data channel, or the peer paused publication); it goes on resume.
        case held
        /// The session is over: nothing is sent.
        case dropped
        /// The control reserve is exhausted (a peer that acknowledges nothing): the session must end.
        case overflow(reason: String)
    }

    public let sessionID: String
    var handshake: Handshake
    public internal(set) var reliability = ReliableDeliveryStateMachine()
    public internal(set) var negotiated: NegotiatedSession?
    public internal(set) var isEnded = false
    /// Whether the agent sends its session state at each attach, for the gateway (which takes it out of
    /// the stream). Not on the relay-blind path, where the gateway cannot read the stream and the client
    /// would get it (``PortSession`` sets it per attach).
    public var sendsSessionState = true
    /// Whether a data channel was ever attached (a later attachment is a resume).
    var attachedOnce = false
    /// Ending once everything sent is acknowledged (``endWhenDelivered(reason:byPeer:now:within:into:)``), or
    /// at the deadline.
    var closing: (reason: String, byPeer: Bool, deadline: NIODeadline)?
    /// The gateway's reason when it refused the data channel (WebSocket close 1008, e.g. a spent token).
    public internal(set) var refusal: String?
    var writer: SessionMessageWriter
    let wallClockMilliseconds: () -> UInt64

    public init(sessionID: String, role: Role, wallClockMilliseconds: @escaping () -> UInt64) {
        self.sessionID = sessionID
        self.wallClockMilliseconds = wallClockMilliseconds
        switch role {
        case .agent(let configuration):
            self.handshake = .agent(AgentHandshakeStateMachine(configuration: configuration))
            self.writer = SessionMessageWriter(role: .agent)
        case .client(let configuration):
            self.handshake = .client(ClientHandshakeStateMachine(configuration: configuration))
            self.writer = SessionMessageWriter(role: .client)
        }
    }

    public var isAgent: Bool {
        if case .agent = self.handshake { return true }
        return false
    }

    /// How incoming messages are checked: digests are not required once `digest-free` is negotiated.
    public var validationProfile: SSMValidationProfile {
        if self.negotiated?.extensions.contains(.digestFree) == true { return .digestFree }
        return self.isAgent ? .agent : .client
    }

    // MARK: the data channel comes and goes

    /// A data channel was attached. The first one starts the agent's handshake (its session state, then
    /// the handshake request); a later one is a resume: everything the peer has not acknowledged goes
    /// again, oldest first (the peer drops and re-acknowledges what it already has).
    public mutating func dataChannelAttached(now: NIODeadline, into actions: inout [Action]) {
        guard !self.isEnded else { return }
        if self.attachedOnce {
            let frames = self.reliability.connectionRestored(now: now)
            actions.append(.notice(.resumed(resent: frames.count)))
            if self.isAgent, self.sendsSessionState { actions.append(.write(self.agentSessionState())) }
            for frame in frames { actions.append(.write(frame)) }
            actions.append(.sendWindowOpened)
            actions.append(.flush)
            return
        }
        self.attachedOnce = true
        guard case .agent(var machine) = self.handshake else { return }
        let action = machine.start(now: now)
        self.handshake = .agent(machine)
        if self.sendsSessionState { actions.append(.write(self.agentSessionState())) }
        self.agentHandshake(action, now: now, into: &actions)
    }

    /// The data channel is gone. With `canResume` (an owner that reconnects it) the streams are held
    /// and what is sent meanwhile waits; without, or when the gateway refused the channel before the
    /// session started (a spent or wrong token: resuming cannot help), the session ends.
    public mutating func dataChannelLost(reason: String, canResume: Bool, into actions: inout [Action]) {
        guard !self.isEnded else { return }
        if self.negotiated == nil, let refusal = self.refusal {
            return self.end(reason: "The gateway refused the data channel: \(refusal).", byPeer: false, into: &actions)
        }
        guard canResume else { return self.end(reason: reason, byPeer: true, into: &actions) }
        self.reliability.connectionLost()
        actions.append(.awaitResume(unacknowledged: self.reliability.unacknowledgedCount))
    }

    /// The gateway closed the data channel with WebSocket code 1008 (a policy refusal) and this reason.
    public mutating func dataChannelRefused(reason: String) {
        self.refusal = reason
    }

    /// Ends the session (from this side, or as reported by the peer or the gateway). Once.
    public mutating func end(reason: String, byPeer: Bool, into actions: inout [Action]) {
        guard !self.isEnded else { return }
        self.isEnded = true
        actions.append(.ended(reason: reason, byPeer: byPeer))
    }

    /// Ends the session once the peer has acknowledged everything sent so far (a shell's last output and
    /// its exit code), or after `within` if it does not: the agent's end after its program exits. Messages
    /// sent meanwhile are still delivered.
    public mutating func endWhenDelivered(
        reason: String,
        byPeer: Bool,
        now: NIODeadline,
        within: TimeAmount,
        into actions: inout [Action]
    ) {
        guard !self.isEnded, self.closing == nil else { return }
        guard self.reliability.unacknowledgedCount > 0 else {
            return self.end(reason: reason, byPeer: byPeer, into: &actions)
        }
        self.closing = (reason, byPeer, now + within)
    }

    /// A pending ``endWhenDelivered(reason:byPeer:now:within:into:)`` happens once nothing is unacknowledged
    /// or its deadline passed.
    mutating func endIfDelivered(now: NIODeadline, into actions: inout [Action]) {
        guard let closing = self.closing else { return }
        if self.reliability.unacknowledgedCount == 0 || now >= closing.deadline {
            self.end(reason: closing.reason, byPeer: closing.byPeer, into: &actions)
        }
    }

    // MARK: deadlines

    /// The earliest deadline of the handshake and of reliable delivery; nil when nothing is awaited (an
    /// idle session has no timer). Resends are only awaited when `mayResend` (the data channel is
    /// writable and read): a resend would only queue behind what the peer is not reading.
    public func deadline(mayResend: Bool) -> NIODeadline? {
        guard !self.isEnded else { return nil }
        var next: NIODeadline?
        if case .agent(let machine) = self.handshake, self.negotiated == nil { next = machine.deadline }
        if let deadline = self.reliability.acknowledgementDeadline { next = min(next ?? deadline, deadline) }
        if mayResend, let deadline = self.reliability.retransmitDeadline { next = min(next ?? deadline, deadline) }
        if let closing = self.closing { next = min(next ?? closing.deadline, closing.deadline) }
        return next
    }

    /// The owner's timer went off: whatever is due happens (the handshake's timeout, a cumulative
    /// acknowledgement, one resend, giving up on a message never acknowledged).
    public mutating func timerFired(now: NIODeadline, mayResend: Bool, into actions: inout [Action]) {
        guard !self.isEnded else { return }
        if case .agent(var machine) = self.handshake, self.negotiated == nil {
            let action = machine.timerFired(now: now)
            self.handshake = .agent(machine)
            self.agentHandshake(action, now: now, into: &actions)
            guard !self.isEnded else { return }
        }
        self.acknowledge(self.reliability.acknowledgementTimerFired(now: now), into: &actions)
        switch mayResend ? self.reliability.retransmitTimerFired(now: now) : .none {
        case .resend(let frame, _):
            actions.append(.write(frame))
        case .giveUp(let sequenceNumber):
            self.end(
                reason: "message \(sequenceNumber) was never acknowledged; giving up",
                byPeer: false,
                into: &actions
            )
            return
        case .assumedDelivered(let count, let windowOpened):
            actions.append(.notice(.assumedDelivered(count: count)))
            if windowOpened { actions.append(.sendWindowOpened) }
        case .none:
            break
        }
        self.endIfDelivered(now: now, into: &actions)
        actions.append(.flush)
    }

    // MARK: sending

    /// Encodes and sequences the next stream message, whose `payloadLength` bytes `writePayload` writes
    /// straight into the frame (one copy from the source). Data (`isControl` false) is only sent after
    /// checking ``ReliableDeliveryStateMachine/canSend``; control messages (handshake, flags, smux
    /// SYN/FIN/UPD, connect errors) may use the reserve above it.
    public mutating func sendStreamMessage(
        payloadType: PayloadType,
        payloadLength: Int,
        isControl: Bool,
        now: NIODeadline,
        writePayload: (inout ByteBuffer) -> Void
    ) -> SendResult {
        guard !self.isEnded else { return .dropped }
        let createdDate = self.wallClockMilliseconds()
        let frame = self.writer.streamMessage(
            sequenceNumber: self.reliability.nextSequenceNumber,
            createdDate: createdDate,
            payloadType: payloadType,
            payloadLength: payloadLength,
            writePayload: writePayload
        )
        do {
            guard case .write(let bytes) = try self.reliability.send(frame, now: now, isControl: isControl) else {
                return .held
            }
            var acknowledgement: ByteBuffer?
            let ahead = self.reliability.acknowledgementToSendAhead(now: now, withData: !isControl)
            if ahead != .none {
                acknowledgement = self.writer.acknowledgement(ahead, createdDate: createdDate)
            }
            return .write(
                bytes,
                headChanged: self.reliability.unacknowledgedCount == 1,
                acknowledgement: acknowledgement
            )
        } catch {
            return .overflow(
                reason:
                    "the peer acknowledged nothing while \(self.reliability.unacknowledgedCount) messages waited: \(error)"
            )
        }
    }

    /// A control message with a ready payload (see ``sendStreamMessage(payloadType:payloadLength:isControl:now:writePayload:)``).
    public mutating func sendControl(_ payloadType: PayloadType, _ payload: ByteBuffer, now: NIODeadline) -> SendResult
    {
        self.sendStreamMessage(
            payloadType: payloadType,
            payloadLength: payload.readableBytes,
            isControl: true,
            now: now
        ) {
            $0.writeImmutableBuffer(payload)
        }
    }

    func agentSessionState() -> ByteBuffer {
        SessionMessageWriter.agentSessionState(sessionID: self.sessionID, createdDate: self.wallClockMilliseconds())
    }

    mutating func acknowledge(
        _ acknowledgement: ReliableDeliveryStateMachine.Acknowledgement,
        into actions: inout [Action]
    ) {
        if let frame = self.writer.acknowledgement(acknowledgement, createdDate: self.wallClockMilliseconds()) {
            actions.append(.write(frame))
        }
    }

    /// A handshake message this end sends: sequenced like any stream message.
    mutating func sendHandshake(
        _ payloadType: PayloadType,
        _ payload: ByteBuffer,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        switch self.sendControl(payloadType, payload, now: now) {
        case .write(let bytes, _, let acknowledgement):
            // Handshake messages go before the cumulative mode is negotiated, so none rides today; one that
            // did would still be written rather than dropped.
            if let acknowledgement { actions.append(.write(acknowledgement)) }
            actions.append(.write(bytes))
        case .held, .dropped:
            break
        case .overflow(let reason):
            self.end(reason: reason, byPeer: false, into: &actions)
        }
    }
}
