import CoreMetrics
import FoundationEssentials
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOTLS

/// The gateway's connections as a whole: admission at accept (per source, in all), the shared budget of
/// buffered bytes, and their metrics. One per gateway, shared by every event loop (so it is locked).
public final class GatewayConnections: Sendable {
    public let limits: ConnectionLimits
    private let admission: NIOLockedValueBox<ConnectionAdmission>
    /// Bytes held in HTTP request bodies and in relays' frames for an absent side, and the first alone.
    private let budgetUsed = NIOLockedValueBox((all: 0, http: 0))
    private let refused: [ConnectionRefusal: Counter]
    private let timedOut: [ConnectionTimeout: Counter]
    private let budgetRefusals = Counter(label: "jumpgate_buffer_budget_refusals_total")
    /// The admitted connections not closed yet, for ``closeAll(within:)`` at shutdown; once `closing`,
    /// nothing more is admitted (a connection accepted just before the listener closed is set up after).
    private let openChannels = NIOLockedValueBox((channels: [ObjectIdentifier: any Channel](), closing: false))
    let logger: Logger

    public init(limits: ConnectionLimits, logger: Logger) {
        self.limits = limits
        self.admission = NIOLockedValueBox(
            ConnectionAdmission(perSource: limits.maximumConnectionsPerSource, total: limits.maximumConnections)
        )
        self.refused = Dictionary(
            uniqueKeysWithValues: ConnectionRefusal.allCases.map {
                ($0, Counter(label: "jumpgate_connections_refused_total", dimensions: [("reason", $0.rawValue)]))
            }
        )
        self.timedOut = Dictionary(
            uniqueKeysWithValues: ConnectionTimeout.allCases.map {
                ($0, Counter(label: "jumpgate_connections_timed_out_total", dimensions: [("reason", $0.rawValue)]))
            }
        )
        self.logger = logger
    }

    /// Admits an accepted connection or refuses it (counted); an admitted one is released when it closes.
    func admit(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let tracked = self.openChannels.withLockedValue { open in
            guard !open.closing else { return false }
            open.channels[key] = channel
            return true
        }
        guard tracked else { return false }
        let source = channel.sourceAddress
        if let refusal = self.admission.withLockedValue({ $0.admit(source) }) {
            self.refused[refusal]?.increment()
            self.openChannels.withLockedValue { _ = $0.channels.removeValue(forKey: key) }
            return false
        }
        channel.closeFuture.whenComplete { _ in
            self.admission.withLockedValue { $0.release(source) }
            self.openChannels.withLockedValue { _ = $0.channels.removeValue(forKey: key) }
        }
        return true
    }

    /// Closes every admitted connection still open and returns once each has closed (its handlers have
    /// seen it close and made their changes to the state), or when `timeout` has passed; the number still
    /// open then. For a graceful stop: call it after the listener closed, so that nothing is admitted after.
    func closeAll(within timeout: TimeAmount) async -> Int {
        let channels = self.openChannels.withLockedValue { open in
            open.closing = true
            return Array(open.channels.values)
        }
        guard !channels.isEmpty else { return 0 }
        for channel in channels { channel.close(promise: nil) }
        let eventLoop = channels[0].eventLoop
        let all = EventLoopFuture.andAllComplete(channels.map(\.closeFuture), on: eventLoop)
        let timer = eventLoop.makePromise(of: Void.self)
        let scheduled = eventLoop.scheduleTask(in: timeout) { timer.succeed() }
        all.cascade(to: timer)
        try? await timer.futureResult.get()
        scheduled.cancel()
        return self.openChannels.withLockedValue { $0.channels.count }
    }

    func acceptFailed(_ error: IOError) {
        if error.errnoCode == EMFILE || error.errnoCode == ENFILE {
            self.refused[.outOfFileDescriptors]?.increment()
            self.logger.error("out of file descriptors: not accepting for 1 s", metadata: ["error": "\(error)"])
        }
    }

    func timedOut(_ reason: ConnectionTimeout) {
        self.timedOut[reason]?.increment()
    }

    /// Open connections now (the gauge).
    public var openConnections: Int { self.admission.withLockedValue { $0.open } }

    // MARK: the buffer budget

    /// Takes `bytes` from the shared budget (`http`: for a request body); false, nothing taken, when it
    /// would pass the limit.
    func reserve(_ bytes: Int, http: Bool) -> Bool {
        let taken = self.budgetUsed.withLockedValue { used -> Bool in
            guard used.all + bytes <= self.limits.bufferBudget else { return false }
            used.all += bytes
            if http { used.http += bytes }
            return true
        }
        if !taken { self.budgetRefusals.increment() }
        return taken
    }

    func release(_ bytes: Int, http: Bool) {
        self.budgetUsed.withLockedValue { used in
            used.all = max(0, used.all - bytes)
            if http { used.http = max(0, used.http - bytes) }
        }
    }

    /// Bytes taken from the budget now, in all and by HTTP request bodies.
    public var budgetInUse: Int { self.budgetUsed.withLockedValue { $0.all } }
    public var httpBytesInUse: Int { self.budgetUsed.withLockedValue { $0.http } }
}

/// First in each accepted connection's pipeline: closes one that the admission refused, before TLS.
final class RefusedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.close(promise: nil) }
    }
    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}

/// Right after TLS in an HTTP connection's pipeline: carries out ``HTTPConnectionDeadlines`` (TLS
/// handshake, request header, body rate, keep-alive idle). GatewayHTTPHandler reports the request's
/// progress; a WebSocket upgrade removes this handler (the WebSocket has its own idle timeout).
final class HTTPConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var deadlines: HTTPConnectionDeadlines
    private let connections: GatewayConnections
    private var timer: RepeatedTask?

    /// When the connection was accepted: the TLS handshake's deadline counts from there, also when a
    /// handler before this one (``ProtocolSniffer``) waited for the first byte.
    private let acceptedAt: NIODeadline

    init(connections: GatewayConnections, acceptedAt: NIODeadline = .now()) {
        self.connections = connections
        self.acceptedAt = acceptedAt
        self.deadlines = HTTPConnectionDeadlines(limits: connections.limits, acceptedAt: acceptedAt)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.deadlines = HTTPConnectionDeadlines(limits: self.connections.limits, acceptedAt: self.acceptedAt)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // Checked twice a second: a deadline is met within half a second of its time.
        self.timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500))
        { _ in
            let (handler, context) = bound.value
            handler.check(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    private func check(context: ChannelHandlerContext) {
        guard let reason = self.deadlines.expired(now: .now()) else { return }
        self.timer?.cancel()
        self.timer = nil
        self.connections.timedOut(reason)
        self.connections.logger.debug(
            "connection closed by a deadline",
            metadata: ["reason": "\(reason.rawValue)", "peer": "\(context.channel.remoteAddress?.ipAddress ?? "")"]
        )
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.deadlines.bytesArrived(self.unwrapInboundIn(data).readableBytes, now: .now())
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { self.deadlines.tlsHandshakeCompleted(now: .now()) }
        context.fireUserInboundEventTriggered(event)
    }

    // Reported by GatewayHTTPHandler, on the same event loop.
    func headerCompleted() { self.deadlines.headerCompleted(now: .now()) }
    func requestCompleted() { self.deadlines.requestCompleted(now: .now()) }
    func responseSent() { self.deadlines.responseSent(now: .now()) }
}

extension Channel {
    /// The peer's address as the limits, the refusal summary and the audit trail name it.
    var sourceAddress: String { self.remoteAddress?.ipAddress ?? "unknown" }
}
