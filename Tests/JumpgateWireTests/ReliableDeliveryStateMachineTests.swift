import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// Builds stream messages whose frames are recognisable by sequence number.
/// The receive time for tests where the acknowledgement timer plays no part.
let anyTime = NIODeadline.uptimeNanoseconds(0)

func streamMessage(_ sequence: Int64, payloadType: PayloadType = .output, bytes: Int = 10) -> SSMMessage {
    SSMMessage(
        messageType: .outputStreamData,
        createdDate: 1,
        sequenceNumber: sequence,
        messageID: MessageID(high: UInt64(sequence), low: 0x8000_0000_0000_0000),
        payloadType: payloadType,
        payload: ByteBuffer(repeating: UInt8(truncatingIfNeeded: sequence), count: bytes)
    )
}

func frame(_ sequence: Int64, bytes: Int = 10) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeSSMMessage(streamMessage(sequence, bytes: bytes))
    return buffer
}

@Suite("Reliable delivery state machine")
struct ReliableDeliveryStateMachineTests {
    @Test("sends number messages 0, 1, 2 and keep them until acknowledged")
    func sequencingAndAcks() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        for seq in 0..<3 {
            #expect(sm.nextSequenceNumber == Int64(seq))
            #expect(try sm.send(frame(Int64(seq)), now: clock.now) == .write(frame(Int64(seq))))
        }
        #expect(sm.unacknowledgedCount == 3)
        clock.advance(by: .milliseconds(40))
        #expect(sm.acknowledgementReceived(sequenceNumber: 1, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.acknowledgementReceived(sequenceNumber: 1, now: clock.now) == .unknown)
        #expect(sm.acknowledgementReceived(sequenceNumber: 7, now: clock.now) == .unknown)
        #expect(sm.unacknowledgedCount == 2)
        #expect(sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.acknowledgementReceived(sequenceNumber: 2, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.unacknowledgedCount == 0)
        #expect(sm.unacknowledgedBytes == 0)
    }

    @Test("RTO follows SRTT/RTTVAR with the 10 ms floor")
    func rtoEstimation() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        #expect(sm.retransmissionTimeout == .milliseconds(200))
        _ = try sm.send(frame(0), now: clock.now)
        clock.advance(by: .milliseconds(20))
        _ = sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now)
        // RTTVAR = 3/4*0 + 1/4*|100-20| = 20 ms; SRTT = 7/8*100 + 1/8*20 = 90 ms; RTO = 90 + max(10, 80) = 170 ms.
        #expect(sm.roundTripTimeVariation == .milliseconds(20))
        #expect(sm.smoothedRoundTripTime == .milliseconds(90))
        #expect(sm.retransmissionTimeout == .milliseconds(170))
        // Many identical fast samples: RTTVAR shrinks and the 10 ms granularity floor takes over.
        for seq in 1...200 {
            _ = try sm.send(frame(Int64(seq)), now: clock.now)
            clock.advance(by: .milliseconds(1))
            _ = sm.acknowledgementReceived(sequenceNumber: Int64(seq), now: clock.now)
        }
        #expect(sm.retransmissionTimeout.nanoseconds >= TimeAmount.milliseconds(11).nanoseconds - 1000)
        #expect(sm.retransmissionTimeout < .milliseconds(12))
    }

    @Test("RTO grows with slow samples and is capped at 1 s")
    func rtoCap() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        var previous = sm.retransmissionTimeout
        for seq in 0..<6 {
            _ = try sm.send(frame(Int64(seq)), now: clock.now)
            clock.advance(by: .seconds(3))
            _ = sm.acknowledgementReceived(sequenceNumber: Int64(seq), now: clock.now)
            #expect(sm.retransmissionTimeout >= previous)
            previous = sm.retransmissionTimeout
        }
        #expect(sm.retransmissionTimeout == .seconds(1))
    }

    @Test("only the head is retransmitted, one RTO after its last send (correct LastSentTime)")
    func headOnlyRetransmission() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        _ = try sm.send(frame(0), now: clock.now)
        _ = try sm.send(frame(1), now: clock.now)
        clock.advance(by: .milliseconds(100))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
        clock.advance(by: .milliseconds(101))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(0), sequenceNumber: 0))
        // The reference plugin would resend again on the very next 100 ms tick; we wait a full RTO.
        clock.advance(by: .milliseconds(100))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
        clock.advance(by: .milliseconds(101))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(0), sequenceNumber: 0))
        _ = sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now)
        clock.advance(by: .seconds(2))
        #expect(sm.retransmitTimerFired(now: clock.now) == .resend(frame(1), sequenceNumber: 1))
    }

    @Test("the resend limit ends the session instead of retrying forever")
    func resendLimit() throws {
        var configuration = ReliableDeliveryConfiguration()
        configuration.maximumResendAttempts = 3
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        _ = try sm.send(frame(0), now: clock.now)
        var actions: [ReliableDeliveryStateMachine.RetransmitAction] = []
        for _ in 0..<5 {
            clock.advance(by: .seconds(2))
            actions.append(sm.retransmitTimerFired(now: clock.now))
        }
        #expect(
            actions == [
                .resend(frame(0), sequenceNumber: 0), .resend(frame(0), sequenceNumber: 0),
                .resend(frame(0), sequenceNumber: 0), .giveUp(sequenceNumber: 0), .giveUp(sequenceNumber: 0),
            ]
        )
    }

    @Test("the outgoing buffer is bounded by count and by bytes, and an ack reopens it")
    func outgoingLimits() throws {
        var configuration = ReliableDeliveryConfiguration()
        configuration.outgoingLimit = MessageBufferLimit(messages: 3, bytes: 1 << 20)
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        for seq in 0..<3 { _ = try sm.send(frame(Int64(seq)), now: clock.now) }
        #expect(!sm.canSend)
        #expect(throws: WireError.self) { try sm.send(frame(3), now: clock.now) }
        #expect(sm.nextSequenceNumber == 3)
        clock.advance(by: .milliseconds(5))
        #expect(sm.acknowledgementReceived(sequenceNumber: 2, now: clock.now) == .acknowledged(windowOpened: true))

        configuration.outgoingLimit = MessageBufferLimit(messages: 1000, bytes: 1000)
        var bytesLimited = ReliableDeliveryStateMachine(configuration: configuration)
        _ = try bytesLimited.send(frame(0, bytes: 600), now: clock.now)
        #expect(bytesLimited.canSend)
        _ = try bytesLimited.send(frame(1, bytes: 600), now: clock.now)
        #expect(!bytesLimited.canSend)
        #expect(bytesLimited.unacknowledgedBytes == 2 * (120 + 600))
    }

    @Test("a full data window still takes control messages (a stream's FIN) up to the reserve, then refuses")
    func controlReserve() throws {
        var configuration = ReliableDeliveryConfiguration()
        configuration.outgoingLimit = MessageBufferLimit(messages: 3, bytes: 1 << 20)
        configuration.controlReserve = MessageBufferLimit(messages: 2, bytes: 1 << 20)
        let clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        for seq in 0..<3 { _ = try sm.send(frame(Int64(seq)), now: clock.now) }
        #expect(!sm.canSend && sm.canSendControl)
        #expect(throws: WireError.self) { try sm.send(frame(3), now: clock.now) }
        #expect(try sm.send(frame(3), now: clock.now, isControl: true) == .write(frame(3)))
        #expect(try sm.send(frame(4), now: clock.now, isControl: true) == .write(frame(4)))
        #expect(!sm.canSendControl)
        #expect(throws: WireError.self) { try sm.send(frame(5), now: clock.now, isControl: true) }
        #expect(sm.nextSequenceNumber == 5)
        // Acknowledging control messages does not reopen the data window until below its own bound.
        #expect(sm.acknowledgementReceived(sequenceNumber: 4, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(!sm.canSend && sm.canSendControl)
        #expect(sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.acknowledgementReceived(sequenceNumber: 1, now: clock.now) == .acknowledged(windowOpened: true))
        #expect(sm.canSend)

        // The byte bound works the same way.
        configuration.outgoingLimit = MessageBufferLimit(messages: 100, bytes: 500)
        configuration.controlReserve = MessageBufferLimit(messages: 100, bytes: 200)
        var bytes = ReliableDeliveryStateMachine(configuration: configuration)
        _ = try bytes.send(frame(0, bytes: 400), now: clock.now)
        #expect(!bytes.canSend && bytes.canSendControl)
        _ = try bytes.send(frame(1, bytes: 100), now: clock.now, isControl: true)
        #expect(!bytes.canSendControl)
    }

    @Test("resume after reconnect: held and unacknowledged frames are resent in order, numbering continues")
    func resumeAfterReconnect() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        _ = try sm.send(frame(0), now: clock.now)
        _ = try sm.send(frame(1), now: clock.now)
        _ = sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now)
        sm.connectionLost()
        #expect(try sm.send(frame(2), now: clock.now) == .hold)
        clock.advance(by: .seconds(5))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)  // nothing is sent while down
        #expect(sm.connectionRestored(now: clock.now) == [frame(1), frame(2)])
        #expect(sm.nextSequenceNumber == 3)
        #expect(try sm.send(frame(3), now: clock.now) == .write(frame(3)))
    }

    @Test("pause_publication holds new messages and stops retransmission; start_publication sends the backlog")
    func pauseAndResume() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine()
        _ = try sm.send(frame(0), now: clock.now)
        sm.publicationPaused()
        #expect(try sm.send(frame(1), now: clock.now) == .hold)
        clock.advance(by: .seconds(3))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
        #expect(sm.publicationResumed(now: clock.now) == [frame(1)])
        #expect(sm.publicationResumed(now: clock.now) == [])
    }

    @Test("fast path: no timer retransmission while connected, resend only after reconnect")
    func noTimerRetransmit() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: .negotiated([.noTimerRetransmit]))
        _ = try sm.send(frame(0), now: clock.now)
        clock.advance(by: .seconds(10))
        #expect(sm.retransmitTimerFired(now: clock.now) == .none)
        sm.connectionLost()
        #expect(sm.connectionRestored(now: clock.now) == [frame(0)])
    }

    @Test("fast path: start_publication (the peer's channel came back) resends everything unacknowledged")
    func fastPathStartPublicationResends() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: .negotiated([.noTimerRetransmit]))
        _ = try sm.send(frame(0), now: clock.now)
        _ = try sm.send(frame(1), now: clock.now)
        _ = try sm.send(frame(2), now: clock.now)
        #expect(sm.acknowledgementReceived(sequenceNumber: 0, now: clock.now) == .acknowledged(windowOpened: false))
        // The relay lost 1 and 2 on the way to the peer's old connection: without a timer, only this resends.
        clock.advance(by: .seconds(1))
        #expect(sm.publicationResumed(now: clock.now) == [frame(1), frame(2)])
        // Paused meanwhile: held messages go too, and the pause ends.
        sm.publicationPaused()
        #expect(try sm.send(frame(3), now: clock.now) == .hold)
        #expect(sm.publicationResumed(now: clock.now) == [frame(1), frame(2), frame(3)])
        #expect(try sm.send(frame(4), now: clock.now) == .write(frame(4)))
    }

    @Test("a pause ends with the data channel it came on: a new channel resends even if the old one paused")
    func pauseEndsWithTheChannel() throws {
        let clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: .negotiated([.noTimerRetransmit]))
        _ = try sm.send(frame(0), now: clock.now)
        sm.publicationPaused()
        #expect(try sm.send(frame(1), now: clock.now) == .hold)
        sm.connectionLost()
        #expect(sm.connectionRestored(now: clock.now) == [frame(0), frame(1)])
        #expect(try sm.send(frame(2), now: clock.now) == .write(frame(2)))
    }

    @Test("receiver: in order delivers and acks, ahead of order buffers and acks, duplicates are re-acked")
    func receiverOrdering() {
        var sm = ReliableDeliveryStateMachine()
        let m0 = streamMessage(0)
        let m1 = streamMessage(1)
        let m2 = streamMessage(2)
        let m3 = streamMessage(3)
        func ack(_ m: SSMMessage) -> ReliableDeliveryStateMachine.Acknowledgement {
            .acknowledge(m.messageType, m.messageID, sequenceNumber: m.sequenceNumber)
        }
        #expect(
            sm.streamMessageReceived(m0, isReady: true, now: anyTime)
                == .deliver(acknowledgement: ack(m0))
        )
        #expect(sm.nextBufferedMessage(now: anyTime) == nil)
        #expect(
            sm.streamMessageReceived(m2, isReady: true, now: anyTime)
                == .buffered(acknowledgement: ack(m2))
        )
        #expect(
            sm.streamMessageReceived(m3, isReady: true, now: anyTime)
                == .buffered(acknowledgement: ack(m3))
        )
        #expect(
            sm.streamMessageReceived(m3, isReady: true, now: anyTime)
                == .buffered(acknowledgement: ack(m3))
        )  // lost ack, resent
        #expect(sm.bufferedIncomingCount == 2)
        #expect(
            sm.streamMessageReceived(m1, isReady: true, now: anyTime)
                == .deliver(acknowledgement: ack(m1))
        )
        #expect(sm.nextBufferedMessage(now: anyTime)?.0 == m2)
        #expect(sm.nextBufferedMessage(now: anyTime)?.0 == m3)
        #expect(sm.nextBufferedMessage(now: anyTime) == nil)
        #expect(sm.expectedSequenceNumber == 4)
        #expect(
            sm.streamMessageReceived(m1, isReady: true, now: anyTime)
                == .duplicate(acknowledgement: ack(m1))
        )
    }

    @Test("receiver like the official plugin: duplicates are not re-acknowledged")
    func noReacknowledgement() {
        var configuration = ReliableDeliveryConfiguration()
        configuration.reacknowledgeDuplicates = false
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        _ = sm.streamMessageReceived(streamMessage(0), isReady: true, now: anyTime)
        #expect(
            sm.streamMessageReceived(streamMessage(0), isReady: true, now: anyTime)
                == .duplicate(acknowledgement: .none)
        )
    }

    @Test("a receiver that is not ready withholds the ack (backpressure), except for handshake messages")
    func notReady() {
        var sm = ReliableDeliveryStateMachine()
        let handshake = streamMessage(0, payloadType: .handshakeRequest)
        #expect(
            sm.streamMessageReceived(handshake, isReady: false, now: anyTime)
                == .deliver(
                    acknowledgement: .acknowledge(handshake.messageType, handshake.messageID, sequenceNumber: 0)
                )
        )
        #expect(sm.streamMessageReceived(streamMessage(1), isReady: false, now: anyTime) == .dropped)
        #expect(sm.expectedSequenceNumber == 1)
    }

    @Test("the out-of-order buffer is bounded by count and bytes")
    func incomingLimits() {
        var configuration = ReliableDeliveryConfiguration()
        configuration.incomingLimit = MessageBufferLimit(messages: 2, bytes: 25)
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        #expect(sm.streamMessageReceived(streamMessage(5), isReady: true, now: anyTime) != .dropped)
        #expect(sm.streamMessageReceived(streamMessage(6), isReady: true, now: anyTime) != .dropped)
        #expect(sm.streamMessageReceived(streamMessage(7), isReady: true, now: anyTime) == .dropped)  // count
        var bytes = ReliableDeliveryStateMachine(configuration: configuration)
        #expect(
            bytes.streamMessageReceived(streamMessage(5, bytes: 20), isReady: true, now: anyTime)
                != .dropped
        )
        #expect(
            bytes.streamMessageReceived(streamMessage(6, bytes: 20), isReady: true, now: anyTime)
                == .dropped
        )  // bytes
    }

    @Test("cumulative acknowledgement every N messages or on the timer")
    func cumulativeReceiver() {
        var configuration = ReliableDeliveryConfiguration()
        configuration.acknowledgementMode = .cumulative(everyMessages: 3, interval: .milliseconds(20))
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: configuration)
        func receive(_ sequence: Int64) -> ReliableDeliveryStateMachine.IncomingAction {
            sm.streamMessageReceived(streamMessage(sequence), isReady: true, now: clock.now)
        }
        #expect(receive(0) == .deliver(acknowledgement: .none))
        #expect(receive(1) == .deliver(acknowledgement: .none))
        #expect(receive(2) == .deliver(acknowledgement: .cumulative(upTo: 2)))
        #expect(receive(3) == .deliver(acknowledgement: .none))
        // The count's acknowledgement moved the timer on: the interval after it.
        clock.advance(by: .milliseconds(19))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .none)
        clock.advance(by: .milliseconds(1))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .cumulative(upTo: 3))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .none)
        #expect(receive(5) == .buffered(acknowledgement: .none))
        #expect(receive(4) == .deliver(acknowledgement: .none))
        // Only 4 and 5 were delivered since the timer's acknowledgement.
        #expect(sm.nextBufferedMessage(now: clock.now)?.1 == ReliableDeliveryStateMachine.Acknowledgement.none)
        #expect(receive(6) == .deliver(acknowledgement: .cumulative(upTo: 6)))
        clock.advance(by: .milliseconds(5))
        #expect(receive(7) == .deliver(acknowledgement: .none))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .none)  // less than the interval since the last
        clock.advance(by: .milliseconds(20))
        #expect(sm.acknowledgementTimerFired(now: clock.now) == .cumulative(upTo: 7))
        // A duplicate after a reconnect is answered with the current cumulative position.
        #expect(receive(2) == .duplicate(acknowledgement: .cumulative(upTo: 7)))
    }

    @Test("cumulative acknowledgement on the sender removes everything up to it")
    func cumulativeSender() throws {
        var clock = ManualClock()
        var sm = ReliableDeliveryStateMachine(configuration: .negotiated([.cumulativeAck, .noTimerRetransmit]))
        for seq in 0..<5 { _ = try sm.send(frame(Int64(seq)), now: clock.now) }
        clock.advance(by: .milliseconds(3))
        #expect(sm.cumulativeAcknowledgementReceived(upTo: 2, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.unacknowledgedCount == 2)
        #expect(sm.cumulativeAcknowledgementReceived(upTo: 2, now: clock.now) == .unknown)
        #expect(sm.cumulativeAcknowledgementReceived(upTo: 99, now: clock.now) == .acknowledged(windowOpened: false))
        #expect(sm.unacknowledgedCount == 0)
        sm.connectionLost()
        #expect(sm.connectionRestored(now: clock.now).isEmpty)
    }

    @Test(
        "loss and reordering end to end: two machines over a lossy, reordering link deliver everything once, in order"
    )
    func lossyLinkSimulation() throws {
        var rng = SplitMix64(seed: 42)
        var clock = ManualClock()
        var sender = ReliableDeliveryStateMachine()
        var receiver = ReliableDeliveryStateMachine()
        var inFlight: [(due: NIODeadline, frame: ByteBuffer)] = []
        var acksInFlight: [(due: NIODeadline, sequence: Int64)] = []
        var delivered: [Int64] = []
        let total: Int64 = 300
        var iterations = 0
        while delivered.count < total, iterations < 200_000 {
            iterations += 1
            while sender.canSend, sender.nextSequenceNumber < total {
                if case .write(let f) = try sender.send(frame(sender.nextSequenceNumber), now: clock.now),
                    rng.next() % 10 != 0
                {
                    inFlight.append((clock.now + .milliseconds(Int64(rng.next() % 30)), f))
                }
            }
            clock.advance(by: .milliseconds(5))
            if case .resend(let f, _) = sender.retransmitTimerFired(now: clock.now), rng.next() % 10 != 0 {
                inFlight.append((clock.now + .milliseconds(Int64(rng.next() % 30)), f))
            }
            let due = inFlight.filter { $0.due <= clock.now }
            inFlight.removeAll { $0.due <= clock.now }
            for (_, f) in due.shuffled(using: &rng) {
                let message = try SSMMessage(decoding: f)
                var acks: [ReliableDeliveryStateMachine.Acknowledgement] = []
                switch receiver.streamMessageReceived(message, isReady: true, now: anyTime) {
                case .deliver(let a):
                    delivered.append(message.sequenceNumber)
                    acks.append(a)
                    while let (next, _) = receiver.nextBufferedMessage(now: anyTime) {
                        delivered.append(next.sequenceNumber)
                    }
                case .buffered(let a), .duplicate(let a): acks.append(a)
                case .dropped: break
                }
                for case .acknowledge(_, _, let seq) in acks where rng.next() % 10 != 0 {
                    acksInFlight.append((clock.now + .milliseconds(Int64(rng.next() % 30)), seq))
                }
            }
            let dueAcks = acksInFlight.filter { $0.due <= clock.now }
            acksInFlight.removeAll { $0.due <= clock.now }
            for (_, seq) in dueAcks { _ = sender.acknowledgementReceived(sequenceNumber: seq, now: clock.now) }
        }
        #expect(delivered == Array(0..<total))
    }
}

/// A small seeded generator so simulations are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
