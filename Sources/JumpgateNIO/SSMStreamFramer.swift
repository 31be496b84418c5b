import JumpgateWire
import NIOCore

/// SSM messages over a plain byte stream, for a data path with no WebSocket frames around its messages
/// (docs/BLIND-RELAY.md): each message's header carries its payload's length, which is all the framing it
/// needs. Inbound bytes come out as one ``WebSocketMessage/binary(_:)`` per whole message, so
/// ``PortSession`` reads them as it reads WebSocket frames; what it writes goes out as plain bytes.
///
/// With `borrowsWholeMessages` (the default, as ``PortSession`` reads), a message whole in one read is
/// handed on as a slice of the read's buffer, with no copy, as `WebSocketFrameReader` lends whole frames:
/// the session writes it to local sockets it flushes before the read ends and copies what it keeps
/// (`PortSessionBorrowedPayloadTests`), because NIOSSL writes its next read into that buffer. A message
/// cut between reads is gathered into a buffer of its own, sized from its header, and handed on from
/// there. A header that does not decode, or a payload longer than `maximumPayloadLength`, is an error the
/// pipeline hears (`errorCaught`) before the connection closes: nothing is buffered towards a length
/// that would be refused.
public final class SSMStreamFramer: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = WebSocketMessage
    public typealias OutboundIn = WebSocketMessage
    public typealias OutboundOut = ByteBuffer

    /// The stream ended inside a message.
    public struct TruncatedStream: Error, CustomStringConvertible {
        public var missing: Int
        public var description: String { "the connection ended \(self.missing) bytes short of a whole message" }
    }

    /// Text has no place on this path (the WebSocket path's opening frame is text; this one has none).
    public struct TextNotCarried: Error, CustomStringConvertible {
        public var description: String { "a text message cannot be sent on a plain SSM stream" }
    }

    let maximumPayloadLength: Int
    let borrowsWholeMessages: Bool
    /// The message being filled, allocated at its full size once its header is known (or at a header's
    /// size while the header itself is still arriving).
    private var partial: ByteBuffer?
    /// The length of the message in ``partial``, once its header was read.
    private var expected: Int?
    private var failed = false

    public init(maximumPayloadLength: Int = 1 << 20, borrowsWholeMessages: Bool = true) {
        self.maximumPayloadLength = maximumPayloadLength
        self.borrowsWholeMessages = borrowsWholeMessages
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        var input = self.unwrapInboundIn(data)
        do {
            while input.readableBytes > 0 {
                if let frame = try self.take(from: &input, allocator: context.channel.allocator) {
                    context.fireChannelRead(self.wrapInboundOut(.binary(frame)))
                }
            }
        } catch {
            self.failed = true
            self.partial = nil
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    /// Moves bytes from `input` into the message being filled; returns it once whole.
    private func take(from input: inout ByteBuffer, allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        if self.expected == nil {
            if self.partial == nil, let length = try self.length(of: input) {
                // Whole in this read: lent as it is.
                if self.borrowsWholeMessages, input.readableBytes >= length { return input.readSlice(length: length) }
                // The header is in this read, so the buffer gets its final size at once.
                self.expected = length
                self.partial = allocator.buffer(capacity: length)
            } else {
                // The header is split across reads: gather it first.
                var header = self.partial ?? allocator.buffer(capacity: SSMMessage.headerSize)
                self.partial = nil
                let count = min(SSMMessage.headerSize - header.readableBytes, input.readableBytes)
                header.writeImmutableBuffer(input.readSlice(length: count)!)
                guard let length = try self.length(of: header) else {
                    self.partial = header
                    return nil
                }
                self.expected = length
                var message = allocator.buffer(capacity: length)
                message.writeBuffer(&header)
                self.partial = message
            }
        }
        guard let expected = self.expected, var message = self.partial else { return nil }
        self.partial = nil
        let count = min(expected - message.readableBytes, input.readableBytes)
        message.writeImmutableBuffer(input.readSlice(length: count)!)
        guard message.readableBytes == expected else {
            self.partial = message
            return nil
        }
        self.expected = nil
        return message
    }

    private func length(of buffer: ByteBuffer) throws -> Int? {
        try SSMMessage.encodedLength(peeking: buffer, maximumPayloadLength: self.maximumPayloadLength)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if let partial = self.partial, !self.failed {
            let missing = (self.expected ?? SSMMessage.headerSize) - partial.readableBytes
            self.partial = nil
            context.fireErrorCaught(TruncatedStream(missing: missing))
        }
        context.fireChannelInactive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .binary(let frame):
            context.write(self.wrapOutboundOut(frame), promise: promise)
        case .text:
            promise?.fail(TextNotCarried())
        }
    }
}
