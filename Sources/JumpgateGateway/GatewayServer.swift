import FoundationEssentials
import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Prometheus
import ServiceLifecycle

/// How to run a gateway.
public struct GatewayConfiguration: Sendable {
    public var dataDirectory: String
    public var listenHost: String
    public var listenPort: Int
    /// The URL clients and agents use, if not the listen address (it goes into StreamUrl and the certificate).
    public var publicURL: String?
    /// How long a session may stay disconnected (its client or agent away) before it ends.
    public var resumeGraceSeconds: Int64 = 360
    /// Sessions with no bytes in either direction for this long end (AWS's default is 20 minutes).
    public var idleTimeoutSeconds: Int64 = 1200
    /// Sessions older than this end (nil: no limit).
    public var maximumSessionDurationSeconds: Int64?
    /// How long a session waits for its lost agent (``AgentLoss``).
    public var agentLoss = AgentLoss.Policy()
    /// Deadlines, connection caps and the buffer budget (docs/SECURITY.md).
    public var connectionLimits = ConnectionLimits()
    /// The most the store may grow to, in bytes (nil: the disk's room); writes past it fail cleanly.
    public var storeMaximumBytes: Int?
    /// An existing certificate chain and key (PEM) instead of the generated ones.
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// Served at GET /metrics (the executable bootstraps swift-metrics with it); nil: no endpoint.
    public var metricsRegistry: PrometheusCollectorRegistry?
    /// The region and account in ARNs (`--region`, `--account-id`).
    public var resources = ResourceNames()
    /// `--audit-log FILE`: the audit trail as JSON lines too (nil: the store only).
    public var auditLogPath: String?
    /// Audit records older than this are pruned (leaving a checkpoint); nil: kept for ever.
    public var auditRetentionSeconds: Int64? = 365 * 86400
    /// Recordings of shell and command sessions (`--recordings`, `--recording-max-mib`,
    /// `--recording-retention`).
    public var recordings = RecordingSettings()
    /// Whether the port also takes relay-blind pairing connections (docs/BLIND-RELAY.md;
    /// `--no-blind-relay` turns it off, for a port behind a proxy that only lets TLS through).
    public var blindRelay = true

    public init(dataDirectory: String, listenHost: String, listenPort: Int, publicURL: String? = nil) {
        self.dataDirectory = dataDirectory
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.publicURL = publicURL
    }
}

/// A running gateway: one TLS port for the API, registration and every channel.
public final class GatewayServer: Sendable {
    public let state: GatewayState
    public let channel: any Channel
    public let url: String
    /// The CA clients must trust: the generated one, or nil with --tls-cert (trust as that certificate says).
    public let caFile: String?
    public let credentialsFile: String
    /// DATA_DIR/aws.config: the administrator's profile with region, endpoint_url and ca_bundle, for
    /// AWS_CONFIG_FILE (the AWS CLI reads a region only from a config file, never the credentials file).
    public var configFile: String { FilePathText.parent(of: self.credentialsFile) + "/aws.config" }
    let store: GatewayStore
    let sweeper: RepeatedTask
    let lock: DataDirectoryLock
    let logger: Logger

    init(
        state: GatewayState,
        channel: any Channel,
        url: String,
        caFile: String?,
        credentialsFile: String,
        store: GatewayStore,
        sweeper: RepeatedTask,
        lock: DataDirectoryLock,
        logger: Logger
    ) {
        self.lock = lock
        self.logger = logger
        self.state = state
        self.channel = channel
        self.url = url
        self.caFile = caFile
        self.credentialsFile = credentialsFile
        self.store = store
        self.sweeper = sweeper
    }

