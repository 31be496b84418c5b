import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// What a hostile peer can send on an established data channel (the gateway relays it unread): random
/// bytes, broken headers, unknown and misdirected message types, sequence numbers far ahead, forged
/// acknowledgements and publication messages. Each side must drop what is invalid, hold no more than its
/// out-of-order bound, and go on carrying its streams both ways; a forged channel_closed ends the session
/// it arrived on (a client can end only its own session: the gateway relays it nowhere else).
@Suite("Port sessions under hostile input")
struct PortSessionHostileInputTests {
    /// A small seeded generator (xorshift64*), printed so a failure can be replayed.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state ^= self.state >> 12
            self.state ^= self.state << 25
            self.state ^= self.state >> 27
            return self.state &* 2_685_821_657_736_338_717
        }
    }

    /// Everything hostile, as frames for `side`'s session to receive.
    static func hostileFrames(towards side: BackToBack.Side, seed: UInt64) -> [ByteBuffer] {
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
        let streamType: MessageType = side == .agent ? .inputStreamData : .outputStreamData
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

    @Test(
        "garbage, broken headers, misdirected types, far sequence numbers and forged acks: dropped, bounded, streams go on"
    )
    func hostileFramesAreDropped() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("PortSessionHostileInputTests: seed \(seed)")
        for extensions in [JumpgateExtensions.all, []] {
            let pair = try BackToBack(clientExtensions: extensions, agentExtensions: extensions)
            try pair.settle()
            try PortSessionBackToBackTests.roundTrip(pair, bytes: 50_000)
            for side in [BackToBack.Side.agent, .client] {
                let channel = side == .agent ? pair.agentData : pair.clientData
                for frame in Self.hostileFrames(towards: side, seed: seed) {
                    try channel.writeInbound(WebSocketMessage.binary(frame))
                }
                let session = side == .agent ? pair.agent : pair.client
                let limit = session.reliability.configuration.incomingLimit
                #expect(session.reliability.outOfOrderByteCount <= limit.bytes)
                #expect(session.reliability.outOfOrderMessageCount <= limit.messages)
                #expect(session.reliability.outOfOrderByteCount > 0, "the far-ahead messages were not even held")
                // Whatever it answered is dropped here: the honest peer never sees the attacker's traffic.
                while try channel.readOutbound(as: WebSocketMessage.self) != nil {}
            }
            #expect(pair.clientEvents.ended == nil && pair.agentEvents.ended == nil, "\(extensions)")
            try PortSessionBackToBackTests.roundTrip(pair, bytes: 50_000)
        }
    }

    @Test("a forged channel_closed ends the session it arrived on, with the peer named as the cause")
    func forgedChannelClosed() throws {
        let pair = try BackToBack()
        try pair.settle()
        let closed = ChannelClosedPayload(
            createdDate: "2026-12-03T06:00:00.000Z",
            destinationID: "s-1",
            sessionID: "s-1",
            output: "forged"
        )
        let frame = SSMMessage(
            messageType: .channelClosed,
            createdDate: 1_700_000_000_000,
            payload: ByteBuffer(bytes: closed.json.serializedBytes())
        ).encoded()
        try pair.agentData.writeInbound(WebSocketMessage.binary(frame))
        #expect(pair.agentEvents.ended?.byPeer == true)
        #expect(
            pair.agentEvents.ended?.reason.contains("forged") == true,
            "\(String(describing: pair.agentEvents.ended))"
        )
    }
}
