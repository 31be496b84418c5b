import NIOCore

/// The incoming half of ``ReliableDeliveryStateMachine``: what to deliver, buffer, re-acknowledge or drop,
/// and when and how to acknowledge (per message, or cumulatively: by count, on a timer, or ahead of a
/// message this end sends).
extension ReliableDeliveryStateMachine {
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
        /// ``nextBufferedMessage(now:)`` until it returns nil.
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
    /// (`withData`), or any delivery waits and half the interval passed since the last acknowledgement (on
    /// any message, a window update included). Riding with a message, it shares that message's flush: no
    /// write system call, wake-up of the peer or relay of its own. While a request-reply exchange goes on,
    /// the side that answers (a database, an echo) sends none alone; the side that asks sends one alone (on
    /// the timer) only when its next request is more than half the interval away. A one-way transfer's
    /// receiver, which sends only window updates, does not take one at half the count: it acknowledges alone
    /// at `everyMessages` (or with a window update, or on the timer, after half the interval). When both
    /// sides send data, each acknowledges every half count instead of every count.
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
        // The first waiting delivery's time is set exactly while deliveries wait (countCumulative, takeCumulative).
        guard case .cumulative(_, let interval) = self.configuration.acknowledgementMode,
            let first = self.firstUnacknowledgedDelivery
        else { return nil }
        let settled = first + Self.half(interval)
        guard let last = self.lastCumulativeAcknowledgement else { return settled }
        return max(last + interval, settled)
    }

    private static func half(_ interval: TimeAmount) -> TimeAmount { .nanoseconds(interval.nanoseconds / 2) }

    /// Messages waiting in the out-of-order buffer.
    public var bufferedIncomingCount: Int { self.outOfOrder.count }
}
