import NIOCore

/// Sequencing, acknowledgement and retransmission of stream messages for one endpoint of a session
/// (spec §5), in both directions. Pure: time is passed in, frames are opaque encoded buffers, and every
/// decision comes back as an action for the channel handler to carry out.
///
/// Outgoing: the caller checks ``canSend``, encodes a message with ``nextSequenceNumber`` and hands the
/// frame to ``send(_:now:)``. The frame is kept until acknowledged; while the WebSocket is down or the
/// peer paused publication it is held and sent on ``connectionRestored(now:)`` / ``publicationResumed(now:)``.
///
/// Incoming: ``streamMessageReceived(_:isReady:)`` decides whether to deliver, buffer out of order,
/// re-acknowledge or drop; after a delivery, ``nextBufferedMessage()`` drains what became in order.
public struct ReliableDeliveryStateMachine: Sendable {
    public private(set) var configuration: ReliableDeliveryConfiguration

    // MARK: outgoing state

    private struct OutgoingEntry: Sendable {
        var frame: ByteBuffer
        var lastSentTime: NIODeadline
        var resendCount: Int
        var isSent: Bool
        var isAcknowledged: Bool
        /// Resent on the current data channel after a resume.
        var resentAfterResume = false
    }

    /// Unacknowledged frames; entry i has sequence number `outgoingHeadSequence + i`.
    private var outgoing = CircularBuffer<OutgoingEntry>(initialCapacity: 64)
    private var outgoingHeadSequence: Int64 = 0
    private var outgoingUnackedCount = 0
    private var outgoingUnackedBytes = 0
    public private(set) var nextSequenceNumber: Int64 = 0

    private var isConnected = true
    private var isPaused = false
    /// When the current data channel replaced a dropped one, and whether any acknowledgement came since.
    private var resumedAt: NIODeadline?
    private var acknowledgedSinceResume = false
    /// Messages treated as delivered by the resume rule (never acknowledged by a peer that had them).
    public private(set) var assumedDeliveredCount = 0

    /// Smoothed round-trip time, its variation and the retransmission timeout, in nanoseconds.
    public private(set) var smoothedRoundTripTime: TimeAmount
    public private(set) var roundTripTimeVariation: TimeAmount
    public private(set) var retransmissionTimeout: TimeAmount

    // MARK: incoming state

    public private(set) var expectedSequenceNumber: Int64 = 0
    private var outOfOrder: [Int64: SSMMessage] = [:]
    private var outOfOrderBytes = 0
    /// Payload bytes held out of order, waiting for a gap to fill (bounded by `incomingLimit`).
    public var outOfOrderByteCount: Int { self.outOfOrderBytes }
    public var outOfOrderMessageCount: Int { self.outOfOrder.count }
    /// Cumulative mode: deliveries since the last acknowledgement sent, when the first of them arrived, and
    /// when the last acknowledgement went (by count, by the timer or ahead of a sent message).
    private var unacknowledgedDeliveries = 0
    private var firstUnacknowledgedDelivery: NIODeadline?
    private var lastCumulativeAcknowledgement: NIODeadline?

    public init(configuration: ReliableDeliveryConfiguration = .init()) {
        self.configuration = configuration
        self.smoothedRoundTripTime = configuration.initialRoundTripTime
        self.roundTripTimeVariation = configuration.initialRoundTripTimeVariation
        self.retransmissionTimeout = configuration.initialRetransmissionTimeout
    }

    /// Switches to new settings (those negotiated in the handshake) keeping every sequence number,
    /// buffered message and RTT estimate: the handshake itself ran under the official settings.
    public mutating func reconfigure(_ configuration: ReliableDeliveryConfiguration) {
        self.configuration = configuration
    }

    // MARK: - Outgoing

    /// Whether another message fits in the outgoing buffer. When false, stop reading the local source
    /// until an acknowledgement opens the window (``AcknowledgementResult/windowOpened``).
    public var canSend: Bool {
        self.outgoingUnackedCount < self.configuration.outgoingLimit.messages
            && self.outgoingUnackedBytes < self.configuration.outgoingLimit.bytes
    }

