import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

@Suite("Handshake")
struct HandshakeStateMachineTests {
    let properties: [(key: String, value: String)] = [
        ("portNumber", "3306"), ("type", "LocalPortForwarding"), ("localPortNumber", "1213"),
        ("host", "db.vpc.internal"),
    ]

    func agent(
        offering extensions: JumpgateExtensions = .all,
        version: String = JumpgateVersion.agentProtocolVersion
    ) -> AgentHandshakeStateMachine {
        AgentHandshakeStateMachine(
            configuration: .init(agentVersion: version, properties: self.properties, offeredExtensions: extensions)
        )
    }

    @Test("Jumpgate agent and Jumpgate client negotiate every extension and smux v2")
    func jumpgateToJumpgate() throws {
        var clock = ManualClock()
        var agent = self.agent()
        var client = ClientHandshakeStateMachine(
            configuration: .init(clientVersion: JumpgateVersion.clientProtocolVersion)
        )
        guard case .sendHandshakeRequest(let request) = agent.start(now: clock.now) else {
            Issue.record("no request")
            return
        }
        #expect(agent.deadline == clock.now + .seconds(15))
        // The request travels as JSON; parse it as the client would.
        let onWire = try HandshakeRequestPayload(payload: request.encoded())
        #expect(
            onWire.requestedClientActions[0].actionParameters["Properties"]?[JumpgateExtensions.propertiesKey]?
                .stringValue == JumpgateExtensions.all.wireValue
        )
        guard case .sendHandshakeResponse(let response) = client.requestReceived(onWire) else {
            Issue.record("no response")
            return
        }
        clock.advance(by: .milliseconds(52))
        guard
            case .sendHandshakeComplete(let complete, let agentView) = agent.responseReceived(
                try HandshakeResponsePayload(payload: response.encoded()),
                now: clock.now
            )
        else {
            Issue.record("no complete")
            return
        }
        #expect(complete.handshakeTimeToComplete == 52_000_000)
        #expect(agentView.extensions == .all)
        #expect(agentView.mode == .mux(smuxVersion: 2, keepAlive: false))
        // 64 KiB of bytes in two full smux frames, their headers on top.
        #expect(agentView.maximumPayloadSize(sentByAgent: true) == 65536 + 16)
        #expect(agentView.maximumPayloadSize(sentByAgent: false) == 65536 + 16)
        guard case .established(let clientView, let message) = client.completeReceived(complete) else {
            Issue.record("not established")
            return
        }
        #expect(message == "")
        #expect(clientView.extensions == .all)
        #expect(clientView.mode == .mux(smuxVersion: 2, keepAlive: false))
        #expect(clientView.properties["host"] == "db.vpc.internal")
        #expect(client.isEstablished && agent.isComplete)
        #expect(agent.timerFired(now: clock.now + .seconds(60)) == .none)  // completed: the timer is off
    }

    @Test("an official plugin's response (ActionResult null) gets no extensions and smux v1 without keepalive")
    func officialPluginResponse() throws {
        var agent = self.agent()
        _ = agent.start(now: anyTime)
        let official = try HandshakeResponsePayload(
            payload: ByteBuffer(
                string:
                    #"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
            )
        )
        guard
            case .sendHandshakeComplete(_, let negotiated) = agent.responseReceived(
                official,
                now: .uptimeNanoseconds(1)
            )
        else {
            Issue.record("expected complete")
            return
        }
        #expect(negotiated.extensions.isEmpty)
        #expect(negotiated.mode == .mux(smuxVersion: 1, keepAlive: false))
        // With an official peer: the client's messages stay at 1 KiB; the agent's to the plugin are larger.
        #expect(negotiated.maximumPayloadSize(sentByAgent: false) == 1024)
        #expect(negotiated.maximumPayloadSize(sentByAgent: true) == 65536 + 16)
    }

    @Test("agent version rules: old or non-4-part agents make the client choose basic mode")
    func clientModeByAgentVersion() {
        func mode(agentVersion: String, offered: JumpgateExtensions = []) -> PortSessionMode? {
            var client = ClientHandshakeStateMachine(configuration: .init(clientVersion: "1.2.707.0"))
            var agent = self.agent(offering: offered, version: agentVersion)
            guard case .sendHandshakeRequest(let request) = agent.start(now: anyTime) else { return nil }
            _ = client.requestReceived(request)
            guard
                case .established(let negotiated, _) = client.completeReceived(
                    HandshakeCompletePayload(handshakeTimeToComplete: 1)
                )
            else { return nil }
            return negotiated.mode
        }
        #expect(mode(agentVersion: "3.3.1802.0") == .mux(smuxVersion: 1, keepAlive: false))
        #expect(mode(agentVersion: "3.3.1802.0", offered: .all) == .mux(smuxVersion: 2, keepAlive: false))
        #expect(mode(agentVersion: "3.1.1511.0") == .mux(smuxVersion: 1, keepAlive: true))
        #expect(mode(agentVersion: "3.0.196.0") == .basic)
        #expect(mode(agentVersion: "3.4.0") == .basic)  // 3 parts: the plugin's rule says unsupported
        #expect(mode(agentVersion: "3.x.1.0") == .basic)
    }

    @Test("client version rules: the agent uses mux from 1.1.70 and keepalive up to 1.2.331.0")
    func agentModeByClientVersion() {
        func mode(
            clientVersion: String,
            agentVersion: String = JumpgateVersion.agentProtocolVersion
        )
            -> PortSessionMode?
        {
            var agent = self.agent(offering: [], version: agentVersion)
            _ = agent.start(now: anyTime)
            let response = HandshakeResponsePayload(
                clientVersion: clientVersion,
                processedClientActions: [ProcessedClientAction(actionType: "SessionType", actionStatus: .success)]
            )
            guard
                case .sendHandshakeComplete(_, let negotiated) = agent.responseReceived(
                    response,
                    now: .uptimeNanoseconds(1)
                )
            else { return nil }
            return negotiated.mode
        }
        #expect(mode(clientVersion: "1.1.69.0") == .basic)
        #expect(mode(clientVersion: "1.1.70") == .mux(smuxVersion: 1, keepAlive: true))
        #expect(mode(clientVersion: "1.2.331.0") == .mux(smuxVersion: 1, keepAlive: true))
        #expect(mode(clientVersion: "1.2.332.0") == .mux(smuxVersion: 1, keepAlive: false))
        #expect(mode(clientVersion: "") == .basic)
        // An agent reporting a version from before mux (--compat-version) behaves as that agent did:
        // basic, matching what the plugin decides from the same version.
        #expect(mode(clientVersion: "1.2.707.0", agentVersion: "3.0.196.0") == .basic)
        #expect(mode(clientVersion: "1.2.707.0", agentVersion: "3.0.197.0") == .mux(smuxVersion: 1, keepAlive: false))
    }

    @Test("the agent times out after 15 s with the official message, and not before")
    func agentTimeout() {
        var clock = ManualClock()
        var agent = self.agent()
        _ = agent.start(now: clock.now)
        clock.advance(by: .milliseconds(14_999))
        #expect(agent.timerFired(now: clock.now) == .none)
        clock.advance(by: .milliseconds(1))
        #expect(agent.timerFired(now: clock.now) == .fail(reason: AgentHandshakeStateMachine.timeoutMessage))
        #expect(agent.timerFired(now: clock.now) == .none)
        #expect(agent.deadline == nil)
    }

    @Test("a failed or missing SessionType action fails the session with the client's reason")
    func failedAction() {
        var agent = self.agent()
        _ = agent.start(now: anyTime)
        let response = HandshakeResponsePayload(
            clientVersion: "1.2.707.0",
            processedClientActions: [
                ProcessedClientAction(
                    actionType: "SessionType",
                    actionStatus: .failed,
                    error: "Unsupported session type Foo"
                )
            ]
        )
        #expect(
            agent.responseReceived(response, now: .uptimeNanoseconds(1))
                == .fail(reason: "The client failed the SessionType action: Unsupported session type Foo")
        )
        var other = self.agent()
        _ = other.start(now: anyTime)
        #expect(
            other.responseReceived(
                HandshakeResponsePayload(clientVersion: "1.2.707.0", processedClientActions: []),
                now: .uptimeNanoseconds(1)
            ) == .fail(reason: "The client did not process the SessionType action.")
        )
    }

    @Test("the client refuses unknown session types and KMS, and reports why")
    func clientRefusals() {
        var client = ClientHandshakeStateMachine(configuration: .init(clientVersion: "1.2.707.0"))
        let request = HandshakeRequestPayload(
            agentVersion: "3.3.1802.0",
            requestedClientActions: [
                RequestedClientAction(
                    actionType: "SessionType",
                    actionParameters: ["SessionType": "Nope", "Properties": [:]]
                ),
                RequestedClientAction(actionType: "KMSEncryption", actionParameters: ["KMSKeyId": "arn"]),
                RequestedClientAction(actionType: "Telepathy", actionParameters: nil),
            ]
        )
        guard case .sendHandshakeResponse(let response) = client.requestReceived(request) else {
            Issue.record("no response")
            return
        }
        #expect(response.processedClientActions.map(\.actionStatus) == [.failed, .failed, .unsupported])
        #expect(response.errors?.count == 3)
        guard case .fail = client.completeReceived(HandshakeCompletePayload(handshakeTimeToComplete: 0)) else {
            Issue.record("should fail")
            return
        }
        var early = ClientHandshakeStateMachine(configuration: .init(clientVersion: "1.2.707.0"))
        guard case .fail = early.completeReceived(HandshakeCompletePayload(handshakeTimeToComplete: 0)) else {
            Issue.record("should fail")
            return
        }
    }

    @Test("--no-extensions agents and official clients keep the fast path off")
    func noExtensions() {
        var client = ClientHandshakeStateMachine(
            configuration: .init(clientVersion: "1.2.707.0", supportedExtensions: [])
        )
        var agent = self.agent()
        guard case .sendHandshakeRequest(let request) = agent.start(now: anyTime),
            case .sendHandshakeResponse(let response) = client.requestReceived(request)
        else {
            Issue.record("handshake broke")
            return
        }
        #expect(response.processedClientActions[0].actionResult == .null)
        guard
            case .sendHandshakeComplete(_, let negotiated) = agent.responseReceived(
                response,
                now: .uptimeNanoseconds(1)
            )
        else { return }
        #expect(negotiated.extensions.isEmpty)
        var plain = self.agent(offering: [])
        guard case .sendHandshakeRequest(let plainRequest) = plain.start(now: anyTime) else { return }
        #expect(
            plainRequest.requestedClientActions[0].actionParameters["Properties"]?[JumpgateExtensions.propertiesKey]
                == nil
        )
    }

    @Test("version comparison rules of each official peer")
    func versionRules() {
        #expect(SSMVersion.pluginIsGreater("3.3.1802.0", than: "3.1.1511.0"))
        #expect(!SSMVersion.pluginIsGreater("3.1.1511.0", than: "3.1.1511.0"))
        #expect(!SSMVersion.pluginIsGreater("4.0.0", than: "3.1.1511.0"))  // component count differs
        #expect(!SSMVersion.pluginIsGreater("3.10.0.0a", than: "3.1.1511.0"))
        #expect(SSMVersion.pluginIsGreater("3.10.0.0", than: "3.9.9999.0"))
        #expect(SSMVersion.agentCompare("1.1.70", "1.1.70") == 0)
        #expect(SSMVersion.agentCompare("1.1.70.0", "1.1.70") == 1)
        #expect(SSMVersion.agentCompare("1.1", "1.1.70") == -1)
        #expect(SSMVersion.agentCompare("junk", "1.0") == -1)
        #expect(SSMVersion.pluginIsGreater(JumpgateVersion.clientProtocolVersion, than: "1.2.650.0"))
        #expect(
            SSMVersion.pluginIsGreater(
                JumpgateVersion.agentProtocolVersion,
                than: SSMVersion.keepAliveDisabledAfterAgentVersion
            )
        )
    }

    @Test("extension wire form round-trips and ignores unknown names")
    func extensionWireForm() {
        #expect(JumpgateExtensions(wireValue: JumpgateExtensions.all.wireValue) == .all)
        #expect(JumpgateExtensions(wireValue: "digest-free, future-thing ,smux-v2") == [.digestFree, .smuxV2])
        #expect(JumpgateExtensions(wireValue: "").isEmpty)
    }
}

extension AgentHandshakeStateMachine.Action: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.none, .none): return true
        case (.fail(let a), .fail(let b)): return a == b
        case (.sendHandshakeRequest(let a), .sendHandshakeRequest(let b)): return a == b
        case (.sendHandshakeComplete(let a, let x), .sendHandshakeComplete(let b, let y)): return a == b && x == y
        default: return false
        }
    }
}
