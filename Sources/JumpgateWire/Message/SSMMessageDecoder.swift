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
        guard
            let length = try SSMMessage.encodedLength(peeking: buffer, maximumPayloadLength: self.maximumPayloadLength),
            buffer.readableBytes >= length
        else { return nil }
        return try SSMMessage(consuming: &buffer, payloadLengthFraming: true)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SSMMessage? {
        try self.decode(buffer: &buffer)
    }
}
