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
        _ = perMessage.streamMessageReceived(streamMessage(0), isReady: true, now: clock.now)
        #expect(
            perMessage.acknowledgementToSendAhead(now: clock.now, withData: true) == .none,
            "official peers: one ack each, at once"
        )

        var sm = Self.cumulative(every: 4)
        #expect(sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .none, "nothing delivered")
        _ = sm.streamMessageReceived(streamMessage(0), isReady: true, now: clock.now)
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .cumulative(upTo: 0),
            "the first, with no ack before it"
        )
        #expect(sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .none, "taken: nothing waits")
        #expect(sm.acknowledgementDeadline == nil)

        _ = sm.streamMessageReceived(streamMessage(1), isReady: true, now: clock.now)
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .none,
            "one of four, and no time passed"
        )
        #expect(sm.acknowledgementDeadline == clock.now + .milliseconds(20), "the timer counts from the ack that rode")
        _ = sm.streamMessageReceived(streamMessage(2), isReady: true, now: clock.now)
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now, withData: false) == .none,
            "a control message (a window update) does not take it at half the count"
        )
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .cumulative(upTo: 2),
            "two of four: half the count"
        )

        _ = sm.streamMessageReceived(streamMessage(3), isReady: true, now: clock.now)
        clock.advance(by: .milliseconds(9))
        #expect(sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .none)
        clock.advance(by: .milliseconds(1))
        #expect(
            sm.acknowledgementToSendAhead(now: clock.now, withData: false) == .cumulative(upTo: 3),
            "half the interval: on any message"
        )

        // The count still acknowledges on its own when nothing is sent (a bulk transfer one way).
        var deliveries: [ReliableDeliveryStateMachine.IncomingAction] = []
        for sequence in 4...7 {
            deliveries.append(sm.streamMessageReceived(streamMessage(Int64(sequence)), isReady: true, now: clock.now))
        }
        #expect(deliveries.last == .deliver(acknowledgement: .cumulative(upTo: 7)))
        #expect(sm.acknowledgementToSendAhead(now: clock.now, withData: true) == .none)
    }

    /// A pair of session machines whose timers fire when due, as on an event loop, counting the
    /// acknowledgements each side sent ahead of a message and alone.
    struct Exchanges {
        var pair: MachinePair
        var riding: (client: Int, agent: Int) = (0, 0)
        /// Sent alone while the exchange went on, and during pauses (`wait(_:pause:)`).
        var alone: (client: Int, agent: Int) = (0, 0)
        var aloneInPauses: (client: Int, agent: Int) = (0, 0)
        var inPause = false

        init(_ pair: MachinePair) { self.pair = pair }

        /// Delivers what `fromClient`'s side wrote to the other side; that side's own writes go back.
        mutating func deliver(_ frames: [ByteBuffer], fromClient: Bool) {
            var actions: [SessionStateMachine.Action] = []
            for bytes in frames {
                if fromClient {
                    self.pair.agent.frameReceived(
                        bytes,
                        withholdsOutput: false,
                        now: self.pair.clock.now,
                        into: &actions
                    )
                } else {
                    self.pair.client.frameReceived(
                        bytes,
                        withholdsOutput: false,
                        now: self.pair.clock.now,
                        into: &actions
                    )
                }
            }
            self.countAlone(actions, byClient: !fromClient)
            self.pair.take(actions, fromAgent: fromClient)
            self.pair.pump()
        }

        mutating func countAlone(_ actions: [SessionStateMachine.Action], byClient: Bool) {
            let acknowledgements = actions.filter {
                if case .write(let written) = $0 { SSMMessage.peekMessageType(written) == .acknowledge } else { false }
            }.count
            switch (self.inPause, byClient) {
            case (false, true): self.alone.client += acknowledgements
            case (false, false): self.alone.agent += acknowledgements
            case (true, true): self.aloneInPauses.client += acknowledgements
            case (true, false): self.aloneInPauses.agent += acknowledgements
            }
        }

        /// One message from a side, with the acknowledgement that rides ahead of it.
        mutating func send(_ text: String, fromClient: Bool) {
            let now = self.pair.clock.now
            let payload = ByteBuffer(string: text)
            func send(_ machine: inout SessionStateMachine) -> SessionStateMachine.SendResult {
                machine.sendStreamMessage(
                    payloadType: .output,
                    payloadLength: payload.readableBytes,
                    isControl: false,
                    now: now
                ) { $0.writeImmutableBuffer(payload) }
            }
            let result = fromClient ? send(&self.pair.client) : send(&self.pair.agent)
            guard case .write(let frame, _, let acknowledgement) = result else {
                Issue.record("not written: \(result)")
                return
            }
            if let acknowledgement {
                #expect(SSMMessage.peekMessageType(acknowledgement) == .acknowledge)
                if fromClient { self.riding.client += 1 } else { self.riding.agent += 1 }
            }
            self.deliver([acknowledgement, frame].compactMap { $0 }, fromClient: fromClient)
            self.runDueTimers()
        }

        /// Moves time on by `amount`, firing each timer at its deadline on the way; `pause`: what those
        /// timers send counts as sent in a pause.
        mutating func wait(_ amount: TimeAmount, pause: Bool = false) {
            self.inPause = pause
            defer { self.inPause = false }
            let end = self.pair.clock.now + amount
            while true {
                let deadlines = [
                    self.pair.client.deadline(mayResend: true), self.pair.agent.deadline(mayResend: true),
                ]
                guard let next = deadlines.compactMap({ $0 }).min(), next <= end else { break }
                if next > self.pair.clock.now { self.pair.clock.advance(by: next - self.pair.clock.now) }
                self.runDueTimers()
            }
            self.pair.clock.advance(by: end - self.pair.clock.now)
        }

        /// What an event loop does before the next read: every timer already due fires.
        mutating func runDueTimers() {
            for byClient in [true, false] {
                let now = self.pair.clock.now
                guard
                    let deadline = byClient
                        ? self.pair.client.deadline(mayResend: true) : self.pair.agent.deadline(mayResend: true),
                    deadline <= now
                else { continue }
                var actions: [SessionStateMachine.Action] = []
                if byClient {
                    self.pair.client.timerFired(now: now, mayResend: true, into: &actions)
                } else {
                    self.pair.agent.timerFired(now: now, mayResend: true, into: &actions)
                }
                self.countAlone(actions, byClient: byClient)
                self.pair.take(actions, fromAgent: !byClient)
                self.pair.pump()
            }
        }
    }

    @Test(
        "request and reply, with pauses: no acknowledgement goes alone while they go on; in a pause, at most one per side"
    )
    func requestReply() throws {
        var pair = MachinePair()
        pair.establish()
        pair.clientEvents.removeAll()
        pair.agentEvents.removeAll()
        var exchanges = Exchanges(pair)
        exchanges.wait(.seconds(1), pause: true)
        exchanges.aloneInPauses = (0, 0)
        let rounds = 200
        let pauses = Set([20, 70, 71, 150])
        for round in 0..<rounds {
            // A pause before the request: think time, or a pool's idle connection.
            if pauses.contains(round) {
                exchanges.wait(.seconds(1), pause: true)
            } else {
                exchanges.wait(.microseconds(100))
            }
            exchanges.send("q\(round)", fromClient: true)
            exchanges.wait(.microseconds(50))
            exchanges.send("r\(round)", fromClient: false)
        }
        #expect(exchanges.alone.agent == 0, "the answering side acknowledged alone while the exchange went on")
        #expect(exchanges.alone.client == 0, "the asking side acknowledged alone while the exchange went on")
        // The last deliveries before a pause are acknowledged on the timer, within it.
        #expect((1...pauses.count).contains(exchanges.aloneInPauses.client))
        #expect(exchanges.aloneInPauses.agent <= pauses.count)
        // Every 16 deliveries (half of the negotiated 32) or after a pause, in each direction.
        #expect(exchanges.riding.agent >= rounds / 16)
        #expect(exchanges.riding.client >= rounds / 16)
        pair = exchanges.pair
        #expect(pair.agent.reliability.unacknowledgedCount <= 16)
        #expect(pair.client.reliability.unacknowledgedCount <= 16)
        #expect(pair.clientEvents.compactMap(\.streamText) == (0..<rounds).map { "r\($0)" })
        #expect(pair.agentEvents.compactMap(\.streamText) == (0..<rounds).map { "q\($0)" })
    }

    @Test("with the official peers' per-message acknowledgements nothing rides: each goes at once")
    func officialPeers() throws {
        var pair = MachinePair(agentOffers: [])
        pair.establish()
        var exchanges = Exchanges(pair)
        for round in 0..<20 {
            exchanges.send("q\(round)", fromClient: true)
            exchanges.send("r\(round)", fromClient: false)
        }
        #expect(exchanges.riding.client == 0 && exchanges.riding.agent == 0)
        #expect(exchanges.alone.client == 20 && exchanges.alone.agent == 20)
        #expect(exchanges.pair.agent.reliability.unacknowledgedCount == 0)
        #expect(exchanges.pair.client.reliability.unacknowledgedCount == 0)
    }
}
