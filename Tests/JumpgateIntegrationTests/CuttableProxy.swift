import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 that plays a flaky network link: ``blackholeAndCut(for:)`` makes every
/// current connection silently swallow what it carries for a while (as a link that stops forwarding
/// does, so bytes already sent are lost), then closes them. Connections made afterwards work again.
/// ``shape(delay:bytesPerSecond:)`` makes it a slow link: a one-way delay and a rate, each direction on
/// its own, in order, with backpressure (it reads no more than a bounded queue holds).
final class CuttableProxy: Sendable {
    let channel: any Channel
    private let links = NIOLockedValueBox<[ObjectIdentifier: ProxyLink]>([:])
    private let linkShape = NIOLockedValueBox(LinkShape())
    /// While true the link is down: new connections are closed at once (as a connect fails).
    private let refusing = NIOLockedValueBox(false)
    /// How many times connections were cut.
    let cuts = NIOLockedValueBox(0)

    var port: Int { self.channel.localAddress?.port ?? 0 }

    /// Connections open through the proxy now (one leaves this count when its client side closes).
    var openConnections: Int { self.links.withLockedValue { $0.count } }

    /// Listens on a free port; each connection is forwarded to 127.0.0.1:`upstreamPort()` (asked at
    /// connect time, so the proxy can exist before its upstream runs).
    init(upstreamPort: @escaping @Sendable () -> Int) async throws {
        let (links, refusing, shape) = (self.links, self.refusing, self.linkShape)
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                if refusing.withLockedValue({ $0 }) { return inbound.close() }
                let link = ProxyLink(shape: shape)
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

    /// From now on, every byte each way arrives `delay` after it was sent, and at most `bytesPerSecond`
    /// each way (nil: no limit); open connections too.
    func shape(delay: TimeAmount, bytesPerSecond: Int? = nil) {
        self.linkShape.withLockedValue { $0 = LinkShape(delay: delay, bytesPerSecond: bytesPerSecond) }
    }

    func close() {
        self.channel.close(promise: nil)
        for link in self.links.withLockedValue({ Array($0.values) }) { link.close() }
    }
}

/// What a slow link adds: a one-way delay and a rate limit, each direction on its own.
struct LinkShape: Sendable {
    var delay: TimeAmount = .zero
    var bytesPerSecond: Int?

    var isShaped: Bool { self.delay > .zero || self.bytesPerSecond != nil }

    /// The most one direction holds before it stops reading: what the link carries in flight (its rate
    /// times its delay, twice over), at least 256 KiB; 4 MiB when only delayed.
    var queueLimit: Int {
        guard let rate = self.bytesPerSecond else { return 4 << 20 }
        return max(256 << 10, Int(Int64(rate) * 2 * self.delay.nanoseconds / 1_000_000_000))
    }
}

/// Both sockets of one proxied connection (on one event loop), glued with backpressure.
final class ProxyLink: Sendable {
    private let state = NIOLockedValueBox<(channels: [any Channel], swallowing: Bool)>(([], false))
    private let shapeBox: NIOLockedValueBox<LinkShape>

    init(shape: NIOLockedValueBox<LinkShape>) { self.shapeBox = shape }

    var shape: LinkShape { self.shapeBox.withLockedValue { $0 } }

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
    /// On a shaped link: what this side read, each with when it is due at the partner, in order.
    private var queue = CircularBuffer<(due: NIODeadline, data: ByteBuffer)>()
    private var queuedBytes = 0
    /// When the rate limit lets the next byte leave.
    private var nextFree = NIODeadline.uptimeNanoseconds(0)
    private var drain: Scheduled<Void>?
    /// This side closed with bytes still queued: the partner closes once they are delivered (a FIN is
    /// delayed like the bytes before it).
    private var closeAfterDrain = false

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
        guard !self.closeAfterDrain else { return }  // the drain still delivers to the partner, then closes it
        self.drain?.cancel()
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.link.isSwallowing else { return }
        let shape = self.link.shape
        guard shape.isShaped || !self.queue.isEmpty else {
            self.partner?.context?.write(data, promise: nil)
            return
        }
        let buffer = self.unwrapInboundIn(data)
        let now = NIODeadline.now()
        var due = now + shape.delay
        if let rate = shape.bytesPerSecond, rate > 0 {
            let sent = max(now, self.nextFree) + .nanoseconds(Int64(buffer.readableBytes) * 1_000_000_000 / Int64(rate))
            self.nextFree = sent
            due = sent + shape.delay
        }
        self.queue.append((due, buffer))
        self.queuedBytes += buffer.readableBytes
        if self.drain == nil { self.scheduleDrain(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.queue.isEmpty { self.partner?.context?.flush() }
    }

    private func scheduleDrain(context: ChannelHandlerContext) {
        guard let first = self.queue.first else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.drain = context.eventLoop.scheduleTask(deadline: first.due) { bound.value.drainDue() }
    }

    /// Hands the partner what is due, in order; reads again once the queue is under its limit.
    private func drainDue() {
        self.drain = nil
        guard let context = self.context ?? (self.closeAfterDrain ? self.partner?.context : nil) else {
            // Both sockets are gone (both closed with bytes queued): nothing left to deliver to.
            self.queue.removeAll()
            self.queuedBytes = 0
            self.partner = nil
            return
        }
        if self.link.isSwallowing {
            self.queue.removeAll()
            self.queuedBytes = 0
        }
        let now = NIODeadline.now()
        while let first = self.queue.first, first.due <= now {
            self.queue.removeFirst()
            self.queuedBytes -= first.data.readableBytes
            self.partner?.context?.write(NIOAny(first.data), promise: nil)
        }
        self.partner?.context?.flush()
        if self.closeAfterDrain, self.queue.isEmpty {
            self.partner?.context?.close(promise: nil)
            self.partner = nil
            return
        }
        if self.queuedBytes < self.link.shape.queueLimit { self.readIfPending() }
        self.scheduleDrain(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner = self.partner,
            partner.queuedBytes < self.link.shape.queueLimit
        {
            partner.readIfPending()
        }
    }

    func read(context: ChannelHandlerContext) {
        let queueFull = self.queuedBytes >= self.link.shape.queueLimit
        if !queueFull, self.partner?.context?.channel.isWritable ?? true {
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
        if self.queue.isEmpty || self.link.isSwallowing {
            self.drain?.cancel()
            self.partner?.context?.close(promise: nil)
        } else {
            self.closeAfterDrain = true
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
