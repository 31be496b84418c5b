import JumpgateWire
import NIOCore

/// The TCP side of one smux stream: reads go to the session (and stop while it cannot send), EOF and
/// close are reported.
final class StreamTCPHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let session: PortSession
    private let id: SmuxStreamID
    private let connection: StreamTable.ConnectionID

    init(session: PortSession, id: SmuxStreamID, connection: StreamTable.ConnectionID) {
        self.session = session
        self.id = id
        self.connection = connection
    }

    // autoRead is off on stream sockets: reads are requested here, and held back while the session
    // cannot send (see PortSession.pumpStream).
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.read() }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.session.tcpRead(self.id, self.connection, self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.session.tcpReadComplete()
        // Not context.read(): that goes straight to the socket, past this handler's own check below.
        self.read(context: context)
        context.fireChannelReadComplete()
    }

    /// Held back while the session cannot send; PortSession issues the read again when it can.
    func read(context: ChannelHandlerContext) {
        if !self.session.isReadPaused(self.id) { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.session.tcpWritable(self.id, self.connection) }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            self.session.tcpEOF(self.id, self.connection)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.session.tcpClosed(self.id, self.connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
