import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// The gateway's pairing handler and glue without sockets: two EmbeddedChannels on one loop arrive with
/// their pairing lines, are answered, and then pass bytes to each other as they are.
@Suite("Relay-blind pairing in the gateway, in process")
struct PairingHandlerTests {
    struct Pairing {
        let loop = EmbeddedEventLoop()
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay: SessionRelay
        let offer: BlindOffer

        init() throws {
            self.relay = SessionRelay(sessionID: "s-1", state: self.state)
            let relay = self.relay
            self.state.storage.withLockedValue { $0.relays["s-1"] = relay }
            self.state.setBlindCertificate(instanceID: "mi-1", sha256: String(repeating: "ab", count: 32))
            self.offer = try #require(self.state.offerBlindPath(sessionID: "s-1", instanceID: "mi-1"))
        }

        func channel() throws -> EmbeddedChannel {
            var logger = Logger(label: "pairing")
            logger.logLevel = .critical
            let channel = EmbeddedChannel(handler: PairingHandler(state: self.state, logger: logger), loop: self.loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.5", port: 40000)).wait()
            return channel
        }

        func line(_ role: PairingLine.Role, _ token: String? = nil) -> ByteBuffer {
            PairingLine(role: role, token: token ?? (role == .client ? self.offer.clientToken : self.offer.agentToken))
                .encoded()
        }
    }

    static func text(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: bytes) }
        return text
    }

    @Test("either side first: both get OK, then bytes pass verbatim both ways and count on the session")
    func pairsAndGlues() throws {
        for agentFirst in [false, true] {
            let pairing = try Pairing()
            let client = try pairing.channel()
            let agent = try pairing.channel()
            let (first, second) = agentFirst ? (agent, client) : (client, agent)
            try first.writeInbound(pairing.line(agentFirst ? .agent : .client))
            #expect(try Self.text(first).isEmpty, "the first side was answered before its partner came")
            try second.writeInbound(pairing.line(agentFirst ? .client : .agent))
            #expect(try Self.text(client) == "OK\n" && Self.text(agent) == "OK\n")
            #expect(pairing.relay.isPaired)
            try client.writeInbound(ByteBuffer(bytes: [0x16, 3, 1, 0, 5]))
            try client.writeInbound(ByteBuffer(string: "hello"))
            client.pipeline.fireChannelReadComplete()
            #expect(try Self.text(agent) == "\u{16}\u{03}\u{01}\u{00}\u{05}hello")
            try agent.writeInbound(ByteBuffer(string: "back"))
            agent.pipeline.fireChannelReadComplete()
            #expect(try Self.text(client) == "back")
            #expect(pairing.relay.relayedBytes == (10, 4))
            // One side closes: so does the other, and the pair is over.
            try client.close().wait()
            #expect(!agent.isActive)
            #expect(!pairing.relay.isPaired)
        }
    }

    @Test("refused with NO and closed: an unknown token, a used one, the other side's, bytes before the partner")
    func refusals() throws {
        let pairing = try Pairing()
        let unknown = try pairing.channel()
        try unknown.writeInbound(pairing.line(.client, String(repeating: "Q", count: 43)))
        #expect(try Self.text(unknown).hasPrefix("NO the pairing token is not valid"))
        #expect(!unknown.isActive)
        // The agent's token from the client side: refused, and it is used up.
        let wrongRole = try pairing.channel()
        try wrongRole.writeInbound(pairing.line(.client, pairing.offer.agentToken))
        #expect(try Self.text(wrongRole).hasPrefix("NO the pairing token belongs to the session's other side"))
        let late = try pairing.channel()
        try late.writeInbound(pairing.line(.agent))
        #expect(try Self.text(late).hasPrefix("NO the pairing token is not valid"))
        // The client waits, then sends before its partner came: refused.
        let eager = try pairing.channel()
        try eager.writeInbound(pairing.line(.client))
        try eager.writeInbound(ByteBuffer(string: "early"))
        #expect(try Self.text(eager).hasPrefix("NO bytes arrived before the partner"))
        #expect(!eager.isActive)
        let types = pairing.state.refusalSummaries(all: true).flatMap { $0.types.keys }
        #expect(Set(types) == ["PairingUnknownToken", "PairingWrongRole", "PairingMalformedLine"])
        #expect(!pairing.relay.isPaired)
    }

    @Test("a side whose partner never comes is closed when the offer expires; the session withdrawn closes it at once")
    func expiryAndWithdrawal() throws {
        let pairing = try Pairing()
        let client = try pairing.channel()
        try client.writeInbound(pairing.line(.client))
        pairing.state.withdrawBlindPath(sessionID: "s-1")
        #expect(!client.isActive)
        // A new offer, and its waiting side closed when the window passes.
        let again = try #require(pairing.state.offerBlindPath(sessionID: "s-1", instanceID: "mi-1"))
        let agent = try pairing.channel()
        try agent.writeInbound(PairingLine(role: .agent, token: again.agentToken).encoded())
        #expect(agent.isActive)
        // The sweep, a second too early and then a window later.
        pairing.state.expirePairings(now: .now() + GatewayState.pairingWindow - .seconds(1))
        #expect(agent.isActive)
        pairing.state.expirePairings(now: .now() + GatewayState.pairingWindow + .seconds(1))
        #expect(!agent.isActive)
    }
}
