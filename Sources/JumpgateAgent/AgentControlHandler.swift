import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The agent's end of the control channel.
final class AgentControlHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketMessage
    let runner: AgentRunner

    init(runner: AgentRunner) {
        self.runner = runner
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .binary(let frame) = self.unwrapInboundIn(data), let message = try? SSMMessage(decoding: frame),
            (try? message.validate(.agent)) != nil
        else { return }
        switch message.messageType {
        case .interactiveShell:
            guard let envelope = try? MGSPayload(payload: message.payload),
                let task = try? AgentTaskPayload(json: JSONValue(parsing: envelope.content))
            else {
                self.runner.logger.warning("ignored an interactive_shell that does not parse")
                return
            }
            self.runner.startSession(task)
        case .channelClosed:
            // The session is over (TerminateSession, a limit): usually its data channel hears it too, but
            // not while that channel is down and reconnecting.
            if let closed = try? ChannelClosedPayload(payload: message.payload) {
                self.runner.sessionClosedByGateway(closed.sessionID, reason: closed.output)
            }
        case .agentTaskAcknowledge:
            if let ack = try? AgentTaskAcknowledgePayload(payload: message.payload) {
                self.runner.completionAcknowledged(taskID: ack.taskID)
            }
        default:
            break
        }
    }
}
