import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

extension SessionRelay {
    /// One frame as a read burst of its own.
    func forward(_ frame: ByteBuffer, from side: Side) -> Bool {
        self.forward([frame], from: side)
    }
}

/// The relay's bookkeeping without sockets: EmbeddedChannels stand in for the two data channels and
/// collect what the relay writes to them.
@Suite("Session relay: buffering, pause and start_publication")
struct SessionRelayTests {
    static func frame(_ type: MessageType, size: Int = 1000, payloadType: PayloadType = .output) -> ByteBuffer {
        SSMMessage(
            messageType: type,
            createdDate: 1,
            sequenceNumber: 1,
            payloadType: payloadType,
            payload: ByteBuffer(repeating: 7, count: size)
        ).encoded()
    }

    /// Closes the channels, as real ones end: the relay's close callbacks go, and with them the hold the
    /// relay and its channels have on each other (left open, they leak: LeakSanitizer found it).
    static func close(_ channels: EmbeddedChannel...) throws {
        for channel in channels { _ = try channel.finish(acceptAlreadyClosed: true) }
    }

    /// The message types written to `channel` so far.
    static func written(_ channel: EmbeddedChannel) throws -> [MessageType] {
        var types: [MessageType] = []
        while let message = try channel.readOutbound(as: WebSocketMessage.self) {
            guard case .binary(let bytes) = message else { continue }
            types.append(try SSMMessage(decoding: bytes).messageType)
        }
        return types
    }

    @Test("frames for an absent client are held up to the bound; past it the agent is paused and frames dropped")
    func pauseWhileClientAway() throws {
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state, bufferLimit: 10_000)
        let agent = EmbeddedChannel()
        relay.attach(.agent, channel: agent)
        #expect(try Self.written(agent).isEmpty)
        for _ in 0..<8 { _ = relay.forward(Self.frame(.outputStreamData), from: .agent) }
        #expect(relay.bufferedBytes == 8 * 1120)
        #expect(try Self.written(agent) == [])
        // The ninth does not fit: pause_publication to the agent, once, and the frames are dropped.
        for _ in 0..<3 { _ = relay.forward(Self.frame(.outputStreamData), from: .agent) }
        #expect(try Self.written(agent) == [.pausePublication])
        #expect(relay.bufferedBytes == 8 * 1120)
        // The client arrives: it gets what was held, and the agent start_publication (resend, resume).
        let client = EmbeddedChannel()
        relay.attach(.client, channel: client)
        #expect(try Self.written(client) == Array(repeating: .outputStreamData, count: 8))
        #expect(try Self.written(agent) == [.startPublication])
        #expect(relay.bufferedBytes == 0)
        // From now on frames go straight through, and are counted.
        _ = relay.forward(Self.frame(.outputStreamData), from: .agent)
        _ = relay.forward(Self.frame(.inputStreamData), from: .client)
        #expect(try Self.written(client) == [.outputStreamData])
        #expect(try Self.written(agent) == [.inputStreamData])
        #expect(relay.relayedBytes.toClient == 9 * 1120 && relay.relayedBytes.toAgent == 1120)
        try Self.close(agent, client)
    }

    @Test("after the handshake, a side that comes back makes the other resend; a resumed side replaces the old")
    func reattachment() throws {
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state)
        let agent = EmbeddedChannel()
        let client = EmbeddedChannel()
        relay.attach(.agent, channel: agent)
        relay.attach(.client, channel: client)
        // Before the handshake completes nothing can have been lost: no start_publication.
        #expect(try Self.written(agent).isEmpty && Self.written(client).isEmpty)
        _ = relay.forward(Self.frame(.outputStreamData, payloadType: .handshakeComplete), from: .agent)
        #expect(try Self.written(client) == [.outputStreamData])
        // The client's data channel comes back on a new connection: the old one is closed, and the agent
        // is told to resend what the old connection may have swallowed.
        let resumed = EmbeddedChannel()
        relay.attach(.client, channel: resumed)
        #expect(!client.isActive)
        #expect(try Self.written(agent) == [.startPublication])
        // The agent comes back while the client is there: the client resends.
        relay.detach(.agent, channel: agent)
        _ = relay.forward(Self.frame(.inputStreamData), from: .client)  // held for the absent agent
        let agentAgain = EmbeddedChannel()
        relay.attach(.agent, channel: agentAgain)
        #expect(try Self.written(agentAgain) == [.inputStreamData])
        #expect(try Self.written(resumed) == [.startPublication])
        try Self.close(agent, client, resumed, agentAgain)
    }

    @Test("a client that sends while the agent is away is paused too, and resumed when the agent is back")
    func clientPausedWhileAgentAway() throws {
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state, restored: true, bufferLimit: 3000)
        let client = EmbeddedChannel()
        relay.attach(.client, channel: client)
        for _ in 0..<4 { _ = relay.forward(Self.frame(.inputStreamData), from: .client) }
        #expect(try Self.written(client) == [.pausePublication])
        let agent = EmbeddedChannel()
        relay.attach(.agent, channel: agent)
        #expect(try Self.written(agent) == [.inputStreamData, .inputStreamData])
        // A restored session had completed its handshake: the client resends, which also ends its pause.
        #expect(try Self.written(client) == [.startPublication])
        try Self.close(agent, client)
    }

    @Test("a read burst is relayed as one write burst and counted once; the idle clock moves only with bursts")
    func burstAndActivity() throws {
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state)
        let agent = EmbeddedChannel()
        let client = EmbeddedChannel()
        relay.attach(.agent, channel: agent)
        relay.attach(.client, channel: client)
        #expect(relay.lastActivity(now: 1_700_000_005) == 1_700_000_000)  // nothing relayed yet
        let frames = (0..<5).map { _ in Self.frame(.inputStreamData) }
        #expect(relay.forward(frames, from: .client))
        #expect(try Self.written(agent) == Array(repeating: .inputStreamData, count: 5))
        #expect(relay.relayedBytes.toAgent == 5 * 1120)
        // The sweep sees the burst at its next look, and notes that time; no burst since: unchanged.
        #expect(relay.lastActivity(now: 1_700_000_007) == 1_700_000_007)
        #expect(relay.lastActivity(now: 1_700_000_030) == 1_700_000_007)
        // A receiver that cannot take more makes the sender stop reading.
        agent.isWritable = false
        #expect(!relay.forward([Self.frame(.inputStreamData)], from: .client))
        try Self.close(agent, client)
    }
}
