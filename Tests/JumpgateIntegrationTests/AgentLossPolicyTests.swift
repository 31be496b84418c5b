import Testing

@testable import JumpgateGateway

/// AgentLoss's decisions without sockets.
@Suite("Agent loss policy")
struct AgentLossPolicyTests {
    static func absence(_ seconds: Int64, attached: Bool = true, notified: Bool = false) -> AgentLoss.Absence {
        AgentLoss.Absence(seconds: seconds, everAttached: attached, clientNotified: notified)
    }

    @Test("a blip is ignored, a longer absence is told once, the timeout ends the session")
    func decisions() {
        var policy = AgentLoss.Policy()
        policy.timeoutSeconds = 10
        policy.noticeSeconds = 2
        #expect(AgentLoss.decide(Self.absence(1), policy: policy) == .none)
        #expect(AgentLoss.decide(Self.absence(2), policy: policy) == .notifyClient)
        #expect(AgentLoss.decide(Self.absence(5, notified: true), policy: policy) == .none)
        #expect(AgentLoss.decide(Self.absence(10, notified: true), policy: policy) == .end)
        #expect(AgentLoss.decide(Self.absence(10), policy: policy) == .end)
        // An agent that never opened the session: nobody to tell about a loss, but it still ends.
        #expect(AgentLoss.decide(Self.absence(5, attached: false), policy: policy) == .none)
        #expect(AgentLoss.decide(Self.absence(10, attached: false), policy: policy) == .end)
    }

    @Test(
        "an agent waiting in a pairing is present: its absence counts from the end of the wait; an attached one is never absent"
    )
    func waitingInPairing() {
        #expect(AgentLoss.absentSince(100, waitingInPairing: true, now: 130) == 130)
        #expect(AgentLoss.absentSince(100, waitingInPairing: false, now: 130) == 100)
        #expect(AgentLoss.absentSince(nil, waitingInPairing: true, now: 130) == nil)
        #expect(AgentLoss.absentSince(nil, waitingInPairing: false, now: 130) == nil)
    }

    @Test("only a known run id that changed is a restart (official agents and a restarted gateway know none)")
    func restart() {
        #expect(AgentLoss.isRestart(previousRunID: "a", newRunID: "b"))
        #expect(!AgentLoss.isRestart(previousRunID: "a", newRunID: "a"))
        #expect(!AgentLoss.isRestart(previousRunID: nil, newRunID: "a"))
        #expect(!AgentLoss.isRestart(previousRunID: "a", newRunID: nil))
    }

    @Test("the reasons name the instance and say what to do")
    func reasons() {
        let lost = AgentLoss.lossReason(instanceID: "mi-1", absence: Self.absence(120), agentOnline: false)
        #expect(lost.contains("mi-1") && lost.contains("120 seconds") && lost.contains("Start a new session"))
        let never = AgentLoss.lossReason(
            instanceID: "mi-1",
            absence: Self.absence(120, attached: false),
            agentOnline: true
        )
        #expect(never.contains("did not open the session"))
        #expect(AgentLoss.restartReason(instanceID: "mi-1").contains("restarted"))
    }
}
