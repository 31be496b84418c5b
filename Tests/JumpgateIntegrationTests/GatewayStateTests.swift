import Foundation
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// GatewayState's token rules, without sockets (an EmbeddedChannel stands in for the agent's control channel).
@Suite("Gateway state: data-channel tokens")
struct GatewayStateTests {
    /// A state whose agent's control channel is `control` (close it at the end, as a real one ends: the
    /// state and an open channel hold each other).
    static func stateWithConnectedAgent(control: EmbeddedChannel) throws -> (GatewayState, String) {
        let (state, target, token) = Self.stateWithInstance()
        #expect(Self.attach(state, target, token: token, channel: control))
        return (state, target)
    }

    /// A state that knows one registered instance, and a control-channel token issued for it.
    static func stateWithInstance() -> (GatewayState, target: String, token: String) {
        let state = GatewayState(clock: { 1_700_000_000 })
        state.restore(StoreSnapshot(instances: [GatewayStoreTests.instance("mi-0123456789abcdef0")]))
        return (state, "mi-0123456789abcdef0", state.issueControlToken(instanceID: "mi-0123456789abcdef0"))
    }

    /// A port-forwarding session of alice's to `target`, and its StartSession token.
    static func portSession(_ state: GatewayState, target: String) throws -> (SessionRecord, token: String) {
        try state.createSession(
            owner: "alice",
            target: target,
            documentName: "AWS-StartPortForwardingSession",
            parameters: [("portNumber", "22")],
            reason: ""
        )
    }

    /// Whether `state` lets `channel` become the instance's control channel with `token`.
    static func attach(_ state: GatewayState, _ instanceID: String, token: String, channel: any Channel) -> Bool {
        state.attachControlChannel(
            instanceID: instanceID,
            token: token,
            channel: channel,
            agentVersion: "3.3.1802.0",
            platformName: "Debian",
            ipAddress: "198.18.1.10"
        ) != nil
    }

    static func agentFrame(_ payloadType: PayloadType) -> ByteBuffer {
        SSMMessage(
            messageType: .outputStreamData,
            createdDate: 1,
            sequenceNumber: 1,
            payloadType: payloadType,
            payload: HandshakeCompletePayload(handshakeTimeToComplete: 1).encoded()
        ).encoded()
    }

