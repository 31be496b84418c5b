import JumpgateNIO
import JumpgateTestUtilities
import JumpgateWire
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// Stands in for NIOSSL on the way out: it holds writes until a flush and then encrypts them, which here
/// is copying them into one buffer of records, so no buffer written to it outlives the flush.
private final class TLSAtFlush: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var held: [ByteBuffer] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.held.append(self.unwrapOutboundIn(data))
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {
        var records = context.channel.allocator.buffer(capacity: self.held.reduce(0) { $0 + $1.readableBytes })
        for buffer in self.held { records.writeImmutableBuffer(buffer) }
        self.held.removeAll()
        context.writeAndFlush(self.wrapOutboundOut(records), promise: nil)
    }
}

/// Between the WebSocket handler and the data-channel handler: counts the payloads that are slices of
/// the read under test (borrowed) and those that are not (copied), and passes everything on.
private final class BorrowWitness: ChannelInboundHandler {
    typealias InboundIn = WebSocketMessage
    typealias InboundOut = WebSocketMessage
    var read: Range<UInt> = 0..<0
    var borrowed = 0
    var copied = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .binary(let payload) = self.unwrapInboundIn(data), !self.read.isEmpty {
            let start = payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
            if self.read.contains(start) { self.borrowed += 1 } else { self.copied += 1 }
        }
        context.fireChannelRead(data)
    }
}

/// The gateway's data channels take payloads out of TLS's read buffer without copying them
/// (`WebSocketHandler.Configuration.borrowsUnmaskedPayloads`). NIOSSL writes its next read into that same
/// buffer, so a slice of it still alive then would make it copy the whole buffer, more work than the copy
/// saved. These tests run the real handlers (WebSocket, data channel, relay) over EmbeddedChannels and
/// check, by writing to the buffer afterwards, that nothing of it is kept once the read has ended.
@Suite("Gateway data channels: payloads borrowed from TLS's buffer, never kept")
struct GatewayBorrowedPayloadTests {
    static let instance = "mi-0123456789abcdef0"

    /// A data channel as the gateway builds it after the upgrade (`GatewayWebSocketHandlers.dataChannel`),
    /// behind TLS's stand-in, with the witness between its WebSocket and data-channel handlers.
    static func dataChannel(_ state: GatewayState, sessionID: String, agent: Bool) throws -> EmbeddedChannel {
        let handlers = GatewayWebSocketHandlers.dataChannel(
            sessionID: sessionID,
            agentInstanceID: agent ? Self.instance : nil,
            state: state,
            logger: Logger(label: "test")
        )
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([TLSAtFlush(), handlers[0], BorrowWitness(), handlers[1]])
        return channel
    }

    /// The opening text frame, masked as a client masks it.
    static func opening(token: String, agent: Bool) -> ByteBuffer {
        let input = OpenDataChannelInput(
            tokenValue: token,
            clientInstanceID: agent ? Self.instance : nil,
            clientID: agent ? "" : "test-client"
        )
        var wire = ByteBuffer()
        wire.writeWebSocketFrame(opcode: .text, payload: input.encoded(), maskingKey: .random())
        return wire
    }

    /// What TLS hands up in one read: `count` data messages of `size` payload bytes in frames with the
    /// zero key (a Jumpgate peer's large frames), one small masked message between them, and the first
    /// 1,000 bytes of one more data message (sequence number `count`, masked with a random key), which the
    /// read leaves incomplete; the rest of that frame goes to `rest`. Returns the sequence numbers of the
    /// messages whole in the read (-1 for the acknowledgement), in order.
    static func tlsRead(count: Int, size: Int, into read: inout ByteBuffer, rest: inout ByteBuffer) -> [Int64] {
        read = ByteBufferAllocator().buffer(capacity: (count + 2) * (size + 200))
        var sequences: [Int64] = []
        for sequence in 0...Int64(count) {
            let message = SSMMessage(
                messageType: .inputStreamData,
                createdDate: 1,
                sequenceNumber: sequence,
                payloadType: .output,
                payload: ByteBuffer(repeating: UInt8(sequence), count: size)
            ).encoded()
            guard sequence < count else {
                var tail = ByteBuffer()
                tail.writeWebSocketFrame(opcode: .binary, payload: message, maskingKey: .random())
                read.writeImmutableBuffer(tail.readSlice(length: 1000)!)
                rest = tail
                break
            }
            read.writeWebSocketFrame(opcode: .binary, payload: message, maskingKey: .zero)
            sequences.append(sequence)
            if sequence == 0 {
                let small = SSMMessage(messageType: .acknowledge, createdDate: 1, flags: 0, payload: ByteBuffer())
                read.writeWebSocketFrame(opcode: .binary, payload: small.encoded(), maskingKey: .random())
                sequences.append(-1)
            }
        }
        return sequences
    }

