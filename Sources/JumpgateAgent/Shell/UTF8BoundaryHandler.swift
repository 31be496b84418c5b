import JumpgateWire
import NIOCore

/// In front of a PTY's channel: what the program writes goes on in whole UTF-8 characters (a character cut
/// by a read waits, at most 3 bytes, for the next read), so no message to the client ends mid-character.
/// What is held goes out before the channel's end.
final class UTF8BoundaryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var boundary = UTF8Boundary()
    /// Reads so far (the agent waits for them to stop before hanging up a shell that exited).
    private(set) var reads = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.reads += 1
        let output = self.boundary.next(self.unwrapInboundIn(data))
        if output.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(output)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.flushHeld(context: context)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { self.flushHeld(context: context) }
        context.fireUserInboundEventTriggered(event)
    }

    private func flushHeld(context: ChannelHandlerContext) {
        let tail = self.boundary.finish()
        guard tail.readableBytes > 0 else { return }
        context.fireChannelRead(self.wrapInboundOut(tail))
        context.fireChannelReadComplete()
    }
}