    /// Messages sent (or held) and not yet acknowledged.
    public var unacknowledgedCount: Int { self.outgoingUnackedCount }
    public var unacknowledgedBytes: Int { self.outgoingUnackedBytes }

    public enum SendAction: Sendable, Equatable {
        /// Write this frame now.
        case write(ByteBuffer)
        /// Kept, but not sent: the channel is down or the peer paused publication.
        case hold
    }

    /// Whether a control message (see ``ReliableDeliveryConfiguration/controlReserve``) still fits.
    public var canSendControl: Bool {
        let limit = self.configuration.outgoingLimit
        let reserve = self.configuration.controlReserve
        return self.outgoingUnackedCount < limit.messages + reserve.messages
            && self.outgoingUnackedBytes < limit.bytes + reserve.bytes
    }

    /// Records a frame encoded with ``nextSequenceNumber``. Data (`isControl` false) needs ``canSend``;
    /// a control message may use the reserve above it (``canSendControl``). Throws when it does not fit.
    public mutating func send(
        _ frame: ByteBuffer,
        now: NIODeadline,
        isControl: Bool = false
    ) throws(WireError) -> SendAction {
        guard isControl ? self.canSendControl : self.canSend else {
            throw WireError(
                .bufferFull,
                "outgoing buffer is full (\(self.outgoingUnackedCount) messages, \(self.outgoingUnackedBytes) bytes)"
            )
        }
        let live = self.isConnected && !self.isPaused
        if self.outgoing.isEmpty { self.outgoingHeadSequence = self.nextSequenceNumber }
        self.outgoing.append(
            OutgoingEntry(frame: frame, lastSentTime: now, resendCount: 0, isSent: live, isAcknowledged: false)
        )
        self.outgoingUnackedCount += 1
        self.outgoingUnackedBytes += frame.readableBytes
        self.nextSequenceNumber += 1
        return live ? .write(frame) : .hold
    }

    public enum AcknowledgementResult: Sendable, Equatable {
        /// Removed; `windowOpened` is true if ``canSend`` went from false to true.
        case acknowledged(windowOpened: Bool)
        /// Not outstanding: a duplicate or stale acknowledgement. Ignore it.
        case unknown
    }

    /// A per-message `acknowledge` arrived (matched by sequence number only, as the official peers do).
    public mutating func acknowledgementReceived(sequenceNumber: Int64, now: NIODeadline) -> AcknowledgementResult {
        let index = sequenceNumber - self.outgoingHeadSequence
        guard index >= 0, index < Int64(self.outgoing.count),
            !self.outgoing[self.outgoing.index(self.outgoing.startIndex, offsetBy: Int(index))].isAcknowledged
        else { return .unknown }
        let wasBlocked = !self.canSend
        let position = self.outgoing.index(self.outgoing.startIndex, offsetBy: Int(index))
        self.sampleRoundTrip(self.outgoing[position], now: now)
        self.markAcknowledged(at: position)
        if self.resumedAt != nil, !self.configuration.peerReacknowledgesDuplicates {
            // The resume rule, part 1. Resent messages go out oldest first on one ordered channel, and the
            // peer acknowledges a message it lacked as soon as it reads it. So an acknowledgement for s
            // while older resent messages stay unacknowledged means the peer already had those: delivered.
            var earlier = self.outgoing.startIndex
            while earlier != position {
                if !self.outgoing[earlier].isAcknowledged, self.outgoing[earlier].resentAfterResume {
                    self.markAcknowledged(at: earlier)
                    self.assumedDeliveredCount += 1
                }
                earlier = self.outgoing.index(after: earlier)
            }
        }
        self.acknowledgedSinceResume = true
        self.popAcknowledgedHead()
        return .acknowledged(windowOpened: wasBlocked && self.canSend)
    }

