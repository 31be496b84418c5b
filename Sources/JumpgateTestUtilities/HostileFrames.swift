import JumpgateWire
import NIOCore

/// What a hostile peer can send on an established data channel, as SSM frames: random bytes, broken
/// headers, unknown and misdirected message types, sequence numbers far ahead, forged acknowledgements
/// and publication messages. Seeded: the same seed gives the same frames.
public enum HostileFrames {
    /// A small seeded generator (xorshift64*), printed so a failure can be replayed.
    public struct Generator {
        public var state: UInt64
        public init(state: UInt64) { self.state = state }
        public mutating func next() -> UInt64 {
            self.state ^= self.state >> 12
            self.state ^= self.state << 25
            self.state ^= self.state >> 27
            return self.state &* 2_685_821_657_736_338_717
        }
    }

    /// Everything hostile, as frames for the agent's session (`towardsAgent`) or the client's to receive.
    public static func make(towardsAgent: Bool, seed: UInt64) -> [ByteBuffer] {
        var rng = Generator(state: seed | 1)
        var frames: [ByteBuffer] = []
        // Random bytes, of every short length and some longer.
        for length in 0..<200 {
            frames.append(
                ByteBuffer(
                    bytes: (0..<(length + Int(rng.next() % 300))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                )
            )
        }
        let streamType: MessageType = towardsAgent ? .inputStreamData : .outputStreamData
        func message(
            _ type: MessageType,
            sequence: Int64 = 0,
            flags: UInt64 = 0,
            payloadType: PayloadType = .output,
            _ payload: ByteBuffer = ByteBuffer(string: "x")
        ) -> ByteBuffer {
            SSMMessage(
                messageType: type,
                createdDate: 1_700_000_000_000,
                sequenceNumber: sequence,
                flags: flags,
                payloadType: payloadType,
                payload: payload
            ).encoded()
        }
        // A valid header with the wrong HeaderLength, a truncated one, a lying PayloadLength.
        var wrongLength = message(streamType)
        wrongLength.setInteger(UInt32(999), at: wrongLength.readerIndex)
        frames.append(wrongLength)
        frames.append(message(streamType).getSlice(at: 0, length: 60)!)
        var lying = message(streamType)
        lying.setInteger(UInt32(1 << 30), at: lying.readerIndex + 116)
        frames.append(lying)
        // A bad digest (dropped by peers that check it), CreatedDate 0, an unknown type.
        var badDigest = message(streamType, sequence: 1_000)
        badDigest.setInteger(UInt64(0xdead), at: badDigest.readerIndex + 80)
        frames.append(badDigest)
        frames.append(SSMMessage(messageType: streamType, createdDate: 0, payload: ByteBuffer(string: "x")).encoded())
        frames.append(message(MessageType("not_a_type")!))
        // Sequence numbers far ahead, up to the largest, with large payloads: the out-of-order bound holds.
        let big = ByteBuffer(repeating: 0x41, count: 60_000)
        for i in 0..<700 { frames.append(message(streamType, sequence: 5_000 + Int64(i), big)) }
        frames.append(message(streamType, sequence: Int64.max, big))
        frames.append(message(streamType, sequence: -1))
        // Types that have no business on this channel, and forged acknowledgements and publication.
        for type in [
            MessageType.agentTaskComplete, .agentJob, .interactiveShell, .agentSessionState, .jumpgateAgentStatus,
        ] {
            frames.append(message(type))
        }
        let forgedAck = AcknowledgeContent(
            acknowledgedMessageType: .outputStreamData,
            acknowledgedMessageID: .random(),
            acknowledgedSequenceNumber: 123_456
        )
        frames.append(message(.acknowledge, payloadType: .none, ByteBuffer(bytes: forgedAck.json.serializedBytes())))
        frames.append(message(.acknowledge, payloadType: .none, ByteBuffer(string: "{not json")))
        frames.append(message(.pausePublication, payloadType: .none, ByteBuffer()))
        frames.append(message(.startPublication, payloadType: .none, ByteBuffer()))
        // A flag with an unknown value and a truncated one, a handshake payload after the handshake.
        var unknownFlag = ByteBuffer()
        unknownFlag.writeInteger(UInt32(0x7777))
        frames.append(message(streamType, sequence: 6_000, payloadType: .flag, unknownFlag))
        frames.append(message(streamType, sequence: 6_001, payloadType: .flag, ByteBuffer(bytes: [1])))
        frames.append(message(streamType, sequence: 6_002, payloadType: .handshakeComplete, ByteBuffer(string: "{}")))
        return frames
    }
}
