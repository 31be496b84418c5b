import NIOCore

extension SSMMessage {
    /// The whole encoded length (header and payload) of the message that starts at `buffer`'s reader
    /// index, read from its header; nil while fewer than a header's bytes are there. This is how a byte
    /// stream without WebSocket frames (a capture, a relay-blind connection) is split into messages.
    ///
    /// Throws if HeaderLength is not 116, or if PayloadLength is above `maximumPayloadLength`, so that a
    /// reader never buffers towards a length it would refuse.
    public static func encodedLength(
        peeking buffer: ByteBuffer,
        maximumPayloadLength: Int
    ) throws(WireError) -> Int? {
        guard buffer.readableBytes >= Self.headerSize else { return nil }
        let headerLength = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self)!
        guard headerLength == Self.headerLength else {
            throw WireError(.invalidHeaderLength, "HeaderLength is \(headerLength), expected \(Self.headerLength)")
        }
        let payloadLength = Int(buffer.getInteger(at: buffer.readerIndex + Self.payloadLengthOffset, as: UInt32.self)!)
        guard payloadLength <= maximumPayloadLength else {
            throw WireError(
                .payloadTooLarge,
                "PayloadLength \(payloadLength) exceeds the \(maximumPayloadLength)-byte limit"
            )
        }
        return Self.headerSize + payloadLength
    }

    /// Where PayloadLength sits in the header: right after PayloadType, the header's last field.
    static let payloadLengthOffset = Self.payloadTypeOffset + 4
}
