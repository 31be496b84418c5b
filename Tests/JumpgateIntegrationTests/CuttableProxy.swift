import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 that plays a flaky network link: ``blackholeAndCut(for:)`` makes every
/// current connection silently swallow what it carries for a while (as a link that stops forwarding
/// does, so bytes already sent are lost), then closes them. Connections made afterwards work again.
final class CuttableProxy: Sendable {
    let channel: any Channel
    private let links = NIOLockedValueBox<[ObjectIdentifier: ProxyLink]>([:])
    /// While true the link is down: new connections are closed at once (as a connect fails).
    private let refusing = NIOLockedValueBox(false)
    /// How many times connections were cut.
    let cuts = NIOLockedValueBox(0)

    var port: Int { self.channel.localAddress?.port ?? 0 }

    /// Listens on a free port; each connection is forwarded to 127.0.0.1:`upstreamPort()` (asked at
    /// connect time, so the proxy can exist before its upstream runs).
    init(upstreamPort: @escaping @Sendable () -> Int) async throws {
        let (links, refusing) = (self.links, self.refusing)
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                if refusing.withLockedValue({ $0 }) { return inbound.close() }
                let link = ProxyLink()
                links.withLockedValue { $0[ObjectIdentifier(link)] = link }
                inbound.closeFuture.whenComplete { _ in
                    _ = links.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(link)) }
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelOption(.autoRead, value: false)
                    .connect(host: "127.0.0.1", port: upstreamPort())
                    .flatMap { outbound in
                        link.join(inbound, outbound)
                    }
                    .flatMapError { error in
                        inbound.close(promise: nil)
                        return inbound.eventLoop.makeFailedFuture(error)
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    /// Every open connection drops what it carries for `duration`, then is closed.
    func blackholeAndCut(for duration: TimeAmount = .milliseconds(300)) async throws {
        let current = self.links.withLockedValue { Array($0.values) }
        for link in current { link.swallow() }
        try await Task.sleep(nanoseconds: UInt64(duration.nanoseconds))
        for link in current { link.close() }
        self.cuts.withLockedValue { $0 += 1 }
    }

    /// The link goes down for `duration`: open connections swallow what they carry and new ones fail;
    /// when it comes back, the stalled connections are closed (their peers would have timed them out).
    func down(for duration: TimeAmount) async throws {
        self.refusing.withLockedValue { $0 = true }
        defer { self.refusing.withLockedValue { $0 = false } }
        try await self.blackholeAndCut(for: duration)
    }

    func close() {
        self.channel.close(promise: nil)
        for link in self.links.withLockedValue({ Array($0.values) }) { link.close() }
    }
}

/// Both sockets of one proxied connection (on one event loop), glued with backpressure.
final class ProxyLink: Sendable {
    private let state = NIOLockedValueBox<(channels: [any Channel], swallowing: Bool)>(([], false))

    func join(_ a: any Channel, _ b: any Channel) -> EventLoopFuture<Void> {
        self.state.withLockedValue { $0.channels = [a, b] }
        return a.eventLoop.submit {
            let (glueA, glueB) = ProxyGlue.pair(link: self)
            try a.pipeline.syncOperations.addHandler(glueA)
            try b.pipeline.syncOperations.addHandler(glueB)
        }.flatMap {
            // Read only now that both ends are glued (nothing read before is lost).
            a.setOption(.autoRead, value: true).and(b.setOption(.autoRead, value: true)).map { _ in }
        }
    }

    var isSwallowing: Bool { self.state.withLockedValue { $0.swallowing } }

    func swallow() { self.state.withLockedValue { $0.swallowing = true } }

    func close() {
        for channel in self.state.withLockedValue({ $0.channels }) { channel.close(promise: nil) }
    }
}

/// Forwards what one socket reads to its partner, and reads again only while the partner is writable
/// (NIO's glue pattern; both sockets share an event loop).
final class ProxyGlue: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let link: ProxyLink
    var partner: ProxyGlue?
    var context: ChannelHandlerContext?
    var pendingRead = false

    init(link: ProxyLink) { self.link = link }

    static func pair(link: ProxyLink) -> (ProxyGlue, ProxyGlue) {
        let a = ProxyGlue(link: link)
        let b = ProxyGlue(link: link)
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.link.isSwallowing else { return }
        self.partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.context?.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.partner?.readIfPending() }
    }

    func read(context: ChannelHandlerContext) {
        if self.partner?.context?.channel.isWritable ?? true {
            context.read()
        } else {
            self.pendingRead = true
        }
    }

    private func readIfPending() {
        guard self.pendingRead, let context = self.context else { return }
        self.pendingRead = false
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.context?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