    /// A cumulative acknowledgement: everything up to and including `sequenceNumber` arrived.
    public mutating func cumulativeAcknowledgementReceived(
        upTo sequenceNumber: Int64,
        now: NIODeadline
    ) -> AcknowledgementResult {
        // Overflow-checked: the number is the peer's (the session refuses what is out of range first).
        let (distance, overflow) = sequenceNumber.subtractingReportingOverflow(self.outgoingHeadSequence)
        guard !overflow else { return .unknown }
        let last = min(distance, Int64(self.outgoing.count) - 1)
        guard last >= 0 else { return .unknown }
        let wasBlocked = !self.canSend
        var newest: OutgoingEntry?
        var position = self.outgoing.startIndex
        for _ in 0...Int(last) {
            if !self.outgoing[position].isAcknowledged {
                newest = self.outgoing[position]
                self.markAcknowledged(at: position)
            }
            position = self.outgoing.index(after: position)
        }
        guard let newest else { return .unknown }
        self.sampleRoundTrip(newest, now: now)
        self.popAcknowledgedHead()
        return .acknowledged(windowOpened: wasBlocked && self.canSend)
    }

    private mutating func markAcknowledged(at position: CircularBuffer<OutgoingEntry>.Index) {
        self.outgoing[position].isAcknowledged = true
        self.outgoingUnackedCount -= 1
        self.outgoingUnackedBytes -= self.outgoing[position].frame.readableBytes
    }

    private mutating func popAcknowledgedHead() {
        while let head = self.outgoing.first, head.isAcknowledged {
            self.outgoing.removeFirst()
            self.outgoingHeadSequence += 1
        }
    }

    /// RTO estimation (spec §5.3), sampled from the last time the message was sent.
    private mutating func sampleRoundTrip(_ entry: OutgoingEntry, now: NIODeadline) {
        guard entry.isSent else { return }
        let sample = max(.zero, now - entry.lastSentTime).nanoseconds
        let srtt = self.smoothedRoundTripTime.nanoseconds
        let rttvar = self.roundTripTimeVariation.nanoseconds
        let newVariation = (3 * rttvar + abs(srtt - sample)) / 4
        let newSmoothed = (7 * srtt + sample) / 8
        self.roundTripTimeVariation = .nanoseconds(newVariation)
        self.smoothedRoundTripTime = .nanoseconds(newSmoothed)
        let candidate = newSmoothed + max(self.configuration.clockGranularity.nanoseconds, 4 * newVariation)
        self.retransmissionTimeout = .nanoseconds(
            min(self.configuration.maximumRetransmissionTimeout.nanoseconds, candidate)
        )
    }

    public enum RetransmitAction: Sendable, Equatable {
        case none
        /// Resend these identical bytes (the oldest unacknowledged message).
        case resend(ByteBuffer, sequenceNumber: Int64)
        /// The oldest message was resent ``ReliableDeliveryConfiguration/maximumResendAttempts`` times
        /// without an acknowledgement: end the session.
        case giveUp(sequenceNumber: Int64)
        /// The resume rule treated `count` resent messages as delivered (the peer had them and does not
        /// acknowledge duplicates).
        case assumedDelivered(count: Int, windowOpened: Bool)
    }

    /// The retransmission scheduler's tick: looks only at the head, as the official peers do, but keeps
    /// LastSentTime correct so a resend waits a full RTO.
    public mutating func retransmitTimerFired(now: NIODeadline) -> RetransmitAction {
        if let resumedAt = self.resumedAt, self.isConnected, !self.configuration.peerReacknowledgesDuplicates,
            !self.acknowledgedSinceResume, now - resumedAt >= self.configuration.duplicateAssumptionDelay
        {
            // The resume rule, part 2: a live channel and not one acknowledgement since the resend. A
            // message the peer lacked would have been acknowledged at once, so all of them were duplicates.
            let wasBlocked = !self.canSend
            var position = self.outgoing.startIndex
            var count = 0
            while position != self.outgoing.endIndex {
                if !self.outgoing[position].isAcknowledged, self.outgoing[position].resentAfterResume {
                    self.markAcknowledged(at: position)
                    count += 1
                }
                position = self.outgoing.index(after: position)
            }
            self.resumedAt = nil
            if count > 0 {
                self.assumedDeliveredCount += count
                self.popAcknowledgedHead()
                return .assumedDelivered(count: count, windowOpened: wasBlocked && self.canSend)
            }
        }
        guard self.isConnected, !self.isPaused, self.configuration.retransmitWhileConnected,
            let headIndex = self.outgoing.indices.first(where: { !self.outgoing[$0].isAcknowledged })
        else { return .none }
        let head = self.outgoing[headIndex]
        let sequenceNumber =
            self.outgoingHeadSequence + Int64(self.outgoing.distance(from: self.outgoing.startIndex, to: headIndex))
        guard head.isSent, now - head.lastSentTime > self.resendWait else { return .none }
        if let limit = self.configuration.maximumResendAttempts, head.resendCount >= limit {
            return .giveUp(sequenceNumber: sequenceNumber)
        }
        self.outgoing[headIndex].resendCount += 1
        self.outgoing[headIndex].lastSentTime = now
        return .resend(head.frame, sequenceNumber: sequenceNumber)
    }