    /// Stops accepting connections, closes the open ones (clients and agents reconnect to the next
    /// gateway and resume their sessions), then closes the store once every change is written: what the
    /// closing connections change (a session disconnected, an agent offline, a session an agent ended as
    /// it stopped) is stored and audited before the store closes, never written to a closed store.
    public func shutdown() async {
        self.sweeper.cancel()
        try? await self.channel.close()
        if let connections = self.state.connections {
            let open = connections.openConnections
            let left = await connections.closeAll(within: Self.connectionCloseTimeout)
            self.logger.info(
                "shutting down: connections closed",
                metadata: ["closed": "\(open - left)", "still_open": "\(left)"]
            )
        }
        let refusals = self.state.refusalSummaries(all: true)
        Self.logRefusals(refusals, logger: self.logger)
        self.state.auditRefusals(refusals)
        self.state.checkpointTraffic()
        try? await self.state.audit?.drained(on: self.channel.eventLoop).get()
        self.state.audit?.logFile?.close()
        try? await self.store.flush().get()
        try? await self.store.close()
        self.lock.release()
    }

    /// How long a graceful stop waits for its connections to close: more than the 2 s a TLS close waits
    /// for a peer's close_notify (`JumpgateTLS.serverContext`).
    static let connectionCloseTimeout = TimeAmount.seconds(3)

    /// One warning per source per minute for refused requests (never a secret: ids and counts only).
    static func logRefusals(_ lines: [RefusalSummary.Line], logger: Logger) {
        for line in lines {
            let types = line.types.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            logger.warning(
                "refused requests",
                metadata: [
                    "source": "\(line.source)", "count": "\(line.count)", "types": "\(types.joined(separator: ","))",
                    "key_ids": "\(line.keyIDs.joined(separator: ","))",
                ]
            )
        }
    }

    public static func start(
        configuration: GatewayConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) async throws -> GatewayServer {
        // Nothing is written before the data directory is this process's alone, and nothing but the lock
        // before the port is bound (a gateway that cannot start leaves the disk as it found it).
        let lock = try DataDirectoryLock.acquire(directory: configuration.dataDirectory)
        let pipeline = NIOLockedValueBox<(NIOSSLContext, GatewayState)?>(nil)
        let connections = GatewayConnections(limits: configuration.connectionLimits, logger: logger)
        let channel: any Channel
        do {
            channel = try await Self.bind(
                configuration: configuration,
                group: group,
                pipeline: pipeline,
                connections: connections,
                logger: logger
            )
        } catch {
            lock.abandon()
            throw error
        }
        do {
            return try await Self.start(
                configuration: configuration,
                group: group,
                channel: channel,
                pipeline: pipeline,
                connections: connections,
                lock: lock,
                logger: logger
            )
        } catch {
            try? await channel.close()
            lock.release()
            throw error
        }
    }

