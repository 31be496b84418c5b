import JumpgateWire
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// What one side needs to take a session's relay-blind path (docs/BLIND-RELAY.md), from StartSession's
/// answer (the client) or the session's start message (the agent).
public struct BlindTicket: Sendable {
    public enum Side: Sendable {
        /// The client: it pins the agent's certificate and presents the session's client secret.
        case client(agentCertificateSHA256: String, clientSecret: String)
        /// The agent: it serves TLS with its own certificate and checks the client's secret.
        case agent(tls: NIOSSLContext, clientSecretSHA256: String)
    }

    public var pairingToken: String
    public var side: Side

    public init(pairingToken: String, side: Side) {
        self.pairingToken = pairingToken
        self.side = side
    }

    var role: PairingLine.Role {
        if case .client = self.side { return .client }
        return .agent
    }
}

/// Why a pairing connection did not become a session's data path; the caller takes the WebSocket path.
public struct BlindPathFailure: Error, CustomStringConvertible {
    public var description: String
}

extension HTTPSEndpoint {
    /// Opens this side's pairing connection to the gateway's port, pairs, and runs end-to-end TLS with the
    /// other side: the client pins the agent's certificate and sends the client secret, the agent checks
    /// it. Then ``SSMStreamFramer`` and the handlers `makeHandlers` returns are added, and the channel is
    /// returned. Anything short of that within `timeout` throws, with the connection closed and nothing of
    /// the session's attached to it: the caller goes to the WebSocket path.
    public func connectBlind(
        _ ticket: BlindTicket,
        eventLoop: any EventLoop,
        timeout: TimeAmount = .seconds(10),
        makeHandlers: @escaping @Sendable (any Channel) throws -> [any ChannelHandler]
    ) async throws -> any Channel {
        let ready = eventLoop.makePromise(of: Void.self)
        let line = PairingLine(role: ticket.role, token: ticket.pairingToken)
        let side = ticket.side
        let clientContext = try JumpgateTLS.blindClientContext()
        var bootstrap = ClientBootstrap(group: eventLoop)
        if let source = self.sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        let channel =
            try await bootstrap
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: TLSSocketReads.recvAllocator)
            .channelOption(.maxMessagesPerRead, value: TLSSocketReads.maxMessagesPerRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try PairingKeepalive.apply(to: channel)
                    let answer = PairingAnswerHandler(
                        line: line,
                        paired: { context in
                            try Self.paired(
                                context,
                                side: side,
                                clientContext: clientContext,
                                ready: ready,
                                makeHandlers: makeHandlers
                            )
                        },
                        failed: { ready.fail($0) }
                    )
                    try channel.pipeline.syncOperations.addHandler(answer)
                }
            }
            .connect(host: self.host, port: self.port)
            .get()
        let timer = eventLoop.scheduleTask(in: timeout) {
            ready.fail(BlindPathFailure(description: "the pairing did not complete within \(timeout.seconds) s"))
        }
        defer { timer.cancel() }
        do {
            try await ready.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return channel
    }

    /// The gateway paired this connection: end-to-end TLS goes in behind the pairing handler.
    private static func paired(
        _ context: ChannelHandlerContext,
        side: BlindTicket.Side,
        clientContext: NIOSSLContext,
        ready: EventLoopPromise<Void>,
        makeHandlers: @escaping @Sendable (any Channel) throws -> [any ChannelHandler]
    ) throws {
        let channel = context.channel
        switch side {
        case .client(let pinned, let secret):
            let tls = try NIOSSLClientHandler(
                context: clientContext,
                serverHostname: nil,
                customVerificationCallback: { certificates, promise in
                    let der = (try? certificates.first?.toDERBytes()) ?? []
                    let matches = !der.isEmpty && SigV4.hexSHA256(der) == pinned.lowercased()
                    promise.succeed(matches ? .certificateVerified : .failed)
                }
            )
            let watcher = BlindHandshakeWatcher(secret: secret) { context in
                try Self.add([SSMStreamFramer()] + (try makeHandlers(channel)), after: context)
                ready.succeed()
            } failed: {
                ready.fail($0)
            }
            try Self.add([tls, watcher], after: context)
        case .agent(let serverContext, let secretSHA256):
            let tls = NIOSSLServerHandler(context: serverContext)
            let check = ClientSecretCheck(expectedSHA256: secretSHA256) { context in
                try Self.add([SSMStreamFramer()] + (try makeHandlers(channel)), after: context)
                ready.succeed()
            } rejected: {
                ready.fail($0)
            }
            try Self.add([tls, check], after: context)
        }
    }

    /// Adds `handlers` behind `context`'s handler in their order, one at a time: each is in place before
    /// the next is added, so what a handler writes when it is added (the agent's session writes its
    /// handshake request at once) goes through the ones before it. (NIO's `addHandlers(_:position:)` with
    /// `.after` inserts the last one first.)
    private static func add(_ handlers: [any ChannelHandler], after context: ChannelHandlerContext) throws {
        var anchor = context.handler
        for handler in handlers {
            try context.pipeline.syncOperations.addHandler(handler, position: .after(anchor))
            anchor = handler
        }
    }
}

/// The client's end of a pairing connection, right behind its TLS: when the handshake completes, with
/// the agent's certificate pinned, it sends the client secret (inside TLS: it is written only then, never
/// before the TLS handler could be in place) and `completed` adds the session's handlers.
final class BlindHandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let secret: String
    private let completed: (ChannelHandlerContext) throws -> Void
    private let failed: (any Error) -> Void
    private var done = false

    init(
        secret: String,
        completed: @escaping (ChannelHandlerContext) throws -> Void,
        failed: @escaping (any Error) -> Void
    ) {
        self.secret = secret
        self.completed = completed
        self.failed = failed
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !self.done, case TLSUserEvent.handshakeCompleted = event {
            self.done = true
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: self.secret)), promise: nil)
            do {
                try self.completed(context)
            } catch {
                self.failed(error)
                return context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.done {
            self.done = true
            self.failed(
                BlindPathFailure(description: "the pairing connection closed during the end-to-end TLS handshake")
            )
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !self.done else { return context.fireErrorCaught(error) }
        self.done = true
        self.failed(BlindPathFailure(description: "the end-to-end TLS handshake failed: \(error)"))
        context.close(promise: nil)
    }
}

extension JumpgateTLS {
    /// The client's end-to-end TLS on the blind path: TLS 1.3 only; the peer is checked by the pinned
    /// certificate hash (the connector's callback), not by a CA or a name.
    public static func blindClientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: configuration)
    }

    /// The agent's end-to-end TLS on the blind path: its own per-process certificate, TLS 1.3 only.
    public static func blindServerContext(certificateDER: [UInt8], keyPEM: String) throws -> NIOSSLContext {
        let certificate = try NIOSSLCertificate(bytes: certificateDER, format: .der)
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(certificate)],
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv13
        configuration.shutdownTimeout = .seconds(2)
        return try NIOSSLContext(configuration: configuration)
    }
}

extension TimeAmount {
    fileprivate var seconds: Int64 { self.nanoseconds / 1_000_000_000 }
}
