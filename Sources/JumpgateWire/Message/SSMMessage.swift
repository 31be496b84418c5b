import NIOCore

/// One binary message of the Session Manager data and control channels (spec §4).
///
/// The payload is a slice of the buffer the message was decoded from: decoding copies nothing.
public struct SSMMessage: Hashable, Sendable {
    /// The fixed `HeaderLength` value: the offset of the PayloadLength field.
    public static let headerLength: UInt32 = 116
    /// Bytes before the payload.
    public static let headerSize = 120

    public var messageType: MessageType
    public var schemaVersion: UInt32
    /// Milliseconds since the Unix epoch. Must not be zero.
    public var createdDate: UInt64
    public var sequenceNumber: Int64
    public var flags: UInt64
    public var messageID: MessageID
    public var payloadDigest: PayloadDigest
    public var payloadType: PayloadType
    public var payload: ByteBuffer

    /// Creates a message. `payloadDigest` nil computes SHA-256 of the payload; pass ``PayloadDigest/zero``
    /// for Jumpgate's negotiated digest-free mode.
    public init(
        messageType: MessageType,
        schemaVersion: UInt32 = 1,
        createdDate: UInt64,
        sequenceNumber: Int64 = 0,
        flags: UInt64 = 0,
        messageID: MessageID = .random(),
        payloadDigest: PayloadDigest? = nil,
        payloadType: PayloadType = .none,
        payload: ByteBuffer
    ) {
        self.messageType = messageType
        self.schemaVersion = schemaVersion
        self.createdDate = createdDate
        self.sequenceNumber = sequenceNumber
        self.flags = flags
        self.messageID = messageID
        self.payloadDigest = payloadDigest ?? .sha256(of: payload)
        self.payloadType = payloadType
        self.payload = payload
    }

    /// The PayloadLength this message is written with.
    public var payloadLength: UInt32 { UInt32(truncatingIfNeeded: self.payload.readableBytes) }

    /// The encoded size in bytes.
    public var encodedSize: Int { Self.headerSize + self.payload.readableBytes }

    /// Whether ``payloadDigest`` is SHA-256 of the payload.
    public var isDigestValid: Bool { self.payloadDigest == .sha256(of: self.payload) }
}

/// Flag values of stream messages (spec §4.3): bit 0 marks the first message of a stream, bit 1 the last.
public enum SSMMessageFlags {
    public static let syn: UInt64 = 1
    public static let fin: UInt64 = 2
    /// Acknowledgements and agent_session_state carry both bits.
    public static let acknowledge: UInt64 = 3
}