    /// Binds the listening socket without accepting yet (connections wait in the backlog until the
    /// pipeline's TLS context and state are set).
    static func bind(
        configuration: GatewayConfiguration,
        group: any EventLoopGroup,
        pipeline: NIOLockedValueBox<(NIOSSLContext, GatewayState)?>,
        connections: GatewayConnections,
        logger: Logger
    ) async throws -> any Channel {
        do {
            return try await ServerBootstrap(group: group)
                .serverChannelInitializer { channel in
                    // Out of file descriptors (EMFILE/ENFILE): stop accepting for a second instead of
                    // spinning on a listening socket that stays readable; counted as refusals.
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { error in
                                connections.acceptFailed(error)
                                return .seconds(1)
                            }
                        )
                    }
                }
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.autoRead, value: false)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                // Reads of up to 128 KiB, one per wake-up: full TLS records and one relay write per burst
                // (nio-data-path-measurements.md), and NIOSSL's burst buffer bounded (TLSSocketReads).
                .childChannelOption(.recvAllocator, value: TLSSocketReads.recvAllocator)
                .childChannelOption(.maxMessagesPerRead, value: TLSSocketReads.maxMessagesPerRead)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard let (sslContext, state) = pipeline.withLockedValue({ $0 }) else {
                            throw GatewayStartError("the gateway is not ready")
                        }
                        // Over the per-source or total cap: closed at once, before any TLS work.
                        guard connections.admit(channel) else {
                            try channel.pipeline.syncOperations.addHandler(RefusedConnectionHandler())
                            return
                        }
                        guard state.blindRelay else {
                            return try Self.configurePipeline(
                                channel: channel,
                                sslContext: sslContext,
                                state: state,
                                logger: logger
                            )
                        }
                        // TLS, or a relay-blind pairing connection: the first byte says which.
                        let acceptedAt = NIODeadline.now()
                        let sniffer = ProtocolSniffer(connections: state.connections) { channel in
                            try Self.configurePipeline(
                                channel: channel,
                                sslContext: sslContext,
                                state: state,
                                logger: logger,
                                acceptedAt: acceptedAt
                            )
                        } pairing: { channel in
                            try channel.pipeline.syncOperations.addHandler(PairingHandler(state: state, logger: logger))
                        }
                        try channel.pipeline.syncOperations.addHandler(sniffer)
                    }
                }
                .bind(host: configuration.listenHost, port: configuration.listenPort)
                .get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw GatewayStartError(
                "the address \(configuration.listenHost):\(configuration.listenPort) is already in use "
                    + "(another gateway or program listens there); stop it or give another --listen"
            )
        } catch let error as IOError where error.errnoCode == EACCES {
            throw GatewayStartError(
                "no permission to listen on \(configuration.listenHost):\(configuration.listenPort) "
                    + "(ports below 1024 need root or CAP_NET_BIND_SERVICE); give another --listen"
            )
        } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL {
            throw GatewayStartError(
                "\(configuration.listenHost) is not an address of this machine; give one of its addresses "
                    + "(or 0.0.0.0) with --listen"
            )
        }
    }

    static func start(
        configuration: GatewayConfiguration,
        group: any EventLoopGroup,
        channel: any Channel,
        pipeline: NIOLockedValueBox<(NIOSSLContext, GatewayState)?>,
        connections: GatewayConnections,
        lock: DataDirectoryLock,
        logger: Logger
    ) async throws -> GatewayServer {
        let directory: GatewayDataDirectory
        do {
            directory = try GatewayDataDirectory.prepare(configuration: configuration)
        } catch let error as GatewayStartError {
            throw error
        } catch {
            throw GatewayStartError(
                "the TLS files in \(configuration.dataDirectory)/tls cannot be created or read; check that "
                    + "directory (or remove it to have them made anew), or give another --data-dir"
            )
        }
        let store = try await GatewayStore.open(
            directory: configuration.dataDirectory,
            eventLoop: group.any(),
            logger: logger
        )
        if let bytes = configuration.storeMaximumBytes {
            do {
                try await store.limitSize(toBytes: bytes)
            } catch {
                try? await store.close()
                throw error
            }
        }
        let audit: AuditTrail
        do {
            audit = try await Self.openAudit(configuration: configuration, store: store, logger: logger)
        } catch {
            try? await store.close()
            throw error
        }
        let state = GatewayState(
            clock: { Int64(Date().timeIntervalSince1970) },
            store: store,
            metricsRegistry: configuration.metricsRegistry,
            limits: {
                var limits = GatewayState.SessionLimits()
                limits.idleTimeoutSeconds = configuration.idleTimeoutSeconds
                limits.maximumDurationSeconds = configuration.maximumSessionDurationSeconds
                return limits
            }(),
            recordings: configuration.recordings,
            connections: connections,
            resources: configuration.resources,
            audit: audit,
            blindRelay: configuration.blindRelay
        )
        do {
            state.restore(try await store.load())
        } catch {
            try? await store.close()
            throw error
        }
        state.ensureBootstrapAdministrator(accessKeyID: directory.adminAccessKeyID, secret: directory.adminSecret)
        // Preferences stored by an earlier Jumpgate that this one no longer reads would apply nothing,
        // silently: said at start, with what to do.
        do {
            _ = try state.documentCatalog.find(BuiltInDocuments.shell)
        } catch {
            logger.error(
                "the account's preferences (SSM-SessionManagerRunShell's default version) do not parse: their idle timeout, maximum duration, run-as account, shell profile and recordInput do not apply; update the document",
                metadata: ["problem": "\(error)"]
            )
        }
        // Recordings completed just before a stop whose digest was not audited yet.
        for sessionID in state.unsealedRecordings() {
            Task { await state.sealRecording(sessionID: sessionID, source: "jumpgate") }
        }
        let retention = configuration.auditRetentionSeconds
        if let retention { await Self.pruneAudit(state: state, olderThan: retention, logger: logger) }
        let sweeper = Self.startSweeper(
            state: state,
            configuration: configuration,
            on: group.any(),
            logger: logger
        )
        let sslContext: NIOSSLContext
        if let certificateFile = configuration.tlsCertificateFile, let keyFile = configuration.tlsKeyFile {
            // An existing certificate (a public CA's, or the company's): clients trust it their usual way.
            do {
                sslContext = try JumpgateTLS.serverContext(
                    certificatePEM: try String(contentsOfFile: certificateFile, encoding: .utf8),
                    keyPEM: try String(contentsOfFile: keyFile, encoding: .utf8)
                )
            } catch {
                sweeper.cancel()
                try? await store.close()
                throw GatewayStartError(
                    "cannot use --tls-cert \(certificateFile) / --tls-key \(keyFile): they must be readable PEM files, "
                        + "the certificate chain first, and the key must match the certificate"
                )
            }
        } else {
            do {
                sslContext = try JumpgateTLS.serverContext(
                    certificatePEM: directory.serverCertificatePEM,
                    keyPEM: directory.serverKeyPEM
                )
            } catch {
                sweeper.cancel()
                try? await store.close()
                throw GatewayStartError(
                    "the certificate in \(configuration.dataDirectory)/tls is damaged; remove tls/server.pem and "
                        + "tls/server-key.pem to have them made anew"
                )
            }
        }

        pipeline.withLockedValue { $0 = (sslContext, state) }
        try await channel.setOption(ChannelOptions.autoRead, value: true).get()
        let port = channel.localAddress?.port ?? configuration.listenPort
        let host = configuration.listenHost.contains(":") ? "[\(configuration.listenHost)]" : configuration.listenHost
        let url =
            configuration.publicURL ?? "https://\(host == "0.0.0.0" || host == "[::]" ? "localhost" : host):\(port)"
        state.setPublicURL(url)
        let caFile = configuration.tlsCertificateFile == nil ? directory.caFile : nil
        do {
            try GatewayDataDirectory.writeClientConfig(
                root: configuration.dataDirectory,
                url: url,
                caFile: caFile,
                region: configuration.resources.region
            )
        } catch {
            sweeper.cancel()
            try? await store.close()
            throw error
        }
        logger.info("gateway listening", metadata: ["url": "\(url)"])
        return GatewayServer(
            state: state,
            channel: channel,
            url: url,
            caFile: caFile,
            credentialsFile: directory.credentialsFile,
            store: store,
            sweeper: sweeper,
            lock: lock,
            logger: logger
        )
    }

    static func configurePipeline(
        channel: any Channel,
        sslContext: NIOSSLContext,
        state: GatewayState,
        logger: Logger,
        acceptedAt: NIODeadline = .now()
    ) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        if let connections = state.connections {
            try channel.pipeline.syncOperations.addHandler(
                HTTPConnectionGuard(connections: connections, acceptedAt: acceptedAt)
            )
        }
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(
            GatewayHTTPHandler(api: GatewayAPI(state: state), logger: logger)
        )
    }
}

/// The gateway as a ServiceLifecycle service: it runs until graceful shutdown (SIGTERM/SIGINT through the
/// ServiceGroup), then stops accepting connections and closes the store after its last write. Open
/// sessions are not ended: their clients and agents resume them when a gateway is back on the same store.
public struct GatewayService: Service {
    let server: GatewayServer
    let logger: Logger

    public init(server: GatewayServer, logger: Logger) {
        self.server = server
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        self.logger.info("shutting down: closing the listener, the open connections and the store")
        await self.server.shutdown()
    }
}