    /// When ``retransmitTimerFired(now:)`` next has something to do (the head's retransmission timeout,
    /// or the resume rule's delay), or nil while it has nothing: the owner schedules one timer at the
    /// earliest deadline instead of polling, so an idle session costs no wake-ups.
    public var retransmitDeadline: NIODeadline? {
        var deadline: NIODeadline?
        if let resumedAt = self.resumedAt, self.isConnected, !self.configuration.peerReacknowledgesDuplicates,
            !self.acknowledgedSinceResume
        {
            deadline = resumedAt + self.configuration.duplicateAssumptionDelay
        }
        if self.isConnected, !self.isPaused, self.configuration.retransmitWhileConnected,
            let head = self.outgoing.first(where: { !$0.isAcknowledged }), head.isSent
        {
            // retransmitTimerFired resends once strictly more than the timeout has passed.
            let due = head.lastSentTime + self.resendWait + .nanoseconds(1)
            deadline = min(deadline ?? due, due)
        }
        return deadline
    }

    /// How long the head waits after its last send before it is resent: the RTO, but never less than
    /// ``ReliableDeliveryConfiguration/minimumResendInterval``.
    private var resendWait: TimeAmount {
        max(self.retransmissionTimeout, self.configuration.minimumResendInterval)
    }

    /// The WebSocket dropped: hold everything until ``connectionRestored(now:)``.
    public mutating func connectionLost() {
        self.isConnected = false
    }

    /// A new WebSocket is up: every unacknowledged frame, oldest first, must be written again.
    /// Sequence numbers continue where they were.
    ///
    /// The resume rule, for a peer that does not acknowledge duplicates again (the official plugin): a
    /// message resent here that the peer already had will never be acknowledged. It counts as delivered
    /// when a message sent after it is acknowledged, or when no acknowledgement at all arrives within
    /// ``ReliableDeliveryConfiguration/duplicateAssumptionDelay`` (docs/PROTOCOL.md, "Resume").
    public mutating func connectionRestored(now: NIODeadline) -> [ByteBuffer] {
        self.isConnected = true
        // A pause belonged to the old channel; the relay on the new one pauses again if it must.
        self.isPaused = false
        let frames = self.pendingFrames(now: now, includeSent: true)
        var position = self.outgoing.startIndex
        while position != self.outgoing.endIndex {
            if !self.outgoing[position].isAcknowledged { self.outgoing[position].resentAfterResume = true }
            position = self.outgoing.index(after: position)
        }
        self.resumedAt = frames.isEmpty ? nil : now
        self.acknowledgedSinceResume = false
        return frames
    }

    /// `pause_publication`: stop sending and retransmitting; new messages are held.
    public mutating func publicationPaused() {
        self.isPaused = true
    }

    /// `start_publication`: send what was held. The gateway also sends it when the peer's data channel
    /// came back after a drop, so without timer retransmission (the fast path) every unacknowledged
    /// message goes again: frames the relay lost meanwhile (in flight to the peer's old connection, or
    /// dropped over its buffer bound) would otherwise never be resent. The peer drops duplicates.
    public mutating func publicationResumed(now: NIODeadline) -> [ByteBuffer] {
        let wasPaused = self.isPaused
        self.isPaused = false
        if !self.configuration.retransmitWhileConnected { return self.pendingFrames(now: now, includeSent: true) }
        return wasPaused ? self.pendingFrames(now: now, includeSent: false) : []
    }

