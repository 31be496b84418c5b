import JumpgateWire
import NIOCore

/// Sits where the WebSocket handler will go: sends the HTTP upgrade request when the channel becomes
/// active, reads the response, and on 101 installs ``WebSocketHandler`` plus the caller's handlers,
/// hands them any bytes that followed the response, and removes itself.
public final class WebSocketClientUpgrader: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let request: ByteBuffer
    private let key: String
    private let configuration: WebSocketHandler.Configuration
    private let makeHandlers: (any Channel) throws -> [any ChannelHandler]
    private let upgraded: EventLoopPromise<Void>
    private var buffer = ByteBuffer()
    private var sent = false

    public init(
        host: String,
        pathAndQuery: String,
        headers: [(name: String, value: String)],
        configuration: WebSocketHandler.Configuration = .init(),
        upgraded: EventLoopPromise<Void>,
        makeHandlers: @escaping (any Channel) throws -> [any ChannelHandler]
    ) {
        self.key = WebSocketHandshake.randomKey()
        self.request = WebSocketHandshake.clientRequest(
            host: host,
            pathAndQuery: pathAndQuery,
            key: self.key,
            headers: headers
        )
        self.configuration = configuration
        self.upgraded = upgraded
        self.makeHandlers = makeHandlers
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.sendRequest(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.sendRequest(context: context)
        context.fireChannelActive()
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard !self.sent else { return }
        self.sent = true
        context.writeAndFlush(NIOAny(self.request), promise: nil)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&incoming)
        do {
            guard let head = try WebSocketHandshake.parseResponse(&self.buffer) else { return }
            try WebSocketHandshake.validateUpgrade(head, key: self.key)
            let handlers =
                [WebSocketHandler(role: .client, configuration: self.configuration)]
                + (try self.makeHandlers(context.channel))
            // One at a time, in order (addHandlers(position: .after) inserts in reverse): a handler may
            // write in handlerAdded, and its write must find the WebSocket handler already there.
            var previous: any ChannelHandler = self
            for handler in handlers {
                try context.pipeline.syncOperations.addHandler(handler, position: .after(previous))
                previous = handler
            }
            let leftover = self.buffer
            self.buffer = ByteBuffer()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            self.upgraded.succeed()
            if leftover.readableBytes > 0 {
                context.fireChannelRead(self.wrapInboundOut(leftover))
            }
        } catch {
            self.upgraded.fail(error)
            context.close(promise: nil)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.upgraded.fail(
            WireError(.invalidWebSocketFrame, "the connection closed before the WebSocket upgrade completed")
        )
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.upgraded.fail(error)
        context.close(promise: nil)
    }
}
