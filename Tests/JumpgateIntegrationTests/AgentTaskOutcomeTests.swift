import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// What the gateway makes of an agent's `agent_task_complete`: the pure rule, then the control channel's
/// handler carrying it out (an EmbeddedChannel as the agent's control channel).
@Suite("Agent task outcome: what an agent's end records and tells the client")
struct AgentTaskOutcomeTests {
    @Test("the program's own end is recorded but not told; failures and explained ends are told")
    func rule() {
        let (exited, limit, guessed) = (
            "Shell exited with status 3.", "Duration limit reached.", "Ended by the client."
        )
        let failure = "The agent reported a failure."
        let cases: [(status: String, output: String, expected: AgentTaskOutcome)] = [
            ("Success", exited, .init(status: .terminated, reason: exited, clientHearsReason: false, closeReason: "")),
            ("Success", "", .init(status: .terminated, reason: guessed, clientHearsReason: false, closeReason: "")),
            (
                "Failed", "no shell",
                .init(status: .failed, reason: "no shell", clientHearsReason: true, closeReason: "no shell")
            ),
            ("Failed", "", .init(status: .failed, reason: failure, clientHearsReason: true, closeReason: failure)),
            ("TimedOut", limit, .init(status: .terminated, reason: limit, clientHearsReason: true, closeReason: limit)),
            (
                "TimedOut", "",
                .init(status: .terminated, reason: guessed, clientHearsReason: false, closeReason: guessed)
            ),
        ]
        for (status, output, expected) in cases {
            #expect(AgentTaskOutcome(finalTaskStatus: status, output: output) == expected, "\(status), \(output)")
        }
    }

    @Test(
        "through the control channel's handler: acknowledged, recorded, and a returning client told only what it may hear"
    )
    func handler() throws {
        for (status, output, told) in [
            ("Success", "Shell exited with status 3.", false), ("Failed", "The shell could not start.", true),
            ("Cancelled", "The agent on the instance is shutting down.", true),
        ] {
            let (state, target, token) = GatewayStateTests.stateWithInstance()
            let control = EmbeddedChannel(
                handler: ControlChannelHandler(instanceID: target, state: state, logger: Logger(label: "test"))
            )
            defer { _ = try? control.finish(acceptAlreadyClosed: true) }
            try control.writeInbound(WebSocketMessage.text(ByteBuffer(string: #"{"TokenValue":"\#(token)"}"#)))
            let (session, _) = try GatewayStateTests.portSession(state, target: target)
            let complete = AgentTaskCompletePayload(
                taskID: session.id,
                finalTaskStatus: status,
                instanceID: target,
                output: output
            )
            let message = SSMMessage(messageType: .agentTaskComplete, createdDate: 0, payload: complete.encoded())
            try control.writeInbound(WebSocketMessage.binary(message.encoded()))
            // Acknowledged, whatever the outcome.
            guard case .binary(let frame) = try control.readOutbound(as: WebSocketMessage.self) else {
                Issue.record("no acknowledgement")
                continue
            }
            let acknowledgement = try SSMMessage(decoding: frame)
            #expect(acknowledgement.messageType == .agentTaskAcknowledge)
            #expect(try AgentTaskAcknowledgePayload(payload: acknowledgement.payload).taskID == session.id)
            #expect(state.session(id: session.id)?.status == (status == "Failed" ? .failed : .terminated))
            #expect(state.session(id: session.id)?.closeReason == output)
            do {
                _ = try state.resumeSession(id: session.id)
                Issue.record("an ended session resumed")
            } catch {
                #expect(SessionEndedNotice.reason(in: error.message) == (told ? output : nil), "\(error.message)")
            }
        }
    }
}
