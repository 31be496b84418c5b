import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// A due cumulative acknowledgement rides ahead of the next message this end sends, instead of going
/// alone (its own write, wake-up of the peer and relay through the gateway).
@Suite("Acknowledgements ahead of sent messages")
struct AcknowledgementAheadTests {
    private static func cumulative(every: Int = 4) -> ReliableDeliveryStateMachine {
        var configuration = ReliableDeliveryConfiguration()
        configuration.acknowledgementMode = .cumulative(everyMessages: every, interval: .milliseconds(20))
        return ReliableDeliveryStateMachine(configuration: configuration)
    }

    @Test("due at half the count, or at half the interval with any delivery waiting; never per message")
    func whenDue() throws {
        var clock = ManualClock()
        var perMessage = ReliableDeliveryStateMachine()
        _ = perMessage.streamMessageReceived(streamMessage(0), isReady: true)
        #expect(perMessage.acknowledgementToSendAhead(now: clock.now) == .none, "official peers: one ack each, at once")

        var sm = Self.cumulative(every: 4)
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .none, "nothing delivered")
        _ = sm.streamMessageReceived(streamMessage(0), isReady: true)
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now) == .cumulative(upTo: 0),
            "the first, with no ack before it"
        )
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .none, "taken: nothing waits")
        #expect(sm.acknowledgementDeadline == nil)

        _ = sm.streamMessageReceived(streamMessage(1), isReady: true)
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .none, "one of four, and no time passed")
        #expect(sm.acknowledgementDeadline == clock.now + .milliseconds(20), "the timer counts from the ack that rode")
        _ = sm.streamMessageReceived(streamMessage(2), isReady: true)
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .cumulative(upTo: 2), "two of four: half the count")

        _ = sm.streamMessageReceived(streamMessage(3), isReady: true)
        clock.advance(by: .milliseconds(9))
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .none)
        clock.advance(by: .milliseconds(1))
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .cumulative(upTo: 3), "half the interval")

        // The count still acknowledges on its own when nothing is sent (a bulk transfer one way).
        var deliveries: [ReliableDeliveryStateMachine.IncomingAction] = []
        for sequence in 4...7 {
            deliveries.append(sm.streamMessageReceived(streamMessage(Int64(sequence)), isReady: true))
        }
        #expect(deliveries.last == .deliver(acknowledgement: .cumulative(upTo: 7)))
        #expect(sm.acknowledgementToSendAhead(now: clock.now) == .none)
    }

    /// One request-reply exchange through a pair of session machines: the request's acknowledgement (if
    /// it rides) and the request reach `to`; whatever `to` writes on its own comes back. Returns how many
    /// acknowledgements rode and how many went alone.
    private static func exchange(
        _ pair: inout MachinePair,
        fromClient: Bool,
        _ text: String
    ) throws -> (riding: Int, alone: Int) {
        let result =
            fromClient
            ? pair.client.sendControl(.output, ByteBuffer(string: text), now: pair.clock.now)
            : pair.agent.sendControl(.output, ByteBuffer(string: text), now: pair.clock.now)
        guard case .write(let frame, _, let acknowledgement) = result else {
            Issue.record("not written: \(result)")
            return (0, 0)
        }
        if let acknowledgement {
            #expect(SSMMessage.peekMessageType(acknowledgement) == .acknowledge)
        }
        var actions: [SessionStateMachine.Action] = []
        for bytes in [acknowledgement, frame].compactMap({ $0 }) {
            if fromClient {
                pair.agent.frameReceived(bytes, withholdsOutput: false, now: pair.clock.now, into: &actions)
            } else {
                pair.client.frameReceived(bytes, withholdsOutput: false, now: pair.clock.now, into: &actions)
            }
        }
        let alone = actions.filter {
            if case .write(let written) = $0 { SSMMessage.peekMessageType(written) == .acknowledge } else { false }
        }
        pair.take(actions, fromAgent: fromClient)
        pair.pump()
        return (acknowledgement == nil ? 0 : 1, alone.count)
    }

    @Test("request and reply: each acknowledgement rides with a reply, none goes alone, and the timer is not due")
    func requestReply() throws {
        var pair = MachinePair()
        pair.establish()
        pair.clientEvents.removeAll()
        pair.agentEvents.removeAll()
        var riding = 0
        var alone = 0
        for round in 0..<200 {
            for fromClient in [true, false] {
                let counts = try Self.exchange(&pair, fromClient: fromClient, "\(fromClient ? "q" : "r")\(round)")
                riding += counts.riding
                alone += counts.alone
            }
        }
        #expect(alone == 0, "an acknowledgement went alone")
        // Every 16 deliveries (half of the negotiated 32), in each direction.
        #expect(riding >= 2 * (200 / 16))
        #expect(pair.agent.reliability.unacknowledgedCount <= 16)
        #expect(pair.client.reliability.unacknowledgedCount <= 16)
        #expect(pair.clientEvents.compactMap(\.streamText) == (0..<200).map { "r\($0)" })
        #expect(pair.agentEvents.compactMap(\.streamText) == (0..<200).map { "q\($0)" })
        for machine in [pair.agent, pair.client] {
            if let deadline = machine.deadline(mayResend: false) {
                #expect(deadline > pair.clock.now, "a timer acknowledgement is due at once")
            }
        }
    }

    @Test("with the official peers' per-message acknowledgements nothing rides: each goes at once")
    func officialPeers() throws {
        var pair = MachinePair(agentOffers: [])
        pair.establish()
        var riding = 0
        var alone = 0
        for round in 0..<20 {
            for fromClient in [true, false] {
                let counts = try Self.exchange(&pair, fromClient: fromClient, "m\(round)")
                riding += counts.riding
                alone += counts.alone
            }
        }
        #expect(riding == 0)
        #expect(alone == 40)
        #expect(pair.agent.reliability.unacknowledgedCount == 0)
        #expect(pair.client.reliability.unacknowledgedCount == 0)
    }
}
