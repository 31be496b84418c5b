import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// The session's one timer, driven by the deadlines the state machines return and by the event loop's
/// clock (here the EmbeddedEventLoop's virtual time): no polling, and each deadline honoured.
@Suite("Port session timer")
struct PortSessionTimerTests {
    @Test("an idle session, on the fast path and with official peers, has no timer set")
    func idleSessionSetsNoTimer() throws {
        for extensions in [JumpgateExtensions.all, []] {
            let pair = try BackToBack(agentExtensions: extensions)
            try pair.settle()
            try PortSessionBackToBackTests.roundTrip(pair, bytes: 50_000)
            try pair.settle()
            // A timer set for a deadline that moved later may fire once more; after that, an hour of idle
            // time wakes neither side (the old 20 ms poll fired 180,000 times).
            pair.loop.advanceTime(by: .seconds(2))
            let firings = (pair.client.timerFirings, pair.agent.timerFirings)
            pair.loop.advanceTime(by: .hours(1))
            #expect(pair.client.timerFirings == firings.0, "the idle client wakes up (extensions \(extensions))")
            #expect(pair.agent.timerFirings == firings.1, "the idle agent wakes up (extensions \(extensions))")
            #expect(pair.client.timerDeadline == nil && pair.agent.timerDeadline == nil)
        }
    }

    @Test("with official peers a lost message is resent at its deadline, by the event loop's clock")
    func lostMessageResentAtDeadline() throws {
        let pair = try BackToBack(agentExtensions: [])
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        try local.send(.pattern(900, seed: 12))
        var dropped = 0
        try pair.pump { side, frame in
            guard side == .client, SSMMessage.peekPayloadType(frame) == .output, dropped == 0 else { return [frame] }
            dropped += 1
            return []
        }
        #expect(dropped == 1)
        try target.collect()
        #expect(target.received.readableBytes == 0)
        let sentAt = pair.loop.now
        let first = try #require(
            pair.client.timerDeadline,
            "a message waits for its acknowledgement, with no timer"
        )
        // Not before the deadline the session set, nor before the minimum resend interval (100 ms)...
        #expect(first - sentAt > .milliseconds(100))
        pair.loop.advanceTime(to: first - .nanoseconds(1))
        try pair.pump()
        try target.collect()
        #expect(target.received.readableBytes == 0, "resent before its deadline")
        // ...and at a deadline the session set (a deadline may move later as acknowledgements update the
        // RTO: the timer then finds nothing due and re-arms), within the 1 s maximum timeout.
        var firings = 0
        while target.received.readableBytes == 0, firings < 10, let deadline = pair.client.timerDeadline {
            pair.loop.advanceTime(to: deadline)
            try pair.pump()
            try target.collect()
            firings += 1
        }
        #expect(target.received == .pattern(900, seed: 12), "not resent at its deadline")
        #expect(pair.loop.now - sentAt <= .seconds(1), "resent later than the maximum timeout")
        try pair.settle()
        // A timer set for a deadline that moved fires once, finds nothing due and is not set again.
        pair.loop.advanceTime(by: .seconds(1))
        #expect(pair.client.timerDeadline == nil, "acknowledged, yet the timer stays set")
    }

    @Test("an agent whose handshake request is never answered fails at the handshake deadline")
    func handshakeTimeout() throws {
        let pair = try BackToBack()
        try pair.pump { side, frame in side == .agent ? [] : [frame] }
        // The request is resent meanwhile (official settings until the handshake ends); the handshake's
        // own deadline is 15 s after it started, at the loop's time zero.
        pair.loop.advanceTime(to: .uptimeNanoseconds(0) + .seconds(15) - .milliseconds(1))
        #expect(pair.agentEvents.ended == nil)
        pair.loop.advanceTime(by: .milliseconds(1))
        #expect(pair.agentEvents.ended?.reason == AgentHandshakeStateMachine.timeoutMessage)
    }
}
