import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore

/// The gateway's end of one data channel (client or agent). It waits for the opening text frame (a
/// deadline and a size cap), checks the token, attaches the channel to the session's relay and then
/// relays binary frames verbatim, with backpressure: while the partner cannot take more, it stops reading.
final class DataChannelHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketMessage
    typealias OutboundOut = WebSocketMessage

    private let sessionID: String
    /// The instance that signed the upgrade (an agent), or nil for a client.
    private let agentInstanceID: String?
    private let state: GatewayState
    private var relay: SessionRelay?
    private var side: SessionRelay.Side { self.agentInstanceID == nil ? .client : .agent }
    private var deadline: Scheduled<Void>?
    private var logger: Logger
    static let openFrameLimit = 16 * 1024

    init(sessionID: String, agentInstanceID: String?, state: GatewayState, logger: Logger) {
        self.sessionID = sessionID
        self.agentInstanceID = agentInstanceID
        self.state = state
        var logger = logger
        logger[metadataKey: "jumpgate.session_id"] = "\(sessionID)"
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let (state, sessionID) = (self.state, self.sessionID)
        self.deadline = context.eventLoop.scheduleTask(in: .seconds(10)) {
            state.refused(source: channel.sourceAddress, type: "OpeningFrameTimeout", keyID: sessionID)
            channel.triggerUserOutboundEvent(
                WebSocketCloseRequest(code: 1008, reason: "no OpenDataChannelInput within 10 s"),
                promise: nil
            )
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        self.state.countViolation(event, on: context.channel, keyID: self.sessionID)
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .text(let text):
            guard self.relay == nil else { return }
            self.open(context: context, text: text)
        case .binary(let frame):
            guard self.relay != nil else {
                self.refuse(context: context, "a binary frame arrived before OpenDataChannelInput")
                return
            }
            if self.side == .agent, SSMMessage.peekMessageType(frame) == .agentSessionState {
                self.state.setStatus(sessionID: self.sessionID, .connected)
                return
            }
            self.burst.append(frame)  // relayed as one burst at channelReadComplete
        }
    }

    /// Frames of the read burst in progress: relayed together (one lock, one write burst, at most one
    /// event-loop hop) when it ends. The two lists take turns, so neither is allocated again per burst.
    private var burst: [ByteBuffer] = []
    private var spareBurst: [ByteBuffer] = []
    /// Bulk bursts hold a few frames; a read of up to 128 KiB of tiny frames holds thousands.
    static let keptBurstCapacity = 64

    func channelReadComplete(context: ChannelHandlerContext) {
        if let relay = self.relay, !self.burst.isEmpty {
            // Swapped out first: a frame read re-entrantly while the burst is relayed joins the next one.
            var frames = self.spareBurst
            self.spareBurst = []
            swap(&frames, &self.burst)
            let reading = relay.forward(frames, from: self.side)
            // A list grown by a burst of many tiny frames is not kept for the connection's life.
            frames.removeAll(keepingCapacity: frames.capacity <= Self.keptBurstCapacity)
            self.spareBurst = frames
            if !reading {
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.relay?.resume(self.side.other) }
        context.fireChannelWritabilityChanged()
    }

    private func open(context: ChannelHandlerContext, text: ByteBuffer) {
        self.deadline?.cancel()
        guard text.readableBytes <= Self.openFrameLimit, let input = try? OpenDataChannelInput(payload: text) else {
            self.refuse(context: context, "the opening frame is not a valid OpenDataChannelInput")
            return
        }
        let accepted: Bool
        if let instanceID = self.agentInstanceID {
            accepted =
                input.clientInstanceID == instanceID
                && self.state.consumeAgentToken(
                    sessionID: self.sessionID,
                    instanceID: instanceID,
                    token: input.tokenValue
                )
        } else {
            accepted = self.state.consumeClientToken(sessionID: self.sessionID, token: input.tokenValue)
        }
        guard accepted, let relay = self.state.relay(sessionID: self.sessionID) else {
            // The token itself is never logged. Its own client hears why its session already ended.
            if self.agentInstanceID == nil,
                let reason = self.state.endReason(sessionID: self.sessionID, clientToken: input.tokenValue),
                !reason.isEmpty
            {
                self.refuse(context: context, SessionEndedNotice.refusal(reason: reason))
                return
            }
            self.refuse(context: context, "invalid or expired token for this session")
            return
        }
        self.relay = relay
        let woken = relay.attach(
            self.side,
            channel: context.channel,
            wantsAgentStatus: input.wants(OpenDataChannelInput.agentStatusFeature)
        )
        // A side on the WebSocket path: the session will not pair, and a side waiting to is told so. After
        // the attach, so that a re-offer asked for in between sees this side here and is declined.
        self.state.withdrawBlindPath(sessionID: self.sessionID)
        self.logger.info(
            "data channel attached",
            metadata: ["jumpgate.side": "\(self.side)", "resend_asked_of": "\(woken.map { "\($0)" })"]
        )
    }

    private func refuse(context: ChannelHandlerContext, _ reason: String) {
        // Summarised per source per minute with the other refusals, not logged one by one.
        self.logger.debug("data channel refused", metadata: ["reason": "\(reason)"])
        self.state.refused(
            source: context.channel.sourceAddress,
            type: "DataChannelRefused",
            keyID: self.sessionID
        )
        context.channel.triggerUserOutboundEvent(WebSocketCloseRequest(code: 1008, reason: reason), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        if let relay = self.relay {
            relay.detach(self.side, channel: context.channel)
            if self.side == .client, let session = self.state.session(id: self.sessionID), session.status == .connected
            {
                self.state.setStatus(sessionID: self.sessionID, .disconnected)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("data channel error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
