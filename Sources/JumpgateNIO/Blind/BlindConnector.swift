import JumpgateWire
import NIOConcurrencyHelpers
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

/// The peer the gateway paired the client with did not present the pinned certificate: someone other
/// than the agent the gateway announced answered. The session goes to the WebSocket path; a client says
/// so as a warning.
public struct BlindPinMismatch: Error, CustomStringConvertible {
    public var description: String {
        "the peer on the relay-blind path did not present the agent's announced certificate"
    }
}

/// One pairing attempt's outcome, decided once, on its event loop: the deadline, a failure, or the
/// session's handlers in place (``HTTPSEndpoint/connectBlind(_:eventLoop:timeout:makeHandlers:)``).
/// Sendable as its mutable state is touched only on `eventLoop` (`NIOLoopBoundBox` checks it) or locked.
final class BlindAttempt: Sendable {
    let ready: EventLoopPromise<Void>
    let eventLoop: any EventLoop
    private let state: NIOLoopBoundBox<(decided: Bool, channel: (any Channel)?)>
    /// Set by the certificate check (on NIOSSL's callback) when the pin did not match.
    let pinFailed = NIOLockedValueBox(false)

    init(ready: EventLoopPromise<Void>, eventLoop: any EventLoop) {
        self.ready = ready
        self.eventLoop = eventLoop
        self.state = .makeBoxSendingValue((false, nil), eventLoop: eventLoop)
    }

    var decided: Bool { self.state.value.decided }
    var channel: (any Channel)? {
        get { self.state.value.channel }
        set { self.state.value.channel = newValue }
    }

    /// Fails the attempt (on the loop) unless it was decided; the connection closes.
    func fail(_ error: any Error) {
        guard !self.state.value.decided else { return }
        self.state.value.decided = true
        self.ready.fail(error)
        self.state.value.channel?.close(promise: nil)
    }

    /// Runs `install` and succeeds, unless the attempt was decided already (then nothing is installed).
    func succeed(_ install: () throws -> Void) throws {
        guard !self.state.value.decided else { return }
        try install()
        self.state.value.decided = true
        self.ready.succeed()
    }
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
        // The whole attempt, connect included, has `timeout`. Every outcome is decided on the loop, once:
        // the deadline, a failure, or the session's handlers in place. After the deadline nothing is
        // added, so a handshake that completes late never attaches the session beside the WebSocket path.
        let attempt = BlindAttempt(ready: eventLoop.makePromise(of: Void.self), eventLoop: eventLoop)
        let deadline = NIODeadline.now() + timeout
        let timer = eventLoop.scheduleTask(deadline: deadline) {
            attempt.fail(BlindPathFailure(description: "the pairing did not complete within \(timeout.seconds) s"))
        }
        defer { timer.cancel() }
        let channel: any Channel
        do {
            channel = try await self.connectPairing(
                ticket,
                attempt: attempt,
                deadline: deadline,
                makeHandlers: makeHandlers
            )
        } catch {
            eventLoop.execute { attempt.fail(error) }
            throw error
        }
        do {
            try await attempt.ready.futureResult.get()
        } catch {
            channel.close(promise: nil)
            if attempt.pinFailed.withLockedValue({ $0 }) { throw BlindPinMismatch() }
            throw error
        }
        return channel
    }

    private func connectPairing(
        _ ticket: BlindTicket,
        attempt: BlindAttempt,
        deadline: NIODeadline,
        makeHandlers: @escaping @Sendable (any Channel) throws -> [any ChannelHandler]
    ) async throws -> any Channel {
        let line = PairingLine(role: ticket.role, token: ticket.pairingToken)
        let side = ticket.side
        let clientContext = try JumpgateTLS.blindClientContext()
        var bootstrap = ClientBootstrap(group: attempt.eventLoop)
        if let source = self.sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        return
            try await bootstrap
            .connectTimeout(max(.milliseconds(1), deadline - .now()))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: TLSSocketReads.recvAllocator)
            .channelOption(.maxMessagesPerRead, value: TLSSocketReads.maxMessagesPerRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try PairingKeepalive.apply(to: channel)
                    attempt.channel = channel
                    let answer = PairingAnswerHandler(
                        line: line,
                        paired: { context in
                            try Self.paired(
                                context,
                                side: side,
                                clientContext: clientContext,
                                attempt: attempt,
                                makeHandlers: makeHandlers
                            )
                        },
                        failed: { attempt.fail($0) }
                    )
                    try channel.pipeline.syncOperations.addHandler(answer)
                }
            }
            .connect(host: self.host, port: self.port)
            .get()
    }

    /// The gateway paired this connection: end-to-end TLS goes in behind the pairing handler.
    private static func paired(
        _ context: ChannelHandlerContext,
        side: BlindTicket.Side,
        clientContext: NIOSSLContext,
        attempt: BlindAttempt,
        makeHandlers: @escaping @Sendable (any Channel) throws -> [any ChannelHandler]
    ) throws {
        guard !attempt.decided else { return }
        let channel = context.channel
        switch side {
        case .client(let pinned, let secret):
            let tls = try NIOSSLClientHandler(
                context: clientContext,
                serverHostname: nil,
                customVerificationCallback: { certificates, promise in
                    let der = (try? certificates.first?.toDERBytes()) ?? []
                    let matches = !der.isEmpty && SigV4.hexSHA256(der) == pinned.lowercased()
                    if !matches { attempt.pinFailed.withLockedValue { $0 = true } }
                    promise.succeed(matches ? .certificateVerified : .failed)
                }
            )
            let watcher = BlindHandshakeWatcher(secret: secret) { context in
                try attempt.succeed { try Self.add([SSMStreamFramer()] + (try makeHandlers(channel)), after: context) }
            } failed: {
                attempt.fail($0)
            }
            try Self.add([tls, watcher], after: context)
        case .agent(let serverContext, let secretSHA256):
            let tls = NIOSSLServerHandler(context: serverContext)
            let check = ClientSecretCheck(expectedSHA256: secretSHA256) { context in
                try attempt.succeed { try Self.add([SSMStreamFramer()] + (try makeHandlers(channel)), after: context) }
            } rejected: {
                attempt.fail($0)
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
    /// certificate hash (the connector's callback, which replaces BoringSSL's chain check), not by a CA or
    /// a name. So it trusts no CA: with the default trust roots, each context parsed the system's whole CA
    /// bundle (about 140 certificates) at every connect and resume, and kept about 1 MiB of them for as long
    /// as the session ran (docs/PERFORMANCE.md, twenty-second session).
    public static func blindClientContext() throws -> NIOSSLContext {
        try NIOSSLContext(configuration: Self.blindClientConfiguration)
    }

    static var blindClientConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.certificateVerification = .noHostnameVerification
        configuration.trustRoots = .certificates([])
        return configuration
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