    private mutating func pendingFrames(now: NIODeadline, includeSent: Bool) -> [ByteBuffer] {
        guard self.isConnected, !self.isPaused else { return [] }
        var frames: [ByteBuffer] = []
        var position = self.outgoing.startIndex
        while position != self.outgoing.endIndex {
            if !self.outgoing[position].isAcknowledged, includeSent || !self.outgoing[position].isSent {
                self.outgoing[position].isSent = true
                self.outgoing[position].lastSentTime = now
                frames.append(self.outgoing[position].frame)
            }
            position = self.outgoing.index(after: position)
        }
        return frames
    }

    // MARK: - Incoming

    /// How to acknowledge what was just received.
    public enum Acknowledgement: Sendable, Equatable {
        case none
        /// A per-message `acknowledge` for this message.
        case acknowledge(MessageType, MessageID, sequenceNumber: Int64)
        /// A cumulative acknowledgement up to and including this sequence number.
        case cumulative(upTo: Int64)
    }

    public enum IncomingAction: Sendable, Equatable {
        /// Process this message now (it is the next in order), send `acknowledgement`, then call
        /// ``nextBufferedMessage()`` until it returns nil.
        case deliver(acknowledgement: Acknowledgement)
        /// Ahead of order: stored until the gap is filled.
        case buffered(acknowledgement: Acknowledgement)
        /// Already delivered: do not process again.
        case duplicate(acknowledgement: Acknowledgement)
        /// Not acknowledged, so the sender retries: the receiver is not ready (backpressure) or the
        /// out-of-order buffer is full.
        case dropped
    }

    /// A stream message arrived. `isReady` false means the local side cannot take data now; then only
    /// handshake messages are accepted, everything else is left unacknowledged so the sender retries.
    public mutating func streamMessageReceived(_ message: SSMMessage, isReady: Bool, now: NIODeadline) -> IncomingAction
    {
        let sequenceNumber = message.sequenceNumber
        if sequenceNumber == self.expectedSequenceNumber {
            guard isReady || message.payloadType.isHandshake else { return .dropped }
            self.expectedSequenceNumber += 1
            return .deliver(acknowledgement: self.acknowledgementForNewMessage(message, now: now))
        }
        if sequenceNumber > self.expectedSequenceNumber {
            if self.outOfOrder[sequenceNumber] != nil {
                return .buffered(acknowledgement: self.reacknowledgement(message))
            }
            guard self.outOfOrder.count < self.configuration.incomingLimit.messages,
                self.outOfOrderBytes + message.payload.readableBytes <= self.configuration.incomingLimit.bytes
            else { return .dropped }
            // Kept until the gap before it fills, so never a slice of the read it came in.
            var kept = message
            kept.payload = message.payload.ownedCopy()
            self.outOfOrder[sequenceNumber] = kept
            self.outOfOrderBytes += message.payload.readableBytes
            switch self.configuration.acknowledgementMode {
            case .perMessage:
                return .buffered(
                    acknowledgement: .acknowledge(
                        message.messageType,
                        message.messageID,
                        sequenceNumber: sequenceNumber
                    )
                )
            case .cumulative:
                return .buffered(acknowledgement: .none)
            }
        }
        return .duplicate(acknowledgement: self.reacknowledgement(message))
    }

    /// The next message that became in order after a delivery, already acknowledged when it was stored
    /// (per-message mode) or counted towards the next cumulative acknowledgement.
    public mutating func nextBufferedMessage(now: NIODeadline) -> (SSMMessage, Acknowledgement)? {
        guard !self.outOfOrder.isEmpty, let message = self.outOfOrder.removeValue(forKey: self.expectedSequenceNumber)
        else {
            return nil
        }
        self.outOfOrderBytes -= message.payload.readableBytes
        self.expectedSequenceNumber += 1
        switch self.configuration.acknowledgementMode {
        case .perMessage:
            return (message, .none)
        case .cumulative:
            return (message, self.countCumulative(now: now))
        }
    }

    private mutating func acknowledgementForNewMessage(_ message: SSMMessage, now: NIODeadline) -> Acknowledgement {
        switch self.configuration.acknowledgementMode {
        case .perMessage:
            return .acknowledge(message.messageType, message.messageID, sequenceNumber: message.sequenceNumber)
        case .cumulative:
            return self.countCumulative(now: now)
        }
    }

