import NIOCore

/// Encodes the messages one end of a session sends (spec §3): stream messages under the sequence
/// number the caller gives (``ReliableDeliveryStateMachine/nextSequenceNumber``), acknowledgements, and
/// the agent's session state. Pure: the wall clock's milliseconds (CreatedDate) are passed in, and message
/// ids come from this writer's own ``RandomBytePool``.
public struct SessionMessageWriter {
    public enum Role: Sendable {
        case agent
        case client
    }

    public let role: Role
    /// The negotiated `digest-free` extension: payload digests are left zero (TLS already protects every
    /// byte). Off until the handshake negotiates it; the handshake itself always carries digests.
    public var digestFree = false
    private var random: RandomBytePool
    private let allocator = ByteBufferAllocator()

    public init(role: Role, random: RandomBytePool = RandomBytePool()) {
        self.role = role
        self.random = random
    }

    /// The agent sends `output_stream_data`, the client `input_stream_data`.
    public var streamMessageType: MessageType { self.role == .agent ? .outputStreamData : .inputStreamData }

    /// A stream message whose `payloadLength` bytes `writePayload` writes straight into the frame (one copy
    /// from the source). The agent's message 0 carries the SYN flag, as the official agent's does.
    public mutating func streamMessage(
        sequenceNumber: Int64,
        createdDate: UInt64,
        payloadType: PayloadType,
        payloadLength: Int,
        writePayload: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var frame = self.allocator.buffer(capacity: SSMMessage.headerSize + payloadLength)
        frame.writeSSMMessage(
            messageType: self.streamMessageType,
            createdDate: createdDate,
            sequenceNumber: sequenceNumber,
            flags: self.role == .agent && sequenceNumber == 0 ? SSMMessageFlags.syn : 0,
            messageID: .random(using: &self.random),
            payloadType: payloadType,
            payloadLength: payloadLength,
            digestFree: self.digestFree,
            writePayload: writePayload
        )
        return frame
    }

    /// The `acknowledge` message for what reliable delivery decided, or nil when it decided none.
    public mutating func acknowledgement(
        _ acknowledgement: ReliableDeliveryStateMachine.Acknowledgement,
        createdDate: UInt64
    ) -> ByteBuffer? {
        var payload = ByteBuffer()
        let payloadType: PayloadType
        switch acknowledgement {
        case .none:
            return nil
        case .acknowledge(let type, let id, let sequenceNumber):
            payload.writeAcknowledgeJSON(messageType: type, messageID: id, sequenceNumber: sequenceNumber)
            payloadType = .none
        case .cumulative(let upTo):
            payload = CumulativeAckPayload(highestContiguousSequenceNumber: upTo).encoded()
            payloadType = .jumpgateCumulativeAck
        }
        let message = SSMMessage(
            messageType: .acknowledge,
            createdDate: createdDate,
            flags: SSMMessageFlags.acknowledge,
            messageID: .random(using: &self.random),
            payloadDigest: self.digestFree ? .zero : nil,
            payloadType: payloadType,
            payload: payload
        )
        var frame = self.allocator.buffer(capacity: message.encodedSize)
        frame.writeSSMMessage(message)
        return frame
    }

    /// The agent's `agent_session_state` ("Connected"), sent when its data channel opens or resumes.
    public static func agentSessionState(sessionID: String, createdDate: UInt64) -> ByteBuffer {
        let payload = AgentSessionStatePayload(sessionState: "Connected", sessionID: sessionID).encoded()
        return SSMMessage(
            messageType: .agentSessionState,
            createdDate: createdDate,
            flags: SSMMessageFlags.acknowledge,
            payload: payload
        ).encoded()
    }
}
