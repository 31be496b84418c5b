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
        let cases: [(status: String, output: String, expected: AgentTaskOutcome)] = [
            (
                "Success", "Shell exited with status 3.",
                Self.outcome(.terminated, "Shell exited with status 3.", false, "")
            ),
            ("Success", "", Self.outcome(.terminated, "Ended by the client.", false, "")),
            ("Failed", "the shell could not start", Self.outcome(.failed, "the shell could not start", true, nil)),
            ("Failed", "", Self.outcome(.failed, "The agent reported a failure.", true, nil)),
            (
                "TimedOut", "Session duration limit reached.",
                Self.outcome(.terminated, "Session duration limit reached.", true, nil)
            ),
            ("TimedOut", "", Self.outcome(.terminated, "Ended by the client.", false, nil)),
        ]
        for (status, output, expected) in cases {
            #expect(AgentTaskOutcome(finalTaskStatus: status, output: output) == expected, "\(status), \(output)")
        }
    }

    /// An outcome whose close reason is `close`, or the recorded reason when nil.
    static func outcome(_ status: SessionStatus, _ reason: String, _ hears: Bool, _ close: String?) -> AgentTaskOutcome
    {
        var outcome = AgentTaskOutcome(finalTaskStatus: "", output: "")
        outcome.status = status
        outcome.reason = reason
        outcome.clientHearsReason = hears
        outcome.closeReason = close ?? reason
        return outcome
    }

    @Test(
        "through the control channel's handler: acknowledged, recorded, and a returning client told only what it may hear"
    )
    func handler() throws {
        for (status, output, told) in [
            ("Success", "Shell exited with status 3.", false), ("Failed", "The shell could not start.", true),
            ("Cancelled", "The agent on the instance is shutting down.", true),
        ] {
            let state = GatewayState(clock: { 1_700_000_000 })
            let target = "mi-0123456789abcdef0"
            state.restore(StoreSnapshot(instances: [GatewayStoreTests.instance(target)]))
            let token = state.issueControlToken(instanceID: target)
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
