import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateAgent
@testable import JumpgateGateway

/// The gateway's pairing handler and glue without sockets: two EmbeddedChannels on one loop arrive with
/// their pairing lines, are answered, and then pass bytes to each other as they are.
@Suite("Relay-blind pairing in the gateway, in process")
struct PairingHandlerTests {
    struct Pairing {
        let loop = EmbeddedEventLoop()
        /// The gateway's clock, in seconds: moved by hand.
        let time = NIOLockedValueBox<Int64>(1_700_000_000)
        let state: GatewayState
        let relay: SessionRelay
        let offer: BlindOffer

        init() throws {
            let time = self.time
            self.state = GatewayState(clock: { time.withLockedValue { $0 } })
            self.relay = SessionRelay(sessionID: "s-1", state: self.state)
            let relay = self.relay
            let control = EmbeddedChannel(loop: self.loop)
            self.state.storage.withLockedValue {
                $0.relays["s-1"] = relay
                $0.sessions["s-1"] = PairingHandlerTests.session("s-1")
                // The agent's control channel is connected (a client is offered a re-pairing only then).
                $0.controlChannels["mi-1"] = control
            }
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

    static func session(_ id: String, document: String = "AWS-StartPortForwardingSessionToRemoteHost") -> SessionRecord
    {
        SessionRecord(
            id: id,
            owner: "o",
            target: "mi-1",
            documentName: document,
            parameters: [],
            reason: "",
            status: .connected,
            startEpoch: 1_700_000_000,
            endEpoch: nil,
            closeReason: "",
            clientTokenHash: nil,
            agentTokenHashes: [:]
        )
    }

    /// The pair of `pairing` made with `offer`'s tokens: both sides answered OK.
    static func pair(
        _ pairing: Pairing,
        _ offer: BlindOffer
    ) throws -> (client: EmbeddedChannel, agent: EmbeddedChannel) {
        try Self.pair(pairing, client: offer.half(.client), agent: offer.half(.agent))
    }

    static func pair(
        _ pairing: Pairing,
        client clientHalf: BlindHalf?,
        agent agentHalf: BlindHalf?
    ) throws -> (client: EmbeddedChannel, agent: EmbeddedChannel) {
        guard case .client(let clientToken, _, _) = clientHalf, case .agent(let agentToken, _) = agentHalf else {
            throw WireError(
                .invalidPayload,
                "not a client's and an agent's half: \(String(describing: clientHalf)), \(String(describing: agentHalf))"
            )
        }
        let client = try pairing.channel()
        let agent = try pairing.channel()
        try client.writeInbound(PairingLine(role: .client, token: clientToken).encoded())
        try agent.writeInbound(PairingLine(role: .agent, token: agentToken).encoded())
        #expect(try Self.text(client) == "OK\n" && Self.text(agent) == "OK\n")
        return (client, agent)
    }

    static let certificate = String(repeating: "ab", count: 32)
    static let otherCertificate = String(repeating: "cd", count: 32)

    @Test("after a break, either side first: a new offer to the first, its half to the second, and they pair again")
    func reofferAfterBreak() throws {
        for agentFirst in [false, true] {
            let pairing = try Pairing()
            let (client, agent) = try Self.pair(pairing, pairing.offer)
            try client.close().wait()
            #expect(!agent.isActive && !pairing.relay.isPaired)
            let (first, second): (PairingLine.Role, PairingLine.Role) =
                agentFirst ? (.agent, .client) : (.client, .agent)
            let asked = pairing.state.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: first,
                certificateSHA256: first == .agent ? Self.certificate : nil
            )
            #expect(asked.decision == .offer)
            let collected = pairing.state.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: second,
                certificateSHA256: second == .agent ? Self.certificate : nil
            )
            #expect(collected.decision == .collect)
            let (clientHalf, agentHalf) = agentFirst ? (collected.half, asked.half) : (asked.half, collected.half)
            // The client's half carries the certificate the gateway knows, the agent's the secret's hash.
            guard case .client(_, let secret, let pinned) = clientHalf, case .agent(_, let hash) = agentHalf else {
                Issue.record("halves: \(String(describing: clientHalf)), \(String(describing: agentHalf))")
                continue
            }
            #expect(pinned == Self.certificate && hash == tokenHash(secret))
            // The old tokens are spent; the new ones pair.
            let (newClient, newAgent) = try Self.pair(pairing, client: clientHalf, agent: agentHalf)
            #expect(pairing.relay.isPaired)
            // Collected once: the same side asking again gets a new offer, not the old half, and the pair it
            // asks while in (stale, as far as that side knows) is closed.
            let third = pairing.state.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: second,
                certificateSHA256: nil
            )
            #expect(third.decision == .offer && third.half != collected.half)
            #expect(!newClient.isActive && !newAgent.isActive && !pairing.relay.isPaired)
        }
    }

    @Test(
        "the certificate on record beats a claimed one, which is never recorded; a restarted gateway uses the agent's own claim"
    )
    func reofferCertificates() throws {
        // On record (the agent's control channel): a client's stale pin and an agent's claim change nothing.
        for side in [PairingLine.Role.client, .agent] {
            let pairing = try Pairing()
            let asked = pairing.state.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: side,
                certificateSHA256: Self.otherCertificate
            )
            #expect(asked.decision == .offer)
            let clientHalf =
                side == .client
                ? asked.half
                : pairing.state.reofferBlindPath(
                    sessionID: "s-1",
                    instanceID: "mi-1",
                    side: .client,
                    certificateSHA256: nil
                ).half
            guard case .client(_, _, let pinned) = clientHalf else {
                Issue.record("no client half: \(String(describing: clientHalf))")
                continue
            }
            #expect(pinned == Self.certificate)
            #expect(pairing.state.storage.withLockedValue { $0.blindCertificates["mi-1"] } == Self.certificate)
        }
        // None on record (a restarted gateway, before the agent's control channel is back): the agent's own
        // hash serves this offer, and only it; a client's claim serves nothing.
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s-1", state: state)
        state.storage.withLockedValue {
            $0.relays["s-1"] = relay
            $0.sessions["s-1"] = Self.session("s-1")
            $0.controlChannels["mi-1"] = EmbeddedChannel()
        }
        let client = state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: Self.certificate
        )
        #expect(client.decision == .decline(.noCertificate) && client.half == nil)
        let none = state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .agent, certificateSHA256: nil)
        #expect(none.decision == .decline(.noCertificate) && none.half == nil)
        let bad = state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .agent, certificateSHA256: "zz")
        #expect(bad.decision == .decline(.noCertificate))
        let made = state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .agent,
            certificateSHA256: Self.certificate.uppercased()
        )
        #expect(made.decision == .offer)
        let clientHalf = state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: nil
        )
        #expect(clientHalf.decision == .collect)
        #expect(clientHalf.half?.clientJSON?["AgentCertificateSHA256"]?.stringValue == Self.certificate)
        #expect(state.storage.withLockedValue { $0.blindCertificates["mi-1"] } == nil)
    }

    @Test(
        "a client is not offered a re-pairing while the agent is not connected; one the agent asked first for, it collects"
    )
    func reofferAgentUnreachable() throws {
        let pairing = try Pairing()
        pairing.state.storage.withLockedValue { $0.controlChannels["mi-1"] = nil }
        // The agent was killed: the client resumes on the WebSocket path, where it hears of the loss.
        let unreachable = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: Self.certificate
        )
        #expect(unreachable.decision == .decline(.agentUnreachable) && unreachable.half == nil)
        // The agent asked first (its data channel back before its control channel): the client collects.
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .agent, certificateSHA256: nil)
                .decision == .offer
        )
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .client, certificateSHA256: nil)
                .decision == .collect
        )
    }

    @Test(
        "after a break, declined: the partner back on the WebSocket path, the session ended, not a port session, the relay off"
    )
    func reofferDeclined() throws {
        let pairing = try Pairing()
        // The agent asked first; then the client came back on the WebSocket path: the agent's next request
        // is declined, and the client's kept half is gone (the withdrawal as the client attached).
        let asked = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .agent,
            certificateSHA256: nil
        )
        #expect(asked.decision == .offer)
        let webSocket = EmbeddedChannel(loop: pairing.loop)
        pairing.relay.attach(.client, channel: webSocket)
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .agent, certificateSHA256: nil)
                .decision == .decline(.partnerOnWebSocket)
        )
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .client, certificateSHA256: nil)
                .decision != .collect
        )
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-2", instanceID: "mi-1", side: .client, certificateSHA256: nil)
                .decision == .decline(.sessionEnded)
        )
        pairing.relay.terminate(reason: "over")
        #expect(
            pairing.state.reofferBlindPath(sessionID: "s-1", instanceID: "mi-1", side: .agent, certificateSHA256: nil)
                .decision == .decline(.sessionEnded)
        )
        // A shell session (its document's type) is never offered the path.
        let shell = GatewayState(clock: { 1_700_000_000 })
        shell.storage.withLockedValue {
            $0.relays["s-1"] = SessionRelay(sessionID: "s-1", state: shell)
            $0.sessions["s-1"] = Self.session("s-1", document: "SSM-SessionManagerRunShell")
            $0.controlChannels["mi-1"] = EmbeddedChannel()
        }
        #expect(
            shell.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: .client,
                certificateSHA256: Self.certificate
            )
            .decision == .decline(.notPort)
        )
        let off = GatewayState(clock: { 1_700_000_000 }, blindRelay: false)
        off.storage.withLockedValue {
            $0.relays["s-1"] = SessionRelay(sessionID: "s-1", state: off)
            $0.sessions["s-1"] = Self.session("s-1")
        }
        #expect(
            off.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: .client,
                certificateSHA256: Self.certificate
            )
            .decision == .decline(.relayOff)
        )
    }

    @Test("a side that asks while its old pair looks open closes it; a kept half ends with the window or a withdrawal")
    func reofferStalePairAndKeptHalves() throws {
        let pairing = try Pairing()
        let (client, agent) = try Self.pair(pairing, pairing.offer)
        // The client lost its side, the gateway has not noticed: the pair is closed, so the agent asks too.
        let asked = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: nil
        )
        #expect(asked.decision == .offer)
        #expect(!client.isActive && !agent.isActive && !pairing.relay.isPaired)
        // The agent's half is kept for the window only.
        pairing.state.expirePairings(now: .now() + GatewayState.pairingWindow + .seconds(1))
        let late = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .agent,
            certificateSHA256: nil
        )
        #expect(late.decision == .offer)
        // The client's half, kept from that offer, ends when the session goes to the WebSocket path.
        pairing.state.withdrawBlindPath(sessionID: "s-1")
        let after = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: nil
        )
        #expect(after.decision == .offer)
    }

    /// After a break of `pairing`'s first pair, the agent asks first and waits in the re-pairing: its
    /// waiting connection and the offer's other half (kept for the client).
    static func agentWaitingInReoffer(_ pairing: Pairing) throws -> EmbeddedChannel {
        let (client, _) = try Self.pair(pairing, pairing.offer)
        try client.close().wait()
        let asked = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .agent,
            certificateSHA256: Self.certificate
        )
        guard asked.decision == .offer, case .agent(let token, _) = asked.half else {
            throw WireError(.invalidPayload, "no offer for the agent: \(asked)")
        }
        let waiting = try pairing.channel()
        try waiting.writeInbound(PairingLine(role: .agent, token: token).encoded())
        #expect(try waiting.isActive && Self.text(waiting).isEmpty, "the agent waits for its partner")
        return waiting
    }

    @Test(
        "an agent that leaves while it waits in a re-pairing takes the client's kept half with it; a client that already holds it is refused at once"
    )
    func reofferPartnerLeft() throws {
        // Before the client asks: its half is dropped, so it is not sent to wait for nobody. With the agent's
        // control channel still up (the agent's pairing failed, the agent lives) it gets a new offer; with
        // the control channel gone too (the agent died) it is declined and hears of the loss on the
        // WebSocket path.
        for agentDied in [false, true] {
            let pairing = try Pairing()
            let waiting = try Self.agentWaitingInReoffer(pairing)
            if agentDied { pairing.state.storage.withLockedValue { $0.controlChannels["mi-1"] = nil } }
            try waiting.close().wait()
            let asked = pairing.state.reofferBlindPath(
                sessionID: "s-1",
                instanceID: "mi-1",
                side: .client,
                certificateSHA256: nil
            )
            #expect(asked.decision == (agentDied ? .decline(.agentUnreachable) : .offer), "agent died: \(agentDied)")
            #expect((asked.half == nil) == agentDied)
        }

        // After the client collected its half: it arrives and is told at once that its partner left.
        let pairing = try Pairing()
        let waiting = try Self.agentWaitingInReoffer(pairing)
        let collected = pairing.state.reofferBlindPath(
            sessionID: "s-1",
            instanceID: "mi-1",
            side: .client,
            certificateSHA256: nil
        )
        guard collected.decision == .collect, case .client(let token, _, _) = collected.half else {
            Issue.record("not collected: \(collected)")
            return
        }
        try waiting.close().wait()
        let client = try pairing.channel()
        try client.writeInbound(PairingLine(role: .client, token: token).encoded())
        #expect(try Self.text(client) == "NO \(PairingTable<Int>.Refusal.partnerLeft.description)\n")
        #expect(!client.isActive && !pairing.relay.isPaired)
        let types = pairing.state.refusalSummaries(all: true).flatMap { $0.types.keys }
        #expect(types.contains("PairingPartnerLeft"))
    }

    @Test(
        "an agent waiting in a pairing is present: a short agent-loss timeout does not end its session meanwhile"
    )
    func agentWaitingIsPresent() throws {
        let pairing = try Pairing()
        var policy = AgentLoss.Policy()
        policy.timeoutSeconds = 4
        // A new session: no agent data channel yet, so absent from the start.
        pairing.time.withLockedValue { $0 += 1 }
        #expect(pairing.state.agentLossSweep(policy: policy).first?.2.seconds == 1)
        // The agent waits in the pairing for longer than the timeout: present at every sweep.
        let agent = try pairing.channel()
        try agent.writeInbound(pairing.line(.agent))
        for _ in 0..<8 {
            pairing.time.withLockedValue { $0 += 1 }
            #expect(pairing.state.agentLossSweep(policy: policy).isEmpty, "present while it waits")
        }
        // It stops waiting (the offer withdrawn): its absence counts from the last sweep that saw it.
        pairing.state.withdrawBlindPath(sessionID: "s-1")
        #expect(!agent.isActive)
        pairing.time.withLockedValue { $0 += 3 }
        let absence = try #require(pairing.state.agentLossSweep(policy: policy).first?.2)
        #expect(absence.seconds == 3 && !absence.everAttached)
        #expect(AgentLoss.decide(absence, policy: policy) == .none)
        pairing.time.withLockedValue { $0 += 1 }
        let due = try #require(pairing.state.agentLossSweep(policy: policy).first?.2)
        #expect(AgentLoss.decide(due, policy: policy) == .end, "then the timeout applies as before")
    }

    @Test("the token answer is AWS's shape byte for byte without a re-offer; the agent reads its half from it")
    func tokenReplyXML() throws {
        #expect(
            GatewayHTTPHandler.tokenReplyXML(control: false, token: "T0k", half: nil)
                == "<CreateDataChannelResponse><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>T0k</TokenValue></CreateDataChannelResponse>"
        )
        #expect(
            GatewayHTTPHandler.tokenReplyXML(control: true, token: "T0k", half: nil)
                == "<CreateControlChannelResponse><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>T0k</TokenValue></CreateControlChannelResponse>"
        )
        let pairing = try Pairing()
        let xml = GatewayHTTPHandler.tokenReplyXML(control: false, token: "T0k", half: pairing.offer.half(.agent))
        #expect(ChannelTokenResponse.token(fromXML: xml) == "T0k")
        #expect(
            xml.contains(
                "<JumpgateBlindPath><PairingToken>\(pairing.offer.agentToken)</PairingToken><ClientSecretSHA256>\(tokenHash(pairing.offer.clientSecret))</ClientSecretSHA256></JumpgateBlindPath></CreateDataChannelResponse>"
            )
        )
        // The agent's side: its ticket from the answer, none from AWS's shape or a malformed half.
        let identity = try BlindIdentity.make()
        let ticket = try #require(identity.ticket(tokenReply: xml))
        #expect(ticket.pairingToken == pairing.offer.agentToken)
        guard case .agent(_, let hash) = ticket.side else {
            Issue.record("not the agent's ticket")
            return
        }
        #expect(hash == tokenHash(pairing.offer.clientSecret))
        #expect(
            identity.ticket(tokenReply: GatewayHTTPHandler.tokenReplyXML(control: false, token: "T", half: nil)) == nil
        )
        let short = GatewayHTTPHandler.tokenReplyXML(
            control: false,
            token: "T",
            half: .agent(token: "short", clientSecretSHA256: tokenHash("x"))
        )
        #expect(identity.ticket(tokenReply: short) == nil)
    }
}
