import FoundationEssentials
import JumpgateWire
import NIOCore
import NIOPosix
import NIOSSL

extension HTTPSEndpoint {
    /// Opens a TLS connection, performs the WebSocket upgrade with `headers` (SigV4 for agents), then
    /// installs ``WebSocketHandler`` and the handlers `makeHandlers` returns. Returns once upgraded.
    public func connectWebSocket(
        pathAndQuery: String,
        headers: [(name: String, value: String)] = [],
        eventLoop: any EventLoop,
        configuration: WebSocketHandler.Configuration = .init(),
        makeHandlers: @escaping @Sendable (any Channel) throws -> [any ChannelHandler]
    ) async throws -> any Channel {
        let sslContext = self.sslContext
        let serverHostname = self.serverHostname
        let upgraded = eventLoop.makePromise(of: Void.self)
        let hostHeader = self.hostHeader
        // The connection is TLS (below): large frames skip the masking copy (see the setting), unless the
        // environment asks for a random key on every frame.
        let configuration = {
            var configuration = configuration
            configuration.zeroMaskForLargeFrames = Self.zeroMaskAllowed(
                environment: ProcessInfo.processInfo.environment
            )
            return configuration
        }()
        var bootstrap = ClientBootstrap(group: eventLoop)
        if let source = self.sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        let channel =
            try await bootstrap
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: TLSSocketReads.recvAllocator)
            .channelOption(.maxMessagesPerRead, value: TLSSocketReads.maxMessagesPerRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                    )
                    try channel.pipeline.syncOperations.addHandler(
                        WebSocketClientUpgrader(
                            host: hostHeader,
                            pathAndQuery: pathAndQuery,
                            headers: headers,
                            configuration: configuration,
                            upgraded: upgraded,
                            makeHandlers: makeHandlers
                        )
                    )
                }
            }
            .connect(host: self.host, port: self.port)
            .get()
        let timeout = eventLoop.scheduleTask(in: .seconds(30)) {
            upgraded.fail(WireError(.invalidWebSocketFrame, "the WebSocket upgrade did not complete within 30 s"))
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        try await upgraded.futureResult.get()
        return channel
    }

    /// Whether large frames may go with the zero key: yes, unless `JUMPGATE_WEBSOCKET_MASK=random` (for a
    /// path through something that inspects WebSocket frames and insists on RFC 6455's random keys).
    static func zeroMaskAllowed(environment: [String: String]) -> Bool {
        environment["JUMPGATE_WEBSOCKET_MASK"] != "random"
    }
}

/// Writes one text frame as soon as it is added: the `Open…ChannelInput` a channel must start with.
public final class OpeningFrameWriter: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = WebSocketMessage
    public typealias OutboundOut = WebSocketMessage
    private let frame: ByteBuffer

    public init(json: JSONValue) {
        self.frame = ByteBuffer(bytes: json.serializedBytes())
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(.text(self.frame)), promise: nil)
    }
}

/// The XML the gateway (and AWS) return from CreateControlChannel / CreateDataChannel.
public enum ChannelTokenResponse {
    public static func token(fromXML body: String) -> String? {
        guard let start = body.firstRange(of: "<TokenValue>"), let end = body.firstRange(of: "</TokenValue>"),
            start.upperBound <= end.lowerBound
        else { return nil }
        return String(body[start.upperBound..<end.lowerBound])
    }

}
