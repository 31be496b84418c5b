import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// What a port session tells its owner (the agent or the client program).
public protocol PortSessionDelegate: AnyObject {
    /// The handshake finished: the client starts listening, the agent starts accepting streams.
    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String)
    /// Agent: a stream was opened; connect it (call ``PortSession/attach(_:to:)`` or ``PortSession/refuse(_:reason:)``).
    func streamRequested(_ session: PortSession, id: SmuxStreamID)
    /// Client: the agent could not connect a stream to the destination; `reason` is the agent's, when it
    /// sends one (the `connect-errors` extension; official agents say nothing).
    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?)
    /// The session is over (terminated, channel closed, protocol error); `reason` says why.
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool)
    /// Client, basic mode: a waiting local connection is now the one being served.
    func basicConnectionActivated(_ session: PortSession, channel: any Channel)
    /// Client: the gateway says the agent went away (its connections may be lost) or came back.
    func agentStatusChanged(_ session: PortSession, status: AgentStatusPayload)
}

extension PortSessionDelegate {
    public func basicConnectionActivated(_ session: PortSession, channel: any Channel) {}
    public func agentStatusChanged(_ session: PortSession, status: AgentStatusPayload) {}
}

/// What went through a port session's local connections (client: the laptop's; agent: the targets').
public struct PortSessionTraffic: Sendable, Equatable {
    /// Connections open now, and accepted (or dialled) since the session started.
    public var openConnections = 0
    public var totalConnections = 0
    /// Bytes read from local connections (sent into the tunnel), and written to them (out of the tunnel).
    public var bytesIn: Int64 = 0
    public var bytesOut: Int64 = 0
    public init() {}
}

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

    private enum Handshake {
        case agent(AgentHandshakeStateMachine)
        case client(ClientHandshakeStateMachine)
    }

    public let sessionID: String
    private var handshake: Handshake
    private var reliability = ReliableDeliveryStateMachine()
    private var negotiated: NegotiatedSession?
    private var mux: SmuxSession?
    private var muxParser: NIOSingleStepByteToMessageProcessor<SmuxFrameDecoder>?
    private var streams: [SmuxStreamID: StreamState] = [:]
    private var context: ChannelHandlerContext?
    private var timer: RepeatedTask?
    private var ended = false
    /// Whether a data channel was ever attached (the second attachment is a resume).
    private var attachedOnce = false
    /// Frames are encoded with this even while no data channel is attached (they are held for resend).
    private let allocator = ByteBufferAllocator()
    /// Message ids for every message this end sends (a system call per id would be one per 32 KiB).
    private var random = RandomBytePool()
    /// Held strongly until the session ends (the agent keeps no other reference), then released.
    public var delegate: (any PortSessionDelegate)?
    /// Set by an owner that can reconnect the data channel. When the channel drops while the session is
    /// open, this is called (on the event loop) instead of ending the session: streams stay open, what is
    /// sent meanwhile is held, and re-adding this handler to a new data channel on the same event loop
    /// resends every unacknowledged message. Without it, a drop ends the session.
    public var onDisconnect: ((PortSession) -> Void)?
    var logger: Logger

    final class StreamState {
        var channel: (any Channel)?
        /// Bytes read from TCP that could not be sent yet (window or buffer full).
        var backlog = ByteQueue()
        var readPaused = false
        var localEOF = false
        /// The TCP connection is gone; its backlog may still be draining into the smux window.
        var tcpClosed = false
        /// Data (and a FIN) that arrived before the target connection was up; bounded by the smux window.
        var earlyData: [ByteBuffer] = []
        var earlyBytes = 0
        var earlyFIN = false
        /// smux v2: bytes written to the connection while it was not writable, not yet given back to the
        /// peer's window.
        var unconsumed = 0
        /// Data arrived from the peer on this stream (a refused stream never gets any).
        var receivedData = false
        init() {}
    }

    public init(sessionID: String, role: Role, logger: Logger) {
        self.sessionID = sessionID
        switch role {
        case .agent(let configuration):
            self.handshake = .agent(AgentHandshakeStateMachine(configuration: configuration))
        case .client(let configuration):
            self.handshake = .client(ClientHandshakeStateMachine(configuration: configuration))
        }
        var logger = logger
        logger[metadataKey: "jumpgate.session_id"] = "\(sessionID)"
        self.logger = logger
    }

    private var bytesIn: Int64 = 0
    private var bytesOut: Int64 = 0
    private var totalConnections = 0

    /// The session's local traffic so far. Read on the session's event loop.
    public var traffic: PortSessionTraffic {
        var traffic = PortSessionTraffic()
        traffic.openConnections = self.streams.values.filter { $0.channel != nil }.count
        traffic.totalConnections = self.totalConnections
        traffic.bytesIn = self.bytesIn
        traffic.bytesOut = self.bytesOut
        return traffic
    }

    public var eventLoop: (any EventLoop)? { self.context?.eventLoop }
    public var negotiatedSession: NegotiatedSession? { self.negotiated }

    // MARK: channel lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) {
            _ in
            bound.value.timerFired()
        }
        if self.attachedOnce {
            if self.receiveBound.isPaused { Self.setReading(context.channel, false) }
            // A resumed data channel: everything the peer has not acknowledged goes again, oldest first
            // (the peer drops and re-acknowledges what it already has).
            let frames = self.reliability.connectionRestored(now: .now())
            self.logger.info("data channel resumed", metadata: ["resent": "\(frames.count)"])
            if self.isAgent { self.sendAgentSessionState() }
            self.writeFrames(frames)
            self.resumeBlockedStreams()
            return
        }
        self.attachedOnce = true
        if case .agent(var machine) = self.handshake {
            let action = machine.start(now: .now())
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
    private func dataChannelLost(_ context: ChannelHandlerContext, reason: String) {
        guard self.context === context else { return }  // an old channel going away after a resume
        self.reading = false
        for channel in self.unflushed { channel.flush() }
        self.unflushed.removeAll()
        self.timer?.cancel()
        self.timer = nil
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
    private var refusal: String?

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
            self.logger.debug("dropped an invalid message", metadata: ["error": "\(error)"])
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
            self.reliability.publicationPaused()
        case .startPublication:
            self.writeFrames(self.reliability.publicationResumed(now: .now()))
        case .jumpgateAgentStatus:
            guard !self.isAgent, let status = try? AgentStatusPayload(payload: message.payload) else { return }
            self.delegate?.agentStatusChanged(self, status: status)
        default:
            break
        }
    }

    private var validationProfile: SSMValidationProfile {
        if self.negotiated?.extensions.contains(.digestFree) == true { return .digestFree }
        if case .agent = self.handshake { return .agent }
        return .client
    }

    private func streamMessageReceived(_ message: SSMMessage) {
        self.logger.trace(
            "stream message",
            metadata: [
                "seq": "\(message.sequenceNumber)", "type": "\(message.payloadType)",
                "bytes": "\(message.payload.readableBytes)",
            ]
        )
        var ready =
            self.negotiated != nil || message.payloadType.isHandshake || message.payloadType == .handshakeResponse
        if self.isBasic, !self.isAgent, message.payloadType == .output, self.streams[Self.basicStreamID] == nil {
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

    private func process(_ message: SSMMessage) {
        switch message.payloadType {
        case .handshakeRequest:
            guard case .client(var machine) = self.handshake,
                let request = try? HandshakeRequestPayload(payload: message.payload)
            else { return }
            let action = machine.requestReceived(request)
            self.handshake = .client(machine)
            if case .sendHandshakeResponse(let response) = action {
                self.sendStreamMessage(payloadType: .handshakeResponse, payload: response.encoded())
            }
        case .handshakeResponse:
            guard case .agent(var machine) = self.handshake,
                let response = try? HandshakeResponsePayload(payload: message.payload)
            else { return }
            let action = machine.responseReceived(response, now: .now())
            self.handshake = .agent(machine)
            self.runAgent(action)
        case .handshakeComplete:
            guard case .client(var machine) = self.handshake,
                let complete = try? HandshakeCompletePayload(payload: message.payload)
            else { return }
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
            guard let flag = try? FlagPayload(payload: message.payload) else { return }
            switch flag {
            case .terminateSession:
                self.end(reason: "the client terminated the session", byPeer: true)
            case .connectToPortError:
                // The official agent sends this before the FIN of the failed stream; the FIN names it.
                self.pendingConnectError = true
            case .disconnectToPort:
                // Basic mode: the client's connection ended; close the target's (re-dialled on new data).
                if self.isAgent, self.isBasic, let stream = self.streams[Self.basicStreamID] {
                    self.streams[Self.basicStreamID] = nil
                    self.forgetEarlyData(of: stream)
                    if let channel = stream.channel {
                        stream.channel = nil
                        Self.close(channel, mode: .all)
                    }
                }
            default:
                break
            }
        case .jumpgateConnectError:
            guard self.negotiated?.extensions.contains(.connectErrors) == true,
                let error = try? ConnectErrorPayload(payload: message.payload),
                self.connectErrorReasons.count < 1024
            else { return }
            self.connectErrorReasons[SmuxStreamID(error.streamID)] = error.reason
        case .output:
            if self.isBasic {
                self.basicBytesReceived(message.payload)
            } else {
                self.muxBytesReceived(message.payload)
            }
        default:
            break
        }
    }

    private var pendingConnectError = false
    /// Why the agent could not connect a stream (`connect-errors`), until the stream's FIN arrives.
    private var connectErrorReasons: [SmuxStreamID: String] = [:]

    private func runAgent(_ action: AgentHandshakeStateMachine.Action) {
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

    private func establish(_ negotiated: NegotiatedSession) {
        self.negotiated = negotiated
        // Keep what was already sent (the handshake) and continue with the negotiated settings.
        var configuration = ReliableDeliveryConfiguration.negotiated(negotiated.extensions)
        if negotiated.mode == .basic {
            // A basic-mode client withholds acks until it has a local connection: keep resending.
            configuration.retransmitWhileConnected = true
        }
        self.reliability.reconfigure(configuration)
        if negotiated.mode == .basic, self.isAgent {
            // Basic mode: the agent dials the destination right after the handshake (spec §7.5).
            self.streams[Self.basicStreamID] = StreamState()
            self.delegate?.streamRequested(self, id: Self.basicStreamID)
        }
        if case .mux(let version, _) = negotiated.mode {
            // smux v2 bounds each stream with its window; v1 and basic mode need the session-wide bound.
            self.receiveBound.isEnabled = version < 2
            let role: SmuxSession.Role = (self.isAgent ? .server : .client)
            self.mux = SmuxSession(configuration: .init(version: version, role: role))
            self.muxParser = NIOSingleStepByteToMessageProcessor(SmuxFrameDecoder(version: version))
        }
    }

    private var isAgent: Bool {
        if case .agent = self.handshake { return true }
        return false
    }

    private func acknowledgementReceived(_ message: SSMMessage) {
        let result: ReliableDeliveryStateMachine.AcknowledgementResult
        if message.payloadType == .jumpgateCumulativeAck, let ack = try? CumulativeAckPayload(payload: message.payload)
        {
            result = self.reliability.cumulativeAcknowledgementReceived(
                upTo: ack.highestContiguousSequenceNumber,
                now: .now()
            )
        } else if let ack = try? AcknowledgeContent(payload: message.payload) {
            result = self.reliability.acknowledgementReceived(
                sequenceNumber: ack.acknowledgedSequenceNumber,
                now: .now()
            )
        } else {
            return
        }
        if case .acknowledged(windowOpened: true) = result {
            self.resumeBlockedStreams()
        }
    }

    // MARK: smux

    private func muxBytesReceived(_ bytes: ByteBuffer) {
        guard let parser = self.muxParser else { return }
        do {
            try parser.process(buffer: bytes) { frame in
                try self.muxFrameReceived(frame)
            }
        } catch {
            self.end(reason: "smux protocol error: \(error)", byPeer: false)
        }
    }

    private func muxFrameReceived(_ frame: SmuxFrame) throws {
        guard var mux = self.mux else { return }
        let event = try mux.frameReceived(frame)
        self.mux = mux
        self.logger.trace(
            "smux frame",
            metadata: [
                "command": "\(frame.command)", "jumpgate.stream_id": "\(frame.streamID)",
                "bytes": "\(frame.data.readableBytes)",
            ]
        )
        switch event {
        case .none:
            break
        case .streamOpened(let id, let update):
            if let update { self.sendMuxFrame(update) }
            self.streams[id] = StreamState()
            self.delegate?.streamRequested(self, id: id)
        case .refuse(let fin):
            self.sendMuxFrame(fin)
        case .data(let id, let data):
            self.streams[id]?.receivedData = true
            guard let stream = self.streams[id], !stream.tcpClosed else {
                // The local connection is gone: its data is dropped but counted as consumed, so the peer's
                // window stays open until its FIN comes. Otherwise a peer still sending (a target echoing a
                // killed transfer) stalls for ever and its connection never closes.
                self.consumed(id, data.readableBytes)
                return
            }
            guard let channel = stream.channel else {
                self.holdEarly(data, in: stream)
                return
            }
            self.writeToTCP(id, channel: channel, data)
        case .remoteClosed(let id, let fullyClosed):
            // ConnectToPortError names no stream: it belongs to the next FIN of a stream that never got a
            // byte from the agent (or the one the connect-errors extension named), not to any FIN.
            let refused =
                self.pendingConnectError
                && (self.connectErrorReasons[id] != nil || !(self.streams[id]?.receivedData ?? false))
            if refused {
                self.pendingConnectError = false
                self.delegate?.streamFailed(self, id: id, reason: self.connectErrorReasons.removeValue(forKey: id))
            }
            guard let stream = self.streams[id] else { return }
            if stream.channel == nil {
                stream.earlyFIN = true
                return
            }
            let halfClose = self.negotiated?.extensions.contains(.halfClose) == true
            // A refused stream never had a far end: its connection closes, as ssh -L closes one whose
            // channel could not be opened.
            if halfClose, !fullyClosed, !refused, let channel = stream.channel {
                Self.close(channel, mode: .output)
            } else {
                self.closeStream(id)
            }
        case .writable(let id):
            self.pumpStream(id)
        }
    }

    /// Writes stream data to its TCP connection. Inside a data-channel read the flush waits for
    /// channelReadComplete, so a read burst becomes one socket write per connection.
    private func writeToTCP(_ id: SmuxStreamID, channel: any Channel, _ data: ByteBuffer) {
        let count = data.readableBytes
        self.bytesOut += Int64(count)
        if self.receiveBound.isEnabled {
            // smux v1 and basic mode: nothing but this bound limits what waits for a local socket, so each
            // write is counted until it completes.
            self.receiveBound.queued(count)
            let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            channel.write(data).whenComplete { result in
                bound.value.written(id, count, counted: true, success: (try? result.get()) != nil)
            }
            self.applyReceiveBound()
        } else {
            // smux v2: the stream's window bounds what the peer sends. Bytes a writable socket took count as
            // consumed at once (no promise per write); while the socket is not writable they are held back
            // from the window until it is (tcpWritable), so the peer stops at the window: the GlueHandler
            // pattern, with the window as the partner's read.
            channel.write(data, promise: nil)
            if channel.isWritable, self.streams[id]?.unconsumed ?? 0 == 0 {
                self.consumed(id, count)
            } else {
                self.streams[id]?.unconsumed += count
            }
        }
        if self.reading {
            if !self.unflushed.contains(where: { $0 === channel }) { self.unflushed.append(channel) }
        } else {
            channel.flush()
        }
    }

    /// A local connection became writable again: what it took meanwhile counts as consumed now.
    func tcpWritable(_ id: SmuxStreamID, channel: any Channel) {
        guard let stream = self.stream(id, of: channel), channel.isWritable, stream.unconsumed > 0 else { return }
        let count = stream.unconsumed
        stream.unconsumed = 0
        self.consumed(id, count)
    }

    /// What waits to be written to local connections; past its limit the data channel is not read.
    private var receiveBound = ReceiveBound()

    /// Whether a data-channel read is being processed, and the TCP connections written to meanwhile.
    private var reading = false
    private var unflushed: [any Channel] = []

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.reading = false
        let channels = self.unflushed
        self.unflushed.removeAll(keepingCapacity: true)
        for channel in channels { channel.flush() }
        context.flush()
        context.fireChannelReadComplete()
    }

    /// A write to a local connection completed (or failed with its connection): the bytes leave the
    /// receive bound, and on success they count as consumed for the smux window.
    private func written(_ id: SmuxStreamID, _ count: Int, counted: Bool, success: Bool) {
        if counted {
            self.receiveBound.written(count)
            self.applyReceiveBound()
        }
        if success { self.consumed(id, count) }
    }

    private func consumed(_ id: SmuxStreamID, _ count: Int) {
        guard var mux = self.mux else { return }
        let update = mux.dataConsumed(on: id, count: count)
        self.mux = mux
        if let update {
            self.sendMuxFrame(update)
            // Inside a data-channel read the update goes out with the burst's acks (channelReadComplete).
            if !self.reading { self.context?.flush() }
        }
    }

    // MARK: streams (TCP side)

    /// Client: open a stream for an accepted local connection. In basic mode one connection is served at a
    /// time; later ones wait (unread) until it ends, as with the official plugin.
    public func openStream(for channel: any Channel) throws -> SmuxStreamID {
        if self.isBasic {
            if self.streams[Self.basicStreamID] == nil {
                try self.activateBasicConnection(channel)
            } else {
                self.basicWaiting.append(channel)
            }
            return Self.basicStreamID
        }
        guard var mux = self.mux else { throw WireError(.smuxProtocolViolation, "the session is not in mux mode") }
        guard self.reliability.canSendControl else {
            // The agent has acknowledged nothing for thousands of messages: refuse this connection only.
            throw WireError(.bufferFull, "the session's send buffer is full")
        }
        let (id, frames) = try mux.openStream()
        self.mux = mux
        let stream = StreamState()
        stream.channel = channel
        self.streams[id] = stream
        self.totalConnections += 1
        for frame in frames { self.sendMuxFrame(frame) }
        self.context?.flush()
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: id))
        return id
    }

    /// Agent: the target connection for stream `id` is up.
    public func attach(_ channel: any Channel, to id: SmuxStreamID) throws {
        guard let stream = self.streams[id] else {
            channel.close(promise: nil)
            return
        }
        stream.channel = channel
        self.totalConnections += 1
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: id))
        let early = stream.earlyData
        self.forgetEarlyData(of: stream)
        for data in early { self.writeToTCP(id, channel: channel, data) }
        if stream.earlyFIN {
            let halfClose = self.negotiated?.extensions.contains(.halfClose) == true
            if halfClose { Self.close(channel, mode: .output) } else { self.closeStream(id) }
        }
    }

    /// Agent: the target could not be reached: tell the client (ConnectToPortError, then FIN).
    /// The owner logs why, as the event it is (an allow-list refusal is a security warning).
    public func refuse(_ id: SmuxStreamID, reason: String) {
        self.logger.debug(
            "stream refused",
            metadata: ["jumpgate.stream_id": "\(id)", "reason": "\(reason)"]
        )
        if self.isBasic {
            // No per-connection error exists in basic mode (and no Flag may be sent): the session fails.
            self.end(reason: "Unable to connect to specified port: \(reason)", byPeer: false)
            return
        }
        if self.negotiated?.extensions.contains(.connectErrors) == true {
            let error = ConnectErrorPayload(streamID: id.rawValue, reason: reason)
            self.sendStreamMessage(payloadType: .jumpgateConnectError, payload: error.encoded())
        }
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.connectToPortError.encoded())
        if var mux = self.mux, let fin = mux.abortStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
        }
        if let stream = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: stream) }
        self.context?.flush()
    }

    /// The stream `id` if `channel` is still its connection (in basic mode one id serves one connection
    /// after another, and a finished connection's last events must not touch the next one).
    private func stream(_ id: SmuxStreamID, of channel: any Channel) -> StreamState? {
        guard let stream = self.streams[id], stream.channel === channel else { return nil }
        return stream
    }

    func tcpRead(_ id: SmuxStreamID, channel: any Channel, _ data: ByteBuffer) {
        self.logger.trace(
            "tcp read",
            metadata: [
                "jumpgate.stream_id": "\(id)", "bytes": "\(data.readableBytes)", "known": "\(self.streams[id] != nil)",
            ]
        )
        guard let stream = self.stream(id, of: channel) else { return }
        self.bytesIn += Int64(data.readableBytes)
        stream.backlog.append(data)
        // A read burst (several reads of one socket) goes out as one flush, at tcpReadComplete.
        self.inTCPReadBurst = true
        self.pumpStream(id)
    }

    /// Whether a local connection's read burst is being handled (its messages are flushed at its end), and
    /// whether something waits for that flush.
    private var inTCPReadBurst = false
    private var flushAfterTCPReadBurst = false

    func tcpReadComplete() {
        self.inTCPReadBurst = false
        if self.flushAfterTCPReadBurst {
            self.flushAfterTCPReadBurst = false
            self.context?.flush()
        }
    }

    /// Flushes the data channel now, or at the end of the local read burst being handled.
    private func flushDataChannel() {
        if self.inTCPReadBurst {
            self.flushAfterTCPReadBurst = true
        } else {
            self.context?.flush()
        }
    }

    func tcpEOF(_ id: SmuxStreamID, channel: any Channel) {
        self.tcpReadComplete()
        guard let stream = self.stream(id, of: channel) else { return }
        stream.localEOF = true
        self.pumpStream(id)
    }

    func tcpClosed(_ id: SmuxStreamID, channel: any Channel) {
        self.tcpReadComplete()
        guard let stream = self.stream(id, of: channel) else { return }
        stream.localEOF = true
        stream.channel = nil
        stream.tcpClosed = true
        if stream.unconsumed > 0 {
            // The connection is gone: what it took but never confirmed goes back to the peer's window, as
            // data arriving for a closed connection does, or a peer with a spent window would wait forever.
            let count = stream.unconsumed
            stream.unconsumed = 0
            self.consumed(id, count)
        }
        self.pumpStream(id)
        guard self.streams[id] != nil else { return }  // pumpStream sent the FIN and dropped it
        guard stream.backlog.isEmpty else {
            // The socket is gone but its last bytes wait for the smux window: they go as it opens, then
            // the FIN (pumpStream), and only then is the stream dropped.
            self.context?.flush()
            return
        }
        if var mux = self.mux, let fin = mux.abortStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
        }
        if self.streams[id] === stream { self.streams[id] = nil }
        self.context?.flush()
    }

    /// Moves a stream's backlog into SSM messages as far as the smux window and the outgoing buffer allow;
    /// stops reading the TCP connection when they do not.
    private func pumpStream(_ id: SmuxStreamID) {
        if self.isBasic {
            self.pumpBasic()
            return
        }
        guard let stream = self.streams[id], let negotiated = self.negotiated else { return }
        let maximumData = min(SmuxFrame.maximumDataSize, negotiated.maximumPayloadSize - SmuxFrame.headerSize)
        var sentSomething = false
        while !stream.backlog.isEmpty, self.reliability.canSend, var mux = self.mux {
            // As much as the window and the payload size allow: a 64 KiB fast-path payload carries two
            // PSH frames (smux caps one at 32 KiB), so per-message costs are paid half as often.
            let sendable = min(mux.sendableBytes(on: id), stream.backlog.readableBytes)
            let first = min(sendable, maximumData)
            guard first > 0 else { break }
            let room = negotiated.maximumPayloadSize - SmuxFrame.headerSize - first - SmuxFrame.headerSize
            let second = max(0, min(sendable - first, maximumData, room))
            do {
                try mux.dataWillBeSent(on: id, count: first + second)
            } catch {
                break
            }
            self.mux = mux
            let version = mux.configuration.version
            let length = SmuxFrame.headerSize + first + (second > 0 ? SmuxFrame.headerSize + second : 0)
            // One copy: the socket's bytes go straight into the frame behind the SSM and smux headers.
            self.sendStreamMessage(payloadType: .output, payloadLength: length, isControl: false) { frame in
                frame.writeSmuxHeader(version: version, command: .psh, length: UInt16(first), streamID: id)
                stream.backlog.move(first, into: &frame)
                guard second > 0 else { return }
                frame.writeSmuxHeader(version: version, command: .psh, length: UInt16(second), streamID: id)
                stream.backlog.move(second, into: &frame)
            }
            sentSomething = true
        }
        if stream.backlog.isEmpty {
            if stream.localEOF, var mux = self.mux, let fin = mux.closeStream(id) {
                self.mux = mux
                self.sendMuxFrame(fin)
                sentSomething = true
                // Nothing more can be delivered to a closed socket: the stream is done here. If the peer
                // still sends, the mux keeps the stream until its FIN, so what arrives is discarded but
                // counted as consumed (its window stays open and its end can finish and close).
                if self.mux?.isOpen(id) == true, stream.tcpClosed {
                    if let dropped = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: dropped) }
                } else if stream.tcpClosed || !(self.mux?.isOpen(id) ?? false) {
                    self.dropStream(id)
                }
            }
        }
        let blocked = !stream.backlog.isEmpty
        if blocked != stream.readPaused {
            stream.readPaused = blocked
            if !blocked { stream.channel?.read() }
        }
        if sentSomething { self.flushDataChannel() }
    }

    private func resumeBlockedStreams() {
        for (id, stream) in self.streams where stream.readPaused || !stream.backlog.isEmpty {
            self.pumpStream(id)
        }
    }

    func isReadPaused(_ id: SmuxStreamID) -> Bool { self.streams[id]?.readPaused ?? false }

    private func closeStream(_ id: SmuxStreamID) {
        guard let stream = self.streams[id] else { return }
        if var mux = self.mux, let fin = mux.closeStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
            self.context?.flush()
        }
        if let channel = stream.channel {
            stream.channel = nil  // its close may report back at once; the stream is done either way
            Self.close(channel, mode: .all)
        }
        self.dropStream(id)
    }

    // MARK: basic mode (one connection at a time, raw bytes in Output payloads; spec §7.5)

    static let basicStreamID = SmuxStreamID(0)
    /// Client: local connections accepted while another one is being served.
    private var basicWaiting: [any Channel] = []

    private var isBasic: Bool { self.negotiated?.mode == .basic }

    private func activateBasicConnection(_ channel: any Channel) throws {
        let stream = StreamState()
        stream.channel = channel
        self.streams[Self.basicStreamID] = stream
        self.totalConnections += 1
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: Self.basicStreamID))
        self.delegate?.basicConnectionActivated(self, channel: channel)
    }

    private func basicBytesReceived(_ data: ByteBuffer) {
        if let stream = self.streams[Self.basicStreamID], !stream.tcpClosed {
            if let channel = stream.channel {
                self.bytesOut += Int64(data.readableBytes)
                let count = data.readableBytes
                self.receiveBound.queued(count)
                let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
                channel.writeAndFlush(data).whenComplete { _ in
                    bound.value.receiveBound.written(count)
                    bound.value.applyReceiveBound()
                }
                self.applyReceiveBound()
            } else {
                self.holdEarly(data, in: stream)  // the agent's dial is still in progress
            }
            return
        }
        guard self.isAgent else { return }  // the client withheld the ack for this; it comes again
        // Agent: the target connection ended earlier; new data re-dials it.
        let stream = StreamState()
        self.holdEarly(data, in: stream)
        self.streams[Self.basicStreamID] = stream
        self.delegate?.streamRequested(self, id: Self.basicStreamID)
    }

    /// Sends the connection's bytes as Output payloads as far as the outgoing buffer allows.
    private func pumpBasic() {
        guard let stream = self.streams[Self.basicStreamID], let negotiated = self.negotiated else { return }
        var sentSomething = false
        while !stream.backlog.isEmpty, self.reliability.canSend {
            let n = min(negotiated.maximumPayloadSize, stream.backlog.readableBytes)
            self.sendStreamMessage(payloadType: .output, payloadLength: n, isControl: false) {
                stream.backlog.move(n, into: &$0)
            }
            sentSomething = true
        }
        if stream.backlog.isEmpty {
            if stream.localEOF {
                self.basicConnectionFinished(stream)
                sentSomething = true
            }
        }
        let blocked = !stream.backlog.isEmpty
        if blocked != stream.readPaused {
            stream.readPaused = blocked
            if !blocked { stream.channel?.read() }
        }
        if sentSomething { self.flushDataChannel() }
    }

    /// The connection's last bytes are sent. Client: DisconnectToPort, then the next waiting connection.
    /// Agent: close the target connection and wait (new data from the client re-dials).
    private func basicConnectionFinished(_ stream: StreamState) {
        // Detach first: closing can deliver the channel's last events right away (re-entrantly).
        guard self.streams[Self.basicStreamID] === stream else { return }
        self.streams[Self.basicStreamID] = nil
        self.forgetEarlyData(of: stream)
        if let channel = stream.channel {
            stream.channel = nil
            Self.close(channel, mode: .all)
        }
        guard !self.isAgent else { return }
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.disconnectToPort.encoded())
        while !self.basicWaiting.isEmpty {
            let next = self.basicWaiting.removeFirst()
            guard next.isActive else { continue }
            do {
                try self.activateBasicConnection(next)
                return
            } catch {
                next.close(promise: nil)
            }
        }
    }

    /// Closes a stream's TCP channel once everything already written to it is on the socket: NIO fails
    /// pending writes on a full close (and a close of the output escalates to one when the input is
    /// already closed), which would cut off the end of the data the peer sent before its FIN.
    static func close(_ channel: any Channel, mode: CloseMode) {
        channel.writeAndFlush(ByteBuffer()).whenComplete { _ in
            channel.close(mode: mode, promise: nil)
        }
    }

    /// Closes a connection with RST (SO_LINGER 0).
    static func reset(_ channel: any Channel) {
        guard let provider = channel as? any SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    private func dropStream(_ id: SmuxStreamID) {
        if var mux = self.mux {
            _ = mux.abortStream(id)
            self.mux = mux
        }
        if let stream = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: stream) }
    }

    // MARK: receive bound (smux v1 and basic mode: nothing else bounds what waits for a local socket)

    /// Data for a stream whose connection is still being dialled: held, and counted in the bound.
    private func holdEarly(_ data: ByteBuffer, in stream: StreamState) {
        stream.earlyData.append(data)
        stream.earlyBytes += data.readableBytes
        self.receiveBound.queued(data.readableBytes)
        self.applyReceiveBound()
    }

    private func forgetEarlyData(of stream: StreamState) {
        guard stream.earlyBytes > 0 else { return }
        self.receiveBound.written(stream.earlyBytes)
        stream.earlyData = []
        stream.earlyBytes = 0
        self.applyReceiveBound()
    }

    /// Stops or restarts reading the data channel as the bound decides. Stopping leaves the peer's
    /// messages unacknowledged in TCP and the gateway, so its own send window fills and it stops reading
    /// its sources: backpressure end to end, as the official plugin's smux v1 session buffer does.
    private func applyReceiveBound() {
        guard let change = self.receiveBound.evaluate() else { return }
        guard let channel = self.context?.channel else { return }  // applied when a channel attaches
        self.logger.debug(
            change == .pause ? "local connections are slow; pausing the data channel" : "resuming the data channel",
            metadata: ["queued": "\(self.receiveBound.queuedBytes)"]
        )
        Self.setReading(channel, change == .resume)
    }

    private static func setReading(_ channel: any Channel, _ reading: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: reading).whenSuccess {
            if reading { channel.read() }
        }
    }

    // MARK: outbound messages

    private func sendMuxFrame(_ frame: SmuxFrame) {
        var payload = ByteBuffer()
        payload.writeSmuxFrame(frame)
        self.sendStreamMessage(payloadType: .output, payload: payload)
    }

    private var outgoingType: MessageType { self.isAgent ? .outputStreamData : .inputStreamData }

    /// Sends a control message (handshake, flags, smux SYN/FIN/UPD, connect errors): it may use the
    /// reserve above the data bound, so a full send window pauses the sources but never ends the session.
    private func sendStreamMessage(payloadType: PayloadType, payload: ByteBuffer) {
        self.sendStreamMessage(payloadType: payloadType, payloadLength: payload.readableBytes, isControl: true) {
            $0.writeImmutableBuffer(payload)
        }
    }

    /// Sends the next stream message; `writePayload` writes its `payloadLength` bytes straight into the frame.
    /// Data (`isControl` false) is only sent after checking ``ReliableDeliveryStateMachine/canSend``.
    private func sendStreamMessage(
        payloadType: PayloadType,
        payloadLength: Int,
        isControl: Bool,
        writePayload: (inout ByteBuffer) -> Void
    ) {
        guard !self.ended else { return }
        let sequenceNumber = self.reliability.nextSequenceNumber
        var frame = self.allocator.buffer(capacity: SSMMessage.headerSize + payloadLength)
        frame.writeSSMMessage(
            messageType: self.outgoingType,
            createdDate: Self.nowMilliseconds(),
            sequenceNumber: sequenceNumber,
            flags: self.isAgent && sequenceNumber == 0 ? SSMMessageFlags.syn : 0,
            messageID: .random(using: &self.random),
            payloadType: payloadType,
            payloadLength: payloadLength,
            digestFree: self.negotiated?.extensions.contains(.digestFree) == true,
            writePayload: writePayload
        )
        do {
            if case .write(let bytes) = try self.reliability.send(frame, now: .now(), isControl: isControl) {
                self.context?.write(self.wrapOutboundOut(.binary(bytes)), promise: nil)
            }
        } catch {
            // Data is sent only when canSend; the control reserve is exhausted only by a peer that opened
            // thousands of streams and acknowledged nothing.
            self.end(
                reason:
                    "the peer acknowledged nothing while \(self.reliability.unacknowledgedCount) messages waited: \(error)",
                byPeer: false
            )
        }
    }

    private func sendAcknowledgement(_ ack: ReliableDeliveryStateMachine.Acknowledgement) {
        guard let context = self.context else { return }
        var payload = ByteBuffer()
        let payloadType: PayloadType
        switch ack {
        case .none:
            return
        case .acknowledge(let type, let id, let sequenceNumber):
            payload.writeAcknowledgeJSON(messageType: type, messageID: id, sequenceNumber: sequenceNumber)
            payloadType = .none
        case .cumulative(let upTo):
            payload = CumulativeAckPayload(highestContiguousSequenceNumber: upTo).encoded()
            payloadType = .jumpgateCumulativeAck
        }
        let digestFree = self.negotiated?.extensions.contains(.digestFree) == true
        let message = SSMMessage(
            messageType: .acknowledge,
            createdDate: Self.nowMilliseconds(),
            flags: SSMMessageFlags.acknowledge,
            messageID: .random(using: &self.random),
            payloadDigest: digestFree ? .zero : nil,
            payloadType: payloadType,
            payload: payload
        )
        var frame = context.channel.allocator.buffer(capacity: message.encodedSize)
        frame.writeSSMMessage(message)
        context.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
    }

    private func sendAgentSessionState() {
        guard let context = self.context else { return }
        let payload = AgentSessionStatePayload(sessionState: "Connected", sessionID: self.sessionID).encoded()
        let message = SSMMessage(
            messageType: .agentSessionState,
            createdDate: Self.nowMilliseconds(),
            flags: SSMMessageFlags.acknowledge,
            payload: payload
        )
        let frame = message.encoded()
        context.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
    }

    private func writeFrames(_ frames: [ByteBuffer]) {
        guard let context = self.context, !frames.isEmpty else { return }
        for frame in frames { context.write(self.wrapOutboundOut(.binary(frame)), promise: nil) }
        context.flush()
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

    // MARK: timers

    private func timerFired() {
        let now = NIODeadline.now()
        if case .agent(var machine) = self.handshake, self.negotiated == nil {
            let action = machine.timerFired(now: now)
            self.handshake = .agent(machine)
            self.runAgent(action)
        }
        let ack = self.reliability.acknowledgementTimerFired(now: now)
        self.sendAcknowledgement(ack)
        // A resend into a socket that is not writable would only queue behind what is not yet sent: the
        // peer is not reading, which is backpressure, not loss, and must not count toward giving up.
        // Likewise while this end does not read its data channel (the receive bound): acknowledgements
        // wait unread in the socket, so the lack of one says nothing about loss.
        let writable = (self.context?.channel.isWritable ?? true) && !self.receiveBound.isPaused
        switch writable ? self.reliability.retransmitTimerFired(now: now) : .none {
        case .resend(let frame, _):
            self.context?.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
        case .giveUp(let sequenceNumber):
            self.end(reason: "message \(sequenceNumber) was never acknowledged; giving up", byPeer: false)
        case .assumedDelivered(let count, let windowOpened):
            self.logger.info(
                "resent messages treated as delivered: the peer had them and does not acknowledge duplicates",
                metadata: ["count": "\(count)"]
            )
            if windowOpened { self.resumeBlockedStreams() }
        case .none:
            break
        }
        self.context?.flush()
    }

    // MARK: ending

    private func end(reason: String, byPeer: Bool) {
        guard !self.ended else { return }
        self.ended = true
        self.onDisconnect = nil
        self.timer?.cancel()
        // The session is over with these connections still open: what their remote end sent last may be
        // lost, so they are reset (RST), never ended with a FIN that would look like a complete answer.
        for (_, stream) in self.streams {
            guard let channel = stream.channel else { continue }
            Self.reset(channel)
        }
        self.streams.removeAll()
        for channel in self.basicWaiting { channel.close(promise: nil) }
        self.basicWaiting.removeAll()
        self.delegate?.sessionEnded(self, reason: reason, byPeer: byPeer)
        self.delegate = nil
        self.context?.close(promise: nil)
    }

    static func nowMilliseconds() -> UInt64 {
        WallClock.nowMilliseconds()
    }
}
