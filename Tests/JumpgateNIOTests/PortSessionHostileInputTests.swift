import JumpgateTestUtilities
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
            #expect(pair.agentEvents.refused.isEmpty && pair.clientEvents.refused.isEmpty, "honest traffic refused")
            for side in [BackToBack.Side.agent, .client] {
                let channel = side == .agent ? pair.agentData : pair.clientData
                for frame in HostileFrames.make(towardsAgent: side == .agent, seed: seed) {
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
            // Every refusal reached the owner (the agent counts and summarises them): the garbage and broken
            // headers, and the types that have no business on the channel. The far-ahead messages are held,
            // not refused: they wait for a gap that never fills, within the out-of-order bound.
            for events in [pair.agentEvents, pair.clientEvents] {
                #expect((events.refused[.invalidMessage] ?? 0) >= 200, "\(events.refused)")
                #expect((events.refused[.unexpectedMessage] ?? 0) >= 5, "\(events.refused)")
                // The ack that is not JSON; the client also refuses the agent status whose payload is "x".
                let payloads = events === pair.agentEvents ? 1 : 2
                #expect(events.refused[.invalidPayload] == payloads, "\(events.refused)")
            }
            try PortSessionBackToBackTests.roundTrip(pair, bytes: 50_000)
        }
    }

    @Test("each kind of refusal reaches the owner once, under its type")
    func refusalsAreReported() throws {
        let pair = try BackToBack()
        try pair.settle()
        let agent = pair.agent
        func next(_ payloadType: PayloadType, _ payload: ByteBuffer) -> ByteBuffer {
            SSMMessage(
                messageType: .inputStreamData,
                createdDate: 1_700_000_000_000,
                sequenceNumber: agent.reliability.expectedSequenceNumber,
                payloadType: payloadType,
                payload: payload
            ).encoded()
        }
        func send(_ frame: ByteBuffer) throws { try pair.agentData.writeInbound(WebSocketMessage.binary(frame)) }
        try send(ByteBuffer(bytes: [1, 2, 3]))
        #expect(pair.agentEvents.refused == [.invalidMessage: 1])
        try send(SSMMessage(messageType: .agentJob, createdDate: 1, payload: ByteBuffer(string: "x")).encoded())
        #expect(pair.agentEvents.refused == [.invalidMessage: 1, .unexpectedMessage: 1])
        try send(
            SSMMessage(messageType: .acknowledge, createdDate: 1, payloadType: .none, payload: ByteBuffer(string: "{"))
                .encoded()
        )
        #expect(pair.agentEvents.refused == [.invalidMessage: 1, .unexpectedMessage: 1, .invalidPayload: 1])
        // In sequence: a handshake request (the agent sends those, never takes one), then a broken flag.
        try send(next(.handshakeRequest, ByteBuffer(string: "{}")))
        try send(next(.flag, ByteBuffer(bytes: [1])))
        #expect(pair.agentEvents.refused == [.invalidMessage: 1, .unexpectedMessage: 2, .invalidPayload: 2])
        // An acknowledgement of a message the agent never sent, and a negative sequence number.
        let forgedAck = AcknowledgeContent(
            acknowledgedMessageType: .outputStreamData,
            acknowledgedMessageID: .random(),
            acknowledgedSequenceNumber: agent.reliability.nextSequenceNumber + 1_000
        )
        try send(
            SSMMessage(
                messageType: .acknowledge,
                createdDate: 1,
                payloadType: .none,
                payload: ByteBuffer(bytes: forgedAck.json.serializedBytes())
            ).encoded()
        )
        try send(
            SSMMessage(
                messageType: .inputStreamData,
                createdDate: 1,
                sequenceNumber: -7,
                payload: ByteBuffer(string: "x")
            )
            .encoded()
        )
        #expect(pair.agentEvents.refused == [.invalidMessage: 2, .unexpectedMessage: 3, .invalidPayload: 2])
        #expect(pair.agentEvents.ended == nil)
        // Bytes that break smux: refused, and the session ends (a stream table cannot be trusted after it).
        try send(next(.output, ByteBuffer(bytes: [9, 9, 9, 9, 9, 9, 9, 9])))
        #expect(pair.agentEvents.refused[.smuxProtocolError] == 1, "\(pair.agentEvents.refused)")
        #expect(pair.agentEvents.ended?.reason.contains("smux protocol error") == true)
        #expect(pair.clientEvents.refused.isEmpty)
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
