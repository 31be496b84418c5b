import NIOCore

/// Limits on a buffer of messages, by count and by bytes: 10 000 messages of 64 KiB would otherwise
/// be 640 MiB.
public struct MessageBufferLimit: Hashable, Sendable {
    public var messages: Int
    public var bytes: Int

    public init(messages: Int, bytes: Int) {
        self.messages = messages
        self.bytes = bytes
    }
}

/// How a receiver acknowledges stream messages.
public enum AcknowledgementMode: Hashable, Sendable {
    /// One JSON `acknowledge` per message, as the official peers do.
    case perMessage
    /// Jumpgate fast path: the highest contiguous sequence number, alone after `everyMessages` new messages
    /// or on a timer (half `interval` after the first waiting delivery, at least `interval` after the last
    /// acknowledgement), or ahead of a message this end sends once half of either is reached
    /// (``ReliableDeliveryStateMachine/acknowledgementToSendAhead(now:withData:)``).
    case cumulative(everyMessages: Int, interval: TimeAmount)
}

/// Settings of ``ReliableDeliveryStateMachine``; defaults are the official constants (spec §5.3).
public struct ReliableDeliveryConfiguration: Hashable, Sendable {
    public var initialRoundTripTime: TimeAmount = .milliseconds(100)
    public var initialRoundTripTimeVariation: TimeAmount = .zero
    public var initialRetransmissionTimeout: TimeAmount = .milliseconds(200)
    public var clockGranularity: TimeAmount = .milliseconds(10)
    public var maximumRetransmissionTimeout: TimeAmount = .seconds(1)
    /// The shortest wait before a message is resent, whatever the RTO (which can fall to about 10 ms on
    /// loopback): the official peers look at their outgoing buffer every 100 ms, so they never resend
    /// faster, and the give-up bound below stays at least 5 minutes.
    public var minimumResendInterval: TimeAmount = .milliseconds(100)
    /// Give up after this many resends of one message; nil never gives up.
    public var maximumResendAttempts: Int? = 3000
    public var outgoingLimit = MessageBufferLimit(messages: 10_000, bytes: 32 << 20)
    /// Room beyond ``outgoingLimit`` for control messages (smux SYN, FIN and window updates, flags, the
    /// handshake): a full data window pauses the sources, but never refuses the message that closes a
    /// stream. Exhausting it takes a peer that opens thousands of streams and acknowledges nothing.
    public var controlReserve = MessageBufferLimit(messages: 4096, bytes: 4 << 20)
    public var incomingLimit = MessageBufferLimit(messages: 10_000, bytes: 32 << 20)
    public var acknowledgementMode: AcknowledgementMode = .perMessage
    /// False on the fast path: while the WebSocket is up nothing is resent on a timer, only after a reconnect.
    public var retransmitWhileConnected = true
    /// Acknowledge duplicates again (the official agent does, the official plugin does not).
    public var reacknowledgeDuplicates = true
    /// Whether the peer acknowledges duplicates again. The official plugin does not, so after a resume a
    /// message it already had is never acknowledged; the resume rule (see
    /// ``ReliableDeliveryStateMachine/connectionRestored(now:)``) then treats it as delivered.
    public var peerReacknowledgesDuplicates = false
    /// After a resume, with a peer that does not re-acknowledge duplicates: if no acknowledgement at all
    /// arrives for this long, every message resent on the new channel was a duplicate.
    public var duplicateAssumptionDelay: TimeAmount = .seconds(10)

    public init() {}

    /// The outgoing buffer's byte limit with an official peer (no `large-payloads`).
    public static let officialPeerOutgoingBytes = 8 << 20

    /// The settings for a negotiated session.
    public static func negotiated(_ extensions: JumpgateExtensions) -> ReliableDeliveryConfiguration {
        var configuration = ReliableDeliveryConfiguration()
        if extensions.contains(.cumulativeAck) {
            configuration.acknowledgementMode = .cumulative(everyMessages: 32, interval: .milliseconds(20))
        }
        if extensions.contains(.noTimerRetransmit) {
            configuration.retransmitWhileConnected = false
        }
        // Any Jumpgate extension means a Jumpgate peer, which re-acknowledges duplicates.
        configuration.peerReacknowledgesDuplicates = !extensions.isEmpty
        if !extensions.contains(.largePayloads) {
            // An official peer has no stream windows, so this buffer alone bounds what a sender holds for
            // a reader that stopped; with an agent's 64 KiB messages to the official plugin (PortSessionMode)
            // 32 MiB would be held. 8 MiB is still about 80 ms of the plugin's best download rate.
            configuration.outgoingLimit.bytes = Self.officialPeerOutgoingBytes
        }
        return configuration
    }
}
