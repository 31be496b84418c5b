import NIOCore

extension SSMMessage {
    /// The message type of an encoded message, read from its header without decoding the rest; nil when
    /// the header is short or malformed. Known types allocate nothing (the gateway's relay looks at the
    /// type of every agent frame).
    public static func peekMessageType(_ frame: ByteBuffer) -> MessageType? {
        guard frame.readableBytes >= Self.headerSize,
            frame.getInteger(at: frame.readerIndex, as: UInt32.self) == Self.headerLength
        else { return nil }
        return try? Self.decodeMessageType(frame, at: frame.readerIndex + 4)
    }

    /// The payload type of an encoded message, read from its header; nil when the header is short.
    public static func peekPayloadType(_ frame: ByteBuffer) -> PayloadType? {
        guard frame.readableBytes >= Self.headerSize,
            let raw = frame.getInteger(at: frame.readerIndex + Self.payloadTypeOffset, as: UInt32.self)
        else { return nil }
        return PayloadType(rawValue: raw)
    }

    /// Where PayloadType sits in the header: after HeaderLength, MessageType, SchemaVersion, CreatedDate,
    /// SequenceNumber, Flags, MessageId and PayloadDigest (spec §3).
    static let payloadTypeOffset = 4 + 32 + 4 + 8 + 8 + 8 + 16 + 32
}
