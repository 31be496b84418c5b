import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// One end of a port-forwarding session, on the WebSocket channel's event loop: sequencing and acks
/// (``ReliableDeliveryStateMachine``), the handshake, and smux streams glued to TCP channels on the same
/// loop. The handler only carries out what the state machines decide.
public final class PortSession: ChannelInboundHandler {
    public typealias InboundIn = WebSocketMessage
    public typealias OutboundOut = WebSocketMessage

    public enum Role: Sendable {
        case agent(AgentHandshakeStateMachine.Configuration)
        case client(ClientHandshakeStateMachine.Configuration)
    }

    enum Handshake {
        case agent(AgentHandshakeStateMachine)
        case client(ClientHandshakeStateMachine)
    }

    public let sessionID: String
    var handshake: Handshake
    var reliability = ReliableDeliveryStateMachine()
    var negotiated: NegotiatedSession?
    /// The streams and their local connections' state: every decision about them is the table's.
    var table: StreamTable
    /// The sockets the table's connection ids name.
    var connections: [StreamTable.ConnectionID: any Channel] = [:]
    /// The action list `withStreams` reuses.
    var spareActions: [StreamTable.Action] = []
    var muxParser: NIOSingleStepByteToMessageProcessor<SmuxFrameDecoder>?
    var context: ChannelHandlerContext?
    /// The session's event loop, kept while no data channel is attached: its clock is the session's (an
    /// EmbeddedEventLoop's virtual time in tests). A resumed session stays on the same loop.
    var loop: (any EventLoop)?
    /// One timer at the earliest deadline the state machines return (acknowledgement interval, resend,
    /// handshake timeout); none while there is nothing to wait for.
    var timer: Scheduled<Void>?
    /// The deadline the timer is set for (nil: no timer; an idle session has none).
    var timerDeadline: NIODeadline?
    /// Which scheduled task is the current one: a cancelled task that was already due may still run, and
    /// must not take the place of the one set after it.
    var timerGeneration: UInt64 = 0
    /// How often the timer fired (tests: an idle session's never does).
    var timerFirings = 0
    var ended = false
    /// Whether a data channel was ever attached (the second attachment is a resume).
    var attachedOnce = false
    /// Encodes what this end sends, also while no data channel is attached (held for resend).
    var writer: SessionMessageWriter
    /// Held strongly until the session ends (the agent keeps no other reference), then released.
    public var delegate: (any PortSessionDelegate)?
    /// Set by an owner that can reconnect the data channel. When the channel drops while the session is
    /// open, this is called (on the event loop) instead of ending the session: streams stay open, what is
    /// sent meanwhile is held, and re-adding this handler to a new data channel on the same event loop
    /// resends every unacknowledged message. Without it, a drop ends the session.
    public var onDisconnect: ((PortSession) -> Void)?
    var logger: Logger

    public init(sessionID: String, role: Role, logger: Logger) {
        self.sessionID = sessionID
        switch role {
        case .agent(let configuration):
            self.handshake = .agent(AgentHandshakeStateMachine(configuration: configuration))
            self.writer = SessionMessageWriter(role: .agent)
            self.table = StreamTable(isAgent: true)
        case .client(let configuration):
            self.handshake = .client(ClientHandshakeStateMachine(configuration: configuration))
            self.writer = SessionMessageWriter(role: .client)
            self.table = StreamTable(isAgent: false)
        }
        var logger = logger
        logger[metadataKey: "jumpgate.session_id"] = "\(sessionID)"
        self.logger = logger
    }

    /// The session's local traffic so far. Read on the session's event loop.
    public var traffic: PortSessionTraffic {
        var traffic = PortSessionTraffic()
        traffic.openConnections = self.table.openConnections
        traffic.totalConnections = self.table.totalConnections
        traffic.bytesIn = self.table.bytesIn
        traffic.bytesOut = self.table.bytesOut
        return traffic
    }

    public var eventLoop: (any EventLoop)? { self.context?.eventLoop }
    public var negotiatedSession: NegotiatedSession? { self.negotiated }

