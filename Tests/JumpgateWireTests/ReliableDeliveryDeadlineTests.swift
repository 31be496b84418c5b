import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// The deadlines the session handler schedules its one timer by: each is exactly when the matching
/// timer call first has something to do, and nil while it has nothing (an idle session wakes no one).
@Suite("Reliable delivery deadlines")
struct ReliableDeliveryDeadlineTests {
    @Test("the retransmit deadline is the head's last send plus one RTO, and none while nothing can be resent")
    func retransmitDeadline() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        #expect(sm.retransmitDeadline == nil, "nothing sent: nothing to wait for")
        _ = try sm.send(frame(0), now: clock.now)
        clock.advance(by: .milliseconds(50))
        _ = try sm.send(frame(1), now: clock.now)
        let due = try #require(sm.retransmitDeadline)
        #expect(due == clock.now - .milliseconds(50) + sm.retransmissionTimeout + .nanoseconds(1))
        #expect(sm.retransmitTimerFired(now: due - .nanoseconds(1)) == .none, "fired before its deadline")
        #expect(sm.retransmitTimerFired(now: due) == .resend(frame(0), sequenceNumber: 0))
        // The resend restarted the head's timeout.
        #expect(sm.retransmitDeadline == due + sm.retransmissionTimeout + .nanoseconds(1))
        // Paused publication or a dropped channel: no resend can happen, so no deadline.
        sm.publicationPaused()
        #expect(sm.retransmitDeadline == nil)
        _ = sm.publicationResumed(now: clock.now)
        sm.connectionLost()
        #expect(sm.retransmitDeadline == nil)
        _ = sm.connectionRestored(now: clock.now)
        _ = sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now)
        _ = sm.acknowledgementReceived(sequenceNumber: 1, now: clock.now)
        #expect(sm.retransmitDeadline == nil, "everything acknowledged")
    }

    @Test("however small the RTO gets, a resend waits at least the minimum resend interval")
    func minimumResendInterval() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        // Instant acknowledgements drive the RTO down to about the clock granularity.
        for seq in Int64(0)..<20 {
            _ = try sm.send(frame(seq), now: clock.now)
            _ = sm.acknowledgementReceived(sequenceNumber: seq, now: clock.now)
        }
        #expect(sm.retransmissionTimeout < .milliseconds(100))
        _ = try sm.send(frame(20), now: clock.now)
        #expect(sm.retransmitDeadline == clock.now + .milliseconds(100) + .nanoseconds(1))
        clock.advance(by: .milliseconds(100))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
        clock.advance(by: .nanoseconds(1))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(20), sequenceNumber: 20))
    }

    @Test("the fast path resends only on reconnect: no retransmit deadline while connected")
    func fastPathHasNoRetransmitDeadline() throws {
        let clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: .negotiated(.all))
        _ = try sm.send(frame(0), now: clock.now)
        #expect(sm.retransmitDeadline == nil)
    }

    @Test("after a resume to a peer that does not re-acknowledge duplicates, the deadline is the resume rule's")
    func resumeRuleDeadline() throws {
        var clock = ManualClock()
        var configuration = ReliableDeliveryConfiguration()
        configuration.retransmitWhileConnected = false
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        _ = try sm.send(frame(0), now: clock.now)
        sm.connectionLost()
        clock.advance(by: .seconds(1))
        #expect(sm.connectionRestored(now: clock.now) == [frame(0)])
        let due = try #require(sm.retransmitDeadline)
        #expect(due == clock.now + configuration.duplicateAssumptionDelay)
        #expect(sm.retransmitTimerFired(now: due - .nanoseconds(1)) == .none)
        #expect(sm.retransmitTimerFired(now: due) == .assumedDelivered(count: 1, windowOpened: false))
        #expect(sm.retransmitDeadline == nil)
    }

    @Test(
        "the acknowledgement deadline: none per message; cumulative, half the interval after the first waiting delivery and at least the interval after the last ack"
    )
    func acknowledgementDeadline() throws {
        var clock = ManualClock()
        var perMessage = ReliableDeliveryStateMachine()
        _ = perMessage.streamMessageReceived(streamMessage(0), isReady: true, now: clock.now)
        #expect(perMessage.acknowledgementDeadline == nil, "per-message acknowledgements go at once, not on a timer")

        var configuration = ReliableDeliveryConfiguration()
        configuration.acknowledgementMode = .cumulative(everyMessages: 3, interval: .milliseconds(20))
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        #expect(sm.acknowledgementDeadline == nil, "nothing delivered")
        _ = sm.streamMessageReceived(streamMessage(0), isReady: true, now: clock.now)
        #expect(sm.acknowledgementDeadline == clock.now + .milliseconds(10), "time for a reply to carry it")
        #expect(sm.acknowledgementTimerFired(now: clock.now + .milliseconds(9)) == .none)
        clock.advance(by: .milliseconds(10))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .cumulative(upTo: 0))
        #expect(sm.acknowledgementDeadline == nil)
        // Soon after an acknowledgement: the interval after it.
        clock.advance(by: .milliseconds(2))
        _ = sm.streamMessageReceived(streamMessage(1), isReady: true, now: clock.now)
        #expect(sm.acknowledgementDeadline == clock.now + .milliseconds(18))
        #expect(sm.acknowledgementTimerFired(now: clock.now + .milliseconds(17)) == .none)
        clock.advance(by: .milliseconds(18))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .cumulative(upTo: 1))
        // After a pause: not due at once (the reply may carry it), half the interval after the delivery.
        clock.advance(by: .seconds(1))
        _ = sm.streamMessageReceived(streamMessage(2), isReady: true, now: clock.now)
        #expect(sm.acknowledgementDeadline == clock.now + .milliseconds(10))
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now + .milliseconds(1), withData: true) == .cumulative(upTo: 2)
        )
        #expect(sm.acknowledgementDeadline == nil, "the reply took it")
        // Three deliveries acknowledge themselves: nothing is left for the timer.
        for seq in 3...5 { _ = sm.streamMessageReceived(streamMessage(Int64(seq)), isReady: true, now: clock.now) }
        #expect(sm.acknowledgementDeadline == nil)
    }
}