    private mutating func countCumulative(now: NIODeadline) -> Acknowledgement {
        guard case .cumulative(let every, _) = self.configuration.acknowledgementMode else { return .none }
        if self.unacknowledgedDeliveries == 0 { self.firstUnacknowledgedDelivery = now }
        self.unacknowledgedDeliveries += 1
        guard self.unacknowledgedDeliveries >= every else { return .none }
        return self.takeCumulative(now: now)
    }

    /// The cumulative acknowledgement of everything delivered; nothing waits for one after it.
    private mutating func takeCumulative(now: NIODeadline) -> Acknowledgement {
        self.unacknowledgedDeliveries = 0
        self.firstUnacknowledgedDelivery = nil
        self.lastCumulativeAcknowledgement = now
        return .cumulative(upTo: self.expectedSequenceNumber - 1)
    }

    private func reacknowledgement(_ message: SSMMessage) -> Acknowledgement {
        guard self.configuration.reacknowledgeDuplicates else { return .none }
        switch self.configuration.acknowledgementMode {
        case .perMessage:
            return .acknowledge(message.messageType, message.messageID, sequenceNumber: message.sequenceNumber)
        case .cumulative:
            return self.expectedSequenceNumber > 0 ? .cumulative(upTo: self.expectedSequenceNumber - 1) : .none
        }
    }

    /// What may ride ahead of a message this end is about to send (cumulative mode only): a cumulative
    /// acknowledgement when half of `everyMessages` deliveries wait for one and the message carries data
    /// (`withData`), or any delivery waits and half the interval passed since the last acknowledgement.
    /// Riding with a message costs no write, wake-up or relay of its own. The side of a request-reply
    /// exchange that answers (a database, an echo) then never sends one alone; the side that asks sends one
    /// alone (on the timer) only when its next request is more than half the interval away. A one-way bulk
    /// transfer, whose receiver sends only window updates (control messages), gets one alone at
    /// `everyMessages`, as before: riding those at half the count would double its acknowledgements.
    public mutating func acknowledgementToSendAhead(now: NIODeadline, withData: Bool) -> Acknowledgement {
        guard case .cumulative(let every, let interval) = self.configuration.acknowledgementMode,
            self.unacknowledgedDeliveries > 0
        else { return .none }
        let countDue = withData && self.unacknowledgedDeliveries >= max(1, every / 2)
        let timeDue = self.lastCumulativeAcknowledgement.map { now - $0 >= Self.half(interval) } ?? true
        guard countDue || timeDue else { return .none }
        return self.takeCumulative(now: now)
    }

    /// The cumulative-acknowledgement timer: the acknowledgement if ``acknowledgementDeadline`` has come.
    public mutating func acknowledgementTimerFired(now: NIODeadline) -> Acknowledgement {
        guard let deadline = self.acknowledgementDeadline, now >= deadline else { return .none }
        return self.takeCumulative(now: now)
    }

    /// When ``acknowledgementTimerFired(now:)`` next has something to send, or nil while no delivery waits
    /// for a cumulative acknowledgement: half the interval after the first waiting delivery (time for a
    /// reply to carry it, ``acknowledgementToSendAhead(now:withData:)``), and at least the interval after the last
    /// acknowledgement. So a delivery waits at most the interval, and a pause does not make the next
    /// delivery's acknowledgement due at once, before the reply it could ride with.
    public var acknowledgementDeadline: NIODeadline? {
        guard case .cumulative(_, let interval) = self.configuration.acknowledgementMode,
            self.unacknowledgedDeliveries > 0, let first = self.firstUnacknowledgedDelivery
        else { return nil }
        let settled = first + Self.half(interval)
        guard let last = self.lastCumulativeAcknowledgement else { return settled }
        return max(last + interval, settled)
    }

    private static func half(_ interval: TimeAmount) -> TimeAmount { .nanoseconds(interval.nanoseconds / 2) }

    /// Messages waiting in the out-of-order buffer.
    public var bufferedIncomingCount: Int { self.outOfOrder.count }
}
