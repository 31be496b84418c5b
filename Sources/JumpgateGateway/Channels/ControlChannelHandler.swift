import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore

/// The gateway's end of an agent's control channel: the opening frame's token makes it the instance's
/// live channel; `agent_task_complete` ends the session it names and is acknowledged.
final class ControlChannelHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketMessage
    typealias OutboundOut = WebSocketMessage

    private let instanceID: String
    private let state: GatewayState
    private var opened = false
    private var deadline: Scheduled<Void>?
    private let logger: Logger

    init(instanceID: String, state: GatewayState, logger: Logger) {
        self.instanceID = instanceID
        self.state = state
        var logger = logger
        logger[metadataKey: "jumpgate.instance_id"] = "\(instanceID)"
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let (state, instanceID) = (self.state, self.instanceID)
        self.deadline = context.eventLoop.scheduleTask(in: .seconds(10)) {
            state.refused(source: channel.sourceAddress, type: "OpeningFrameTimeout", keyID: instanceID)
            channel.triggerUserOutboundEvent(
                WebSocketCloseRequest(code: 1008, reason: "no opening frame within 10 s"),
                promise: nil
            )
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        self.state.countViolation(event, on: context.channel, keyID: self.instanceID)
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.state.controlChannelActivity(instanceID: self.instanceID)
        switch self.unwrapInboundIn(data) {
        case .text(let text):
            guard !self.opened else { return }
            self.deadline?.cancel()
            guard text.readableBytes <= 16 * 1024, let json = try? JSONValue(parsing: text.readableBytesView),
                let token = json["TokenValue"]?.stringValue,
                let stale = self.state.attachControlChannel(
                    instanceID: self.instanceID,
                    token: token,
                    channel: context.channel,
                    agentVersion: json["AgentVersion"]?.stringValue ?? "",
                    platformName: json["PlatformName"]?.stringValue ?? "",
                    ipAddress: json["IPAddress"]?.stringValue ?? "",
                    runID: json["JumpgateRunId"]?.stringValue.flatMap { $0.isEmpty || $0.count > 64 ? nil : $0 }
                )
            else {
                // Summarised per source per minute with the other refusals, not logged one by one.
                self.logger.debug("control channel refused: invalid opening frame or token")
                self.state.refused(
                    source: context.channel.sourceAddress,
                    type: "ControlChannelRefused",
                    keyID: self.instanceID
                )
                context.channel.triggerUserOutboundEvent(
                    WebSocketCloseRequest(code: 1008, reason: "invalid or expired token"),
                    promise: nil
                )
                return
            }
            self.opened = true
            self.state.setBlindCertificate(
                instanceID: self.instanceID,
                sha256: json["JumpgateBlindCertificateSHA256"]?.stringValue
            )
            self.logger.info("agent online")
            // A new agent process: the sessions of the old one cannot continue (their connections died).
            let reason = AgentLoss.restartReason(instanceID: self.instanceID)
            for session in stale {
                self.logger.info(
                    "session ended: the agent restarted",
                    metadata: ["jumpgate.session_id": "\(session.id)"]
                )
                GatewayAPI.terminate(session, state: self.state, reason: reason, status: .failed)
            }
        case .binary(let frame):
            guard self.opened, let message = try? SSMMessage(decoding: frame) else { return }
            if message.messageType == .agentTaskComplete,
                let complete = try? AgentTaskCompletePayload(payload: message.payload)
            {
                self.taskCompleted(complete, messageID: message.messageID, context: context)
            }
        }
    }

    private func taskCompleted(
        _ complete: AgentTaskCompletePayload,
        messageID: MessageID,
        context: ChannelHandlerContext
    ) {
        let ack = AgentTaskAcknowledgePayload(messageID: messageID, taskID: complete.taskID)
        let message = SSMMessage(
            messageType: .agentTaskAcknowledge,
            createdDate: SessionRelay.nowMilliseconds(),
            payload: ack.encoded()
        )
        let frame = message.encoded()
        context.writeAndFlush(self.wrapOutboundOut(.binary(frame)), promise: nil)
        guard let session = self.state.session(id: complete.taskID), session.target == self.instanceID else { return }
        let outcome = AgentTaskOutcome(finalTaskStatus: complete.finalTaskStatus, output: complete.output)
        self.state.setStatus(
            sessionID: session.id,
            outcome.status,
            reason: outcome.reason,
            clientHearsReason: outcome.clientHearsReason
        )
        self.state.relay(sessionID: session.id)?.terminate(reason: outcome.closeReason)
        self.logger.info(
            "session ended",
            metadata: [
                "jumpgate.session_id": "\(session.id)", "status": "\(complete.finalTaskStatus)",
                "reason": "\(session.status.isEnded ? session.closeReason : outcome.reason)",
            ]
        )
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        if self.opened {
            self.state.controlChannelClosed(instanceID: self.instanceID, channel: context.channel)
            self.logger.info("agent offline")
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
