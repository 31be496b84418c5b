import NIOCore

/// Sequencing, acknowledgement and retransmission of stream messages for one endpoint of a session
/// (spec §5), in both directions. Pure: time is passed in, frames are opaque encoded buffers, and every
/// decision comes back as an action for the channel handler to carry out.
///
/// Outgoing: the caller checks ``canSend``, encodes a message with ``nextSequenceNumber`` and hands the
/// frame to ``send(_:now:)``. The frame is kept until acknowledged; while the WebSocket is down or the
/// peer paused publication it is held and sent on ``connectionRestored(now:)`` / ``publicationResumed(now:)``.
///
/// Incoming (ReliableDeliveryStateMachine+Incoming.swift): ``streamMessageReceived(_:isReady:now:)`` decides
/// whether to deliver, buffer out of order, re-acknowledge or drop; after a delivery,
/// ``nextBufferedMessage(now:)`` drains what became in order.
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

    // Internal, not private: the incoming half is in ReliableDeliveryStateMachine+Incoming.swift.
    public internal(set) var expectedSequenceNumber: Int64 = 0
    var outOfOrder: [Int64: SSMMessage] = [:]
    var outOfOrderBytes = 0
    /// Payload bytes held out of order, waiting for a gap to fill (bounded by `incomingLimit`).
    public var outOfOrderByteCount: Int { self.outOfOrderBytes }
    public var outOfOrderMessageCount: Int { self.outOfOrder.count }
    /// Cumulative mode: deliveries since the last acknowledgement sent, when the first of them arrived, and
    /// when the last acknowledgement went (by count, by the timer or ahead of a sent message).
    var unacknowledgedDeliveries = 0
    var firstUnacknowledgedDelivery: NIODeadline?
    var lastCumulativeAcknowledgement: NIODeadline?

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
}