    /// The messages in what `channel` wrote (server frames, as records from the TLS stand-in): each one's
    /// sequence number, or -1 for an acknowledgement.
    static func relayed(_ channel: EmbeddedChannel) throws -> [Int64] {
        var reader = WebSocketFrameReader(role: .client, maximumFrameSize: 1 << 20)
        var sequences: [Int64] = []
        while let records = try channel.readOutbound(as: ByteBuffer.self) {
            try reader.read(records) { frame in
                guard let message = try? SSMMessage(decoding: frame.payload) else { return }
                switch message.messageType {
                case .inputStreamData:
                    #expect(message.payload == ByteBuffer(repeating: UInt8(message.sequenceNumber), count: 20_000))
                    sequences.append(message.sequenceNumber)
                case .acknowledge: sequences.append(-1)
                default: break
                }
            }
        }
        return sequences
    }

    /// A session whose agent's control channel is `control`, with the client's and the agent's tokens.
    static func session(control: EmbeddedChannel) throws -> (GatewayState, String, client: String, agent: String) {
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, token) = try GatewayStateTests.portSession(state, target: target)
        let agentToken = try state.issueAgentToken(sessionID: session.id, instanceID: target)
        return (state, session.id, token, agentToken)
    }

    @Test("a read relayed to the other side leaves TLS's buffer unshared, and every message arrives intact")
    func relayedThenReleased() throws {
        let control = EmbeddedChannel()
        let (state, sessionID, clientToken, agentToken) = try Self.session(control: control)
        let client = try Self.dataChannel(state, sessionID: sessionID, agent: false)
        let agent = try Self.dataChannel(state, sessionID: sessionID, agent: true)
        try client.writeInbound(Self.opening(token: clientToken, agent: false))
        try agent.writeInbound(Self.opening(token: agentToken, agent: true))
        while try agent.readOutbound(as: ByteBuffer.self) != nil {}  // start_publication and the like

        var (read, rest) = (ByteBuffer(), ByteBuffer())
        let sequences = Self.tlsRead(count: 6, size: 20_000, into: &read, rest: &rest)
        let witness = try client.pipeline.syncOperations.handler(type: BorrowWitness.self)
        witness.read = read.withUnsafeReadableBytes {
            UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count)
        }
        try client.writeInbound(read)
        // The six bulk frames went on as slices of the read, the masked acknowledgement as a copy.
        #expect(witness.borrowed == 6 && witness.copied == 1)
        let readReused = read.reusedInPlace()
        #expect(readReused, "a slice of TLS's read buffer outlived the read")
        #expect(try Self.relayed(agent) == sequences)

        // The frame the read left incomplete is completed by the next one, unmasked in the reader's own
        // buffer, and relayed intact.
        try client.writeInbound(rest)
        let restReused = rest.reusedInPlace()
        #expect(restReused)
        #expect(try Self.relayed(agent) == [6])
        for channel in [client, agent, control] { _ = try channel.finish(acceptAlreadyClosed: true) }
    }

    @Test("frames held for an absent agent are copies: TLS's buffer is left unshared, and they arrive later")
    func heldForAbsentSide() throws {
        let control = EmbeddedChannel()
        let (state, sessionID, clientToken, agentToken) = try Self.session(control: control)
        let client = try Self.dataChannel(state, sessionID: sessionID, agent: false)
        try client.writeInbound(Self.opening(token: clientToken, agent: false))

        var (read, rest) = (ByteBuffer(), ByteBuffer())
        let sequences = Self.tlsRead(count: 4, size: 20_000, into: &read, rest: &rest)
        try client.writeInbound(read)
        let readReused = read.reusedInPlace()
        #expect(readReused, "a frame held for the absent agent is still a slice of TLS's buffer")
        #expect(state.relay(sessionID: sessionID)!.bufferedBytes > 4 * 20_000)

        let agent = try Self.dataChannel(state, sessionID: sessionID, agent: true)
        try agent.writeInbound(Self.opening(token: agentToken, agent: true))
        #expect(try Self.relayed(agent) == sequences)
        for channel in [client, agent, control] { _ = try channel.finish(acceptAlreadyClosed: true) }
    }
}