    // MARK: channel lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop = context.eventLoop
        defer { self.armTimer() }
        if self.attachedOnce {
            if self.table.receiveBound.isPaused { Self.setReading(context.channel, false) }
            // A resumed data channel: everything the peer has not acknowledged goes again, oldest first
            // (the peer drops and re-acknowledges what it already has).
            let frames = self.reliability.connectionRestored(now: self.now)
            self.logger.info("data channel resumed", metadata: ["resent": "\(frames.count)"])
            if self.isAgent { self.sendAgentSessionState() }
            self.writeFrames(frames)
            self.resumeBlockedStreams()
            return
        }
        self.attachedOnce = true
        if case .agent(var machine) = self.handshake {
            let action = machine.start(now: self.now)
            self.handshake = .agent(machine)
            self.sendAgentSessionState()
            self.runAgent(action)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.dataChannelLost(context, reason: "the data channel closed")
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.dataChannelLost(context, reason: "the data channel closed")
        context.fireChannelInactive()
    }

    /// The data channel `context` belongs to is gone: resume through the owner if it can, else end.
    func dataChannelLost(_ context: ChannelHandlerContext, reason: String) {
        guard self.context === context else { return }  // an old channel going away after a resume
        self.reading = false
        for channel in self.unflushed { channel.flush() }
        self.unflushed.removeAll()
        self.cancelTimer()
        self.context = nil
        guard !self.ended else { return }
        if self.negotiated == nil, let refusal = self.refusal {
            // Refused before the session started (a spent or wrong token): resuming cannot help.
            self.end(reason: "The gateway refused the data channel: \(refusal).", byPeer: false)
            return
        }
        if let onDisconnect = self.onDisconnect {
            self.reliability.connectionLost()
            self.logger.info(
                "data channel lost; holding streams while it is resumed",
                metadata: ["unacknowledged": "\(self.reliability.unacknowledgedCount)"]
            )
            onDisconnect(self)
        } else {
            self.end(reason: reason, byPeer: true)
        }
    }