    @Test("a session that ended before its client connected: its own token hears why, no other token does")
    func endReasonForALateClient() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish(acceptAlreadyClosed: true) }
        let (state, target) = try Self.stateWithConnectedAgent(control: control)
        let (session, token) = try Self.portSession(state, target: target)
        #expect(state.endReason(sessionID: session.id, clientToken: token) == nil)  // not ended
        state.setStatus(sessionID: session.id, .failed, reason: "Shell sessions are off on this agent")
        #expect(!state.consumeClientToken(sessionID: session.id, token: token))  // it opens nothing
        #expect(state.endReason(sessionID: session.id, clientToken: "not-the-token") == nil)
        #expect(state.endReason(sessionID: "no-such-session", clientToken: token) == nil)
        #expect(state.endReason(sessionID: session.id, clientToken: token) == "Shell sessions are off on this agent")
    }

    @Test(
        "ResumeSession after the end names the reason when the gateway, the API or a failure ended it, not when its program did"
    )
    func resumeAfterTheEnd() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish(acceptAlreadyClosed: true) }
        let (state, target) = try Self.stateWithConnectedAgent(control: control)
        for (reason, hears) in [("Session terminated by alice.", true), ("Shell exited with status 3.", false)] {
            let (session, token) = try Self.portSession(state, target: target)
            state.setStatus(sessionID: session.id, .terminated, reason: reason, clientHearsReason: hears)
            do {
                _ = try state.resumeSession(id: session.id)
                Issue.record("an ended session resumed")
            } catch {
                #expect(error.type == "DoesNotExistException")
                let named = SessionEndedNotice.reason(in: error.message)
                #expect(named == (hears ? reason : nil), "\(error.message)")
                if !hears { #expect(error.message == "Session \(session.id) is already terminated.") }
            }
            // The late client's data-channel refusal follows the same rule.
            #expect(state.endReason(sessionID: session.id, clientToken: token) == (hears ? reason : nil))
        }
        // A session nobody resumed, expired by the gateway: its client, coming back, hears why.
        let (expiring, _) = try Self.portSession(state, target: target)
        state.setStatus(sessionID: expiring.id, .disconnected)
        _ = state.expireDisconnected(after: 0)
        do {
            _ = try state.resumeSession(id: expiring.id)
            Issue.record("an expired session resumed")
        } catch {
            #expect(
                SessionEndedNotice.reason(in: error.message)?.contains("did not reconnect") == true,
                "\(error.message)"
            )
        }
    }

    @Test("the StartSession token works until the handshake completes; ResumeSession tokens work once")
    func tokenLifetime() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish(acceptAlreadyClosed: true) }
        let (state, target) = try Self.stateWithConnectedAgent(control: control)
        let (session, token) = try Self.portSession(state, target: target)
        #expect(!state.consumeClientToken(sessionID: session.id, token: "not-the-token"))
        // The official plugin retries its first connection with the same token.
        #expect(state.consumeClientToken(sessionID: session.id, token: token))
        #expect(state.consumeClientToken(sessionID: session.id, token: token))

        let relay = try #require(state.relay(sessionID: session.id))
        _ = relay.forward(Self.agentFrame(.handshakeRequest), from: .agent)
        #expect(state.consumeClientToken(sessionID: session.id, token: token))  // not complete yet
        _ = relay.forward(Self.agentFrame(.handshakeComplete), from: .agent)
        #expect(!state.consumeClientToken(sessionID: session.id, token: token))  // spent

        let resumed = try state.resumeSession(id: session.id)
        #expect(state.consumeClientToken(sessionID: session.id, token: resumed))
        #expect(!state.consumeClientToken(sessionID: session.id, token: resumed))  // once

        state.setStatus(sessionID: session.id, .terminated, reason: "done")
        #expect(throws: APIError.self) { try state.resumeSession(id: session.id) }
    }

    @Test("the handshake_complete check reads the frame header only, and only for output_stream_data")
    func handshakeDetection() {
        #expect(SessionRelay.isHandshakeComplete(Self.agentFrame(.handshakeComplete)))
        #expect(!SessionRelay.isHandshakeComplete(Self.agentFrame(.handshakeRequest)))
        let input = SSMMessage(
            messageType: .inputStreamData,
            createdDate: 1,
            payloadType: .handshakeComplete,
            payload: ByteBuffer()
        ).encoded()
        #expect(!SessionRelay.isHandshakeComplete(input))
        #expect(!SessionRelay.isHandshakeComplete(ByteBuffer(bytes: [1, 2, 3])))
    }

    static func registration(_ id: String, _ code: String) -> GatewayState.Registration {
        GatewayState.Registration(
            activationID: id,
            activationCode: code,
            name: "",
            platformType: "Linux",
            platformName: "Debian",
            platformVersion: "12",
            agentVersion: "3.3.1802.0",
            hostname: "jump",
            ipAddress: "198.18.1.10"
        )
    }

    static func activation(_ state: GatewayState, limit: Int, expiration: Int64?) throws -> (id: String, code: String) {
        // No store: applied at once, so the future is already complete.
        try state.createActivation(
            iamRole: "SSMServiceRole",
            description: "",
            defaultInstanceName: "jump",
            registrationLimit: limit,
            expirationEpoch: expiration,
            on: EmbeddedEventLoop()
        ).wait()
    }

    @Test("activations: the code must match, each use counts against the limit, expiry is honoured")
    func activationRules() throws {
        let clock = NIOLockedValueBox<Int64>(1_700_000_000)
        let state = GatewayState(clock: { clock.withLockedValue { $0 } })
        let (id, code) = try Self.activation(state, limit: 2, expiration: 1_700_000_100)
        #expect(throws: APIError.self) { try state.register(Self.registration(id, code + "x"), source: "a") }
        let first = try state.register(Self.registration(id, code), source: "a")
        #expect(first.id.hasPrefix("mi-") && first.id.count == 20 && first.name == "jump")
        let hexDigits = first.id.dropFirst(3).allSatisfy { $0.isHexDigit }
        #expect(hexDigits)
        _ = try state.register(Self.registration(id, code), source: "a")
        let spent = #expect(throws: APIError.self) { try state.register(Self.registration(id, code), source: "a") }
        #expect(spent?.type == "InvalidActivation")
        #expect(state.activations().first?.registrationsCount == 2)

        let (late, lateCode) = try Self.activation(state, limit: 5, expiration: 1_700_000_100)
        clock.withLockedValue { $0 = 1_700_000_100 }
        #expect(throws: APIError.self) { try state.register(Self.registration(late, lateCode), source: "b") }
    }

    @Test("failed activation attempts are throttled per source and per activation for a minute; a right code never is")
    func activationThrottling() throws {
        let clock = NIOLockedValueBox<Int64>(1_700_000_000)
        let state = GatewayState(clock: { clock.withLockedValue { $0 } })
        let (id, code) = try Self.activation(state, limit: 5, expiration: nil)
        let (other, _) = try Self.activation(state, limit: 5, expiration: nil)
        for attempt in 0..<12 {
            let error = #expect(throws: APIError.self) {
                try state.register(Self.registration(id, "guess"), source: "198.51.100.7")
            }
            #expect(error?.type == (attempt < 10 ? "InvalidActivation" : "ThrottlingException"))
        }
        // The right code goes through from that very source, during the throttle.
        _ = try state.register(Self.registration(id, code), source: "198.51.100.7")
        // Another source guessing the same activation is throttled by the activation's count; a source
        // guessing another activation is throttled by its own.
        let byActivation = #expect(throws: APIError.self) {
            try state.register(Self.registration(id, "guess"), source: "198.51.100.8")
        }
        #expect(byActivation?.type == "ThrottlingException")
        let bySource = #expect(throws: APIError.self) {
            try state.register(Self.registration(other, "guess"), source: "198.51.100.7")
        }
        #expect(bySource?.type == "ThrottlingException")
        // A minute later, a wrong guess gets its own error again.
        clock.withLockedValue { $0 += 61 }
        let fresh = #expect(throws: APIError.self) {
            try state.register(Self.registration(id, "guess"), source: "198.51.100.7")
        }
        #expect(fresh?.type == "InvalidActivation")
    }

    @Test("unused tokens are bounded per holder: the newest always works, expired ones go, an old one stops working")
    func pendingTokensBounded() throws {
        let clock = NIOLockedValueBox<Int64>(1_700_000_000)
        let control = EmbeddedChannel()
        defer { _ = try? control.finish(acceptAlreadyClosed: true) }
        let state = GatewayState(clock: { clock.withLockedValue { $0 } })
        let target = "mi-0123456789abcdef0"
        state.restore(StoreSnapshot(instances: [GatewayStoreTests.instance(target)]))
        // An agent that asks for control-channel tokens without pause (or whose connections are all cut
        // before they arrive) leaves at most PendingTokens.limit behind; the oldest stop working.
        let controlTokens = (0..<100).map { _ in
            clock.withLockedValue { $0 += 1 }
            return state.issueControlToken(instanceID: target)
        }
        #expect(state.storage.withLockedValue { $0.controlTokens[target]?.count } == PendingTokens.limit)
        let attach = { (token: String) in Self.attach(state, target, token: token, channel: control) }
        // Token 83 has not expired (issued 17 s ago) but was dropped for the bound; 84 is the oldest kept.
        #expect(!attach(controlTokens[83]), "the oldest token past the bound was dropped")
        #expect(attach(controlTokens[84]), "the oldest token within the bound works")
        #expect(attach(controlTokens[99]), "the newest token works")
        #expect(!attach(controlTokens[99]), "a token works once")
        // Asking for an unknown instance's token leaves nothing behind.
        #expect(!Self.attach(state, "mi-00000000000000000", token: "guess", channel: control))
        #expect(state.storage.withLockedValue { $0.controlTokens["mi-00000000000000000"] } == nil)

        // The same for a session's data-channel tokens.
        let (session, _) = try Self.portSession(state, target: target)
        let agentTokens = try (0..<100).map { _ in
            clock.withLockedValue { $0 += 1 }
            return try state.issueAgentToken(sessionID: session.id, instanceID: target)
        }
        #expect(
            state.storage.withLockedValue { $0.sessions[session.id]?.agentTokenHashes.count } == PendingTokens.limit
        )
        #expect(!state.consumeAgentToken(sessionID: session.id, instanceID: target, token: agentTokens[83]))
        #expect(state.consumeAgentToken(sessionID: session.id, instanceID: target, token: agentTokens[84]))
        #expect(state.consumeAgentToken(sessionID: session.id, instanceID: target, token: agentTokens[99]))
        // Tokens expire after 60 s; the next one issued clears every expired one.
        clock.withLockedValue { $0 += 61 }
        #expect(!state.consumeAgentToken(sessionID: session.id, instanceID: target, token: agentTokens[98]))
        let fresh = try state.issueAgentToken(sessionID: session.id, instanceID: target)
        #expect(state.storage.withLockedValue { $0.sessions[session.id]?.agentTokenHashes.count } == 1)
        #expect(state.consumeAgentToken(sessionID: session.id, instanceID: target, token: fresh))
    }
}
