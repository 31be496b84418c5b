import JumpgateNIO
import JumpgateWire
import NIOCore

/// The first handler of every accepted connection when the gateway carries relay-blind pairs: the first
/// byte tells a TLS connection (a handshake record, 0x16) from a pairing connection (the `J` of its
/// pairing line; docs/BLIND-RELAY.md). It installs the one pipeline or the other behind itself, hands it
/// the bytes, and goes. A connection that sends nothing is closed after the TLS handshake limit, as it
/// would be without the sniffer.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let tls: (any Channel) throws -> Void
    private let pairing: (any Channel) throws -> Void
    private let connections: GatewayConnections?
    private var deadline: Scheduled<Void>?
    private var decided = false

    init(
        connections: GatewayConnections?,
        tls: @escaping (any Channel) throws -> Void,
        pairing: @escaping (any Channel) throws -> Void
    ) {
        self.connections = connections
        self.tls = tls
        self.pairing = pairing
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let limit = self.connections?.limits.tlsHandshakeTimeout ?? .seconds(10)
        let channel = context.channel
        let connections = self.connections
        self.deadline = context.eventLoop.scheduleTask(in: limit) {
            connections?.timedOut(.tlsHandshake)
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.decided else { return context.fireChannelRead(data) }
        let bytes = self.unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        self.decided = true
        self.deadline?.cancel()
        do {
            if PairingLine.canStart(with: first) {
                try self.pairing(context.channel)
            } else {
                try self.tls(context.channel)
            }
        } catch {
            return context.close(promise: nil)
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        context.fireChannelInactive()
    }
}
