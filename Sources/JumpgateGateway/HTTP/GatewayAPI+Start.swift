import JumpgateNIO
import JumpgateWire
import NIOCore

/// What StartSession sends on: the session's start, pushed to its agent's control channel, and the stream
/// URL its client connects to.
extension GatewayAPI {
    func streamURL(_ sessionID: String) -> String {
        "\(self.state.streamBase)/v1/data-channel/\(sessionID)?role=publish_subscribe"
    }

    /// Sends `interactive_shell` with the resolved document to the target's control channel: its session type
    /// and its properties with the session's values in place of their placeholders.
    func pushStart(
        _ session: SessionRecord,
        sessionType: String,
        properties: JSONValue,
        description: String,
        inputs: JSONValue = [:]
    ) throws(APIError) {
        guard let channel = self.state.controlChannel(instanceID: session.target) else {
            self.state.setStatus(sessionID: session.id, .failed, reason: "the target disconnected")
            throw APIError(400, "TargetNotConnected", "\(session.target) is not connected.")
        }
        let content: JSONValue = [
            "schemaVersion": "1.0", "description": .string(description), "sessionType": .string(sessionType),
            "inputs": inputs, "properties": properties,
        ]
        let task = AgentTaskPayload(
            documentName: session.documentName,
            sessionID: session.id,
            documentContent: content,
            parameters: session.parameters,
            sessionOwner: session.owner
        )
        let payload = MGSPayload(content: task.json.serialized(), taskID: session.id, topic: "aws.ssm.StartSession")
        let message = SSMMessage(
            messageType: .interactiveShell,
            createdDate: SessionRelay.nowMilliseconds(),
            payload: payload.encoded()
        )
        let frame = message.encoded()
        channel.writeAndFlush(WebSocketMessage.binary(frame), promise: nil)
    }
}
