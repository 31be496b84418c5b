import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// The resume rule for peers that never acknowledge a duplicate (the official plugin): after a resume,
/// a resent message the peer already had must not be retransmitted forever.
@Suite("Reliable delivery: the resume rule with the official plugin")
struct ResumeRuleTests {
    /// Messages 0...4 sent, 0 and 1 acknowledged, then the channel drops and comes back.
    static func resumed(
        _ configuration: ReliableDeliveryConfiguration = .init()
    ) throws -> (
        ReliableDeliveryStateMachine, ManualClock
    ) {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        for seq in 0..<5 { _ = try sm.send(frame(Int64(seq)), now: clock.now) }
        _ = sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now)
        _ = sm.acknowledgementReceived(sequenceNumber: 1, now: clock.now)
        sm.connectionLost()
        clock.advance(by: .seconds(2))
        #expect(sm.connectionRestored(now: clock.now) == [frame(2), frame(3), frame(4)])
        return (sm, clock)
    }

    @Test("an acknowledgement for a later message marks the older resent ones delivered")
    func laterAcknowledgement() throws {
        // The plugin had 2 and 3 (no ack: duplicates), lacked 4 (acknowledged as soon as read).
        var (sm, clock) = try Self.resumed()
        clock.advance(by: .milliseconds(5))
        #expect(sm.acknowledgementReceived(sequenceNumber: 4, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.unacknowledgedCount == 0)
        #expect(sm.assumedDeliveredCount == 2)
        clock.advance(by: .seconds(5))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
    }

    @Test("no acknowledgement at all for the delay: everything resent was a duplicate")
    func silence() throws {
        var (sm, clock) = try Self.resumed()
        // Until the delay, the head is retransmitted as usual.
        clock.advance(by: .milliseconds(300))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(2), sequenceNumber: 2))
        clock.advance(by: .seconds(10))
        #expect(sm.retransmitTimerFired(now: clock.now) == .assumedDelivered(count: 3, windowOpened: false))
        #expect(sm.unacknowledgedCount == 0)
        // New messages after that are ordinary again.
        _ = try sm.send(frame(5), now: clock.now)
        clock.advance(by: .milliseconds(300))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(5), sequenceNumber: 5))
    }

    @Test("without a resume, a gap in acknowledgements is not filled (the rule needs the resend)")
    func noResumeNoRule() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        for seq in 0..<3 { _ = try sm.send(frame(Int64(seq)), now: clock.now) }
        clock.advance(by: .milliseconds(5))
        _ = sm.acknowledgementReceived(sequenceNumber: 2, now: clock.now)
        #expect(sm.unacknowledgedCount == 2)
        clock.advance(by: .seconds(20))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(0), sequenceNumber: 0))
        #expect(sm.assumedDeliveredCount == 0)
    }

    @Test("a Jumpgate peer (which re-acknowledges duplicates) is never assumed to have anything")
    func jumpgatePeer() throws {
        var configuration = ReliableDeliveryConfiguration.negotiated([.smuxV2])
        configuration.retransmitWhileConnected = true
        #expect(configuration.peerReacknowledgesDuplicates)
        var (sm, clock) = try Self.resumed(configuration)
        clock.advance(by: .milliseconds(5))
        _ = sm.acknowledgementReceived(sequenceNumber: 4, now: clock.now)
        #expect(sm.unacknowledgedCount == 2)
        clock.advance(by: .seconds(20))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(2), sequenceNumber: 2))
        #expect(sm.assumedDeliveredCount == 0)
    }

    @Test("official settings: the peer is assumed not to re-acknowledge")
    func officialDefaults() {
        #expect(!ReliableDeliveryConfiguration().peerReacknowledgesDuplicates)
        #expect(!ReliableDeliveryConfiguration.negotiated([]).peerReacknowledgesDuplicates)
    }

    @Test("with an official peer the outgoing buffer holds 8 MiB at most (its 64 KiB downloads); 32 MiB otherwise")
    func outgoingLimitByPeer() {
        #expect(ReliableDeliveryConfiguration.negotiated([]).outgoingLimit.bytes == 8 << 20)
        #expect(ReliableDeliveryConfiguration.negotiated([.smuxV2]).outgoingLimit.bytes == 8 << 20)
        #expect(ReliableDeliveryConfiguration.negotiated(.all).outgoingLimit.bytes == 32 << 20)
    }
}