    /// Whether the session is over (ended by either side); an owner stops resuming then.
    public var isEnded: Bool { self.ended }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? WebSocketClosedEvent, closed.code != 1000 {
            self.logger.info(
                "data channel closed by WebSocket",
                metadata: ["code": "\(closed.code)", "reason": "\(closed.reason)"]
            )
            if closed.code == 1008 { self.refusal = closed.reason }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The gateway's reason when it refused this data channel (WebSocket close 1008, e.g. a spent token).
    var refusal: String?

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.onDisconnect == nil {
            self.end(reason: "data channel error: \(error)", byPeer: false)
        } else {
            self.logger.info("data channel error", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }

    // MARK: inbound messages

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .binary(let frame) = self.unwrapInboundIn(data) else { return }
        self.reading = true
        let message: SSMMessage
        do {
            message = try SSMMessage(decoding: frame)
            try message.validate(self.validationProfile)
        } catch {
            self.refused(.invalidMessage, "\(error)")
            return
        }
        switch message.messageType {
        case .outputStreamData, .inputStreamData:
            self.streamMessageReceived(message)
        case .acknowledge:
            self.acknowledgementReceived(message)
        case .channelClosed:
            let output = (try? ChannelClosedPayload(payload: message.payload))?.output ?? ""
            self.end(reason: output, byPeer: true)
        case .pausePublication:
            self.logger.info("the gateway paused publication: the other side is away and its buffer is full")
            self.reliability.publicationPaused()
        case .startPublication:
            let frames = self.reliability.publicationResumed(now: self.now)
            self.logger.info("the gateway resumed publication", metadata: ["resent": "\(frames.count)"])
            self.writeFrames(frames)
        case .jumpgateAgentStatus:
            guard !self.isAgent else { return self.refused(.unexpectedMessage, "\(message.messageType)") }
            guard let status = try? AgentStatusPayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.messageType)")
            }
            self.delegate?.agentStatusChanged(self, status: status)
        default:
            self.refused(.unexpectedMessage, "\(message.messageType)")
        }
    }

    /// A stream message whose payload type this end never takes (or not in this role or mode).
    func unexpected(_ message: SSMMessage) {
        self.refused(.unexpectedMessage, "\(message.payloadType)")
    }

    /// Something from the peer was refused: dropped (or, for a smux violation, the session ended), logged
    /// at debug here and counted by the owner, which logs a summary per session per minute (the agent).
    func refused(_ refusal: SessionRefusal, _ detail: String) {
        self.logger.debug("refused a message", metadata: ["refusal": "\(refusal.rawValue)", "detail": "\(detail)"])
        self.delegate?.messageRefused(self, refusal)
    }

    var validationProfile: SSMValidationProfile {
        if self.negotiated?.extensions.contains(.digestFree) == true { return .digestFree }
        if case .agent = self.handshake { return .agent }
        return .client
    }

    func streamMessageReceived(_ message: SSMMessage) {
        guard message.sequenceNumber >= 0 else {
            return self.refused(.invalidMessage, "sequence number \(message.sequenceNumber)")
        }
        self.logger.trace(
            "stream message",
            metadata: [
                "seq": "\(message.sequenceNumber)", "type": "\(message.payloadType)",
                "bytes": "\(message.payload.readableBytes)",
            ]
        )
        var ready =
            self.negotiated != nil || message.payloadType.isHandshake || message.payloadType == .handshakeResponse
        if message.payloadType == .output, self.table.withholdsBasicOutput {
            // Basic mode, no local connection yet: withhold the ack (the agent resends), as the plugin does.
            ready = false
        }
        switch self.reliability.streamMessageReceived(message, isReady: ready) {
        case .deliver(let ack):
            self.sendAcknowledgement(ack)
            self.process(message)
            while let (next, ack) = self.reliability.nextBufferedMessage() {
                self.sendAcknowledgement(ack)
                self.process(next)
            }
        case .buffered(let ack), .duplicate(let ack):
            self.sendAcknowledgement(ack)
        case .dropped:
            break
        }
        // Acknowledgements, window updates and target writes go out together at channelReadComplete.
    }

    func process(_ message: SSMMessage) {
        switch message.payloadType {
        case .handshakeRequest:
            guard case .client(var machine) = self.handshake else { return self.unexpected(message) }
            guard let request = try? HandshakeRequestPayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.payloadType)")
            }
            let action = machine.requestReceived(request)
            self.handshake = .client(machine)
            if case .sendHandshakeResponse(let response) = action {
                self.sendStreamMessage(payloadType: .handshakeResponse, payload: response.encoded())
            }
        case .handshakeResponse:
            guard case .agent(var machine) = self.handshake else { return self.unexpected(message) }
            guard let response = try? HandshakeResponsePayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.payloadType)")
            }
            let action = machine.responseReceived(response, now: self.now)
            self.handshake = .agent(machine)
            self.runAgent(action)
        case .handshakeComplete:
            guard case .client(var machine) = self.handshake else { return self.unexpected(message) }
            guard let complete = try? HandshakeCompletePayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.payloadType)")
            }
            let action = machine.completeReceived(complete)
            self.handshake = .client(machine)
            switch action {
            case .established(let negotiated, let customerMessage):
                self.establish(negotiated)
                self.delegate?.sessionEstablished(self, negotiated: negotiated, customerMessage: customerMessage)
            case .fail(let reason):
                self.end(reason: reason, byPeer: false)
            default:
                break
            }
        case .flag:
            guard let flag = try? FlagPayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.payloadType)")
            }
            switch flag {
            case .terminateSession:
                self.end(reason: "the client terminated the session", byPeer: true)
            case .connectToPortError:
                // The official agent sends this before the FIN of the failed stream; the FIN names it.
                self.table.connectToPortErrorReceived()
            case .disconnectToPort:
                // Basic mode: the client's connection ended; close the target's (dialled again on new data).
                self.withStreams { table, actions in table.peerDisconnected(into: &actions) }
            default:
                break
            }
        case .jumpgateConnectError:
            guard !self.isAgent, self.negotiated?.extensions.contains(.connectErrors) == true else {
                return self.unexpected(message)
            }
            guard let error = try? ConnectErrorPayload(payload: message.payload) else {
                return self.refused(.invalidPayload, "\(message.payloadType)")
            }
            _ = self.table.connectErrorReceived(error)
        case .output:
            if self.table.isBasic {
                self.withStreams { table, actions in table.basicDataReceived(message.payload, into: &actions) }
            } else {
                self.muxBytesReceived(message.payload)
            }
        default:
            self.unexpected(message)
        }
    }

    func runAgent(_ action: AgentHandshakeStateMachine.Action) {
        switch action {
        case .sendHandshakeRequest(let request):
            self.sendStreamMessage(payloadType: .handshakeRequest, payload: request.encoded())
        case .sendHandshakeComplete(let complete, let negotiated):
            self.sendStreamMessage(payloadType: .handshakeComplete, payload: complete.encoded())
            self.establish(negotiated)
            self.delegate?.sessionEstablished(self, negotiated: negotiated, customerMessage: "")
        case .fail(let reason):
            self.end(reason: reason, byPeer: false)
        case .none:
            break
        }
        self.context?.flush()
    }

    func establish(_ negotiated: NegotiatedSession) {
        self.negotiated = negotiated
        self.writer.digestFree = negotiated.extensions.contains(.digestFree)
        // Keep what was already sent (the handshake) and continue with the negotiated settings.
        var configuration = ReliableDeliveryConfiguration.negotiated(negotiated.extensions)
        if negotiated.mode == .basic {
            // A basic-mode client withholds acks until it has a local connection: keep resending.
            configuration.retransmitWhileConnected = true
        }
        self.reliability.reconfigure(configuration)
        if case .mux(let version, _) = negotiated.mode {
            self.muxParser = NIOSingleStepByteToMessageProcessor(SmuxFrameDecoder(version: version))
        }
        // Basic mode: the agent dials the destination right after the handshake (spec §7.5).
        self.withStreams { table, actions in table.establish(negotiated, into: &actions) }
    }

    var isAgent: Bool {
        if case .agent = self.handshake { return true }
        return false
    }

    func acknowledgementReceived(_ message: SSMMessage) {
        let result: ReliableDeliveryStateMachine.AcknowledgementResult
        if message.payloadType == .jumpgateCumulativeAck, let ack = try? CumulativeAckPayload(payload: message.payload)
        {
            guard ack.highestContiguousSequenceNumber < self.reliability.nextSequenceNumber else {
                return self.refused(.unexpectedMessage, "an acknowledgement of messages never sent")
            }
            result = self.reliability.cumulativeAcknowledgementReceived(
                upTo: ack.highestContiguousSequenceNumber,
                now: self.now
            )
        } else if let ack = try? AcknowledgeContent(payload: message.payload) {
            guard (0..<self.reliability.nextSequenceNumber).contains(ack.acknowledgedSequenceNumber) else {
                return self.refused(.unexpectedMessage, "an acknowledgement of a message never sent")
            }
            result = self.reliability.acknowledgementReceived(
                sequenceNumber: ack.acknowledgedSequenceNumber,
                now: self.now
            )
        } else {
            return self.refused(.invalidPayload, "\(message.messageType)")
        }
        if case .acknowledged(windowOpened: true) = result {
            self.resumeBlockedStreams()
        }
    }

    /// Whether a data-channel read is being processed, and the TCP connections written to meanwhile.
    var reading = false
    var unflushed: [any Channel] = []

    /// Whether a local connection's read burst is being handled (its messages are flushed at its end), and
    /// whether something waits for that flush.
    var inTCPReadBurst = false
    var flushAfterTCPReadBurst = false

    /// Client: local connections accepted while another one is being served.
    var basicWaiting: [any Channel] = []

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.reading = false
        let channels = self.unflushed
        self.unflushed.removeAll(keepingCapacity: true)
        for channel in channels { channel.flush() }
        context.flush()
        self.armTimer()
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Resends wait while the data channel is not writable (see armTimer).
        self.armTimer()
        context.fireChannelWritabilityChanged()
    }

    /// Ends the session from this side with `reason` (for example the agent shutting down): the delegate
    /// reports it and the data channel closes. Call on the session's event loop.
    public func shutdown(reason: String) {
        self.end(reason: reason, byPeer: false)
    }

    /// The gateway ended the session (channel_closed outside the data channel, or a refused reconnect):
    /// ends it as ended by the peer. Call on the session's event loop.
    public func closedByGateway(reason: String) {
        self.end(reason: reason, byPeer: true)
    }

    /// Client: Ctrl+C. Sends the TerminateSession flag, as the official plugin does.
    public func terminate() {
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.terminateSession.encoded())
        self.context?.flush()
    }

    // MARK: ending

    func end(reason: String, byPeer: Bool) {
        guard !self.ended else { return }
        self.ended = true
        self.onDisconnect = nil
        self.cancelTimer()
        // The session is over with these connections still open: what their remote end sent last may be
        // lost, so they are reset (RST), never ended with a FIN that would look like a complete answer.
        self.withStreams { table, actions in table.endAll(into: &actions) }
        for channel in self.basicWaiting { channel.close(promise: nil) }
        self.basicWaiting.removeAll()
        self.delegate?.sessionEnded(self, reason: reason, byPeer: byPeer)
        self.delegate = nil
        self.context?.close(promise: nil)
    }
}
