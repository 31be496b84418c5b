import Foundation
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// GatewayState's token rules, without sockets (an EmbeddedChannel stands in for the agent's control channel).
@Suite("Gateway state: data-channel tokens")
struct GatewayStateTests {
    static func stateWithConnectedAgent() throws -> (GatewayState, String) {
        let state = GatewayState(clock: { 1_700_000_000 })
        state.restore(StoreSnapshot(instances: [GatewayStoreTests.instance("mi-0123456789abcdef0")]))
        let token = state.issueControlToken(instanceID: "mi-0123456789abcdef0")
        #expect(
            state.attachControlChannel(
                instanceID: "mi-0123456789abcdef0",
                token: token,
                channel: EmbeddedChannel(),
                agentVersion: "3.3.1802.0",
                platformName: "Debian",
                ipAddress: "198.18.1.10"
            )
        )
        return (state, "mi-0123456789abcdef0")
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

    @Test("the StartSession token works until the handshake completes; ResumeSession tokens work once")
    func tokenLifetime() throws {
        let (state, target) = try Self.stateWithConnectedAgent()
        let (session, token) = try state.createSession(
            owner: "alice",
            target: target,
            documentName: "AWS-StartPortForwardingSession",
            parameters: [("portNumber", "22")],
            reason: ""
        )
        #expect(!state.consumeClientToken(sessionID: session.id, token: "not-the-token"))
        // The official plugin retries its first connection with the same token.
        #expect(state.consumeClientToken(sessionID: session.id, token: token))
        #expect(state.consumeClientToken(sessionID: session.id, token: token))

        let relay = try #require(state.relay(sessionID: session.id))
        _ = relay.forward(Self.agentFrame(.handshakeRequest), from: .agent)
        #expect(state.consumeClientToken(sessionID: session.id, token: token))  // not complete yet
        _ = relay.forward(Self.agentFrame(.handshakeComplete), from: .agent)
        #expect(!state.consumeClientToken(sessionID: session.id, token: token))  // spent

        let resumed = try state.resumeSession(id: session.id, owner: "alice")
        #expect(state.consumeClientToken(sessionID: session.id, token: resumed))
        #expect(!state.consumeClientToken(sessionID: session.id, token: resumed))  // once
        #expect(throws: APIError.self) { try state.resumeSession(id: session.id, owner: "mallory") }

        state.setStatus(sessionID: session.id, .terminated, reason: "done")
        #expect(throws: APIError.self) { try state.resumeSession(id: session.id, owner: "alice") }
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
}
