import NIOCore

/// Splits a byte stream of concatenated messages using each header's PayloadLength, for captures and
/// files. (On a WebSocket each frame holds exactly one message: use ``SSMMessage/init(decoding:)``.)
public struct SSMMessageDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = SSMMessage

    /// Messages with a larger payload are rejected rather than buffered.
    public var maximumPayloadLength: Int

    public init(maximumPayloadLength: Int = 1 << 20) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SSMMessage? {
        guard buffer.readableBytes >= SSMMessage.headerSize else { return nil }
        let headerLength = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self)!
        guard headerLength == SSMMessage.headerLength else {
            throw WireError(
                .invalidHeaderLength,
                "HeaderLength is \(headerLength), expected \(SSMMessage.headerLength)"
            )
        }
        let payloadLength = Int(buffer.getInteger(at: buffer.readerIndex + 116, as: UInt32.self)!)
        guard payloadLength <= self.maximumPayloadLength else {
            throw WireError(
                .payloadTooLarge,
                "PayloadLength \(payloadLength) exceeds the \(self.maximumPayloadLength)-byte limit"
            )
        }
        guard buffer.readableBytes >= SSMMessage.headerSize + payloadLength else { return nil }
        return try SSMMessage(consuming: &buffer, payloadLengthFraming: true)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SSMMessage? {
        try self.decode(buffer: &buffer)
    }
}
