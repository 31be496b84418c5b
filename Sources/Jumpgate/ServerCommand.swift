import ArgumentParser
import FoundationEssentials
import JumpgateAccess
import JumpgateClient
import JumpgateGateway
import JumpgateNIO
import JumpgateWire
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the gateway: the SSM API, agent registration, control and data channels, on one TLS port.",
        subcommands: [ServerBackupCommand.self]
    )

    @Option(
        name: .long,
        help:
            "Directory for the CA, the server certificate and the administrator's credentials (created on first start)."
    )
    var dataDir: String

    @Option(name: .long, help: "Address and port to listen on; port 0 picks a free one.")
    var listen: String = "127.0.0.1:8443"

    @Option(name: .long, help: "The URL clients and agents use, when it is not the listen address.")
    var publicURL: String?

    @Option(
        name: .long,
        help: "The region in ARNs and in DATA_DIR/aws.config (signatures for any region are accepted)."
    )
    var region: String = "us-east-1"

    @Option(name: .long, help: "The 12-digit account id in ARNs.")
    var accountId: String = ResourceNames.defaultAccount

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Also write the audit trail to this file as JSON lines (reopened on SIGHUP, for log rotation).",
            valueName: "file"
        )
    )
    var auditLog: String?

    @Option(name: .long, help: "Prune audit records older than this (365d, 90d ...; 0: keep for ever).")
    var auditRetention: String = "365d"

    @Option(
        name: .long,
        help: "Record shell and command sessions (on, the default, or off); their agents deliver the recordings."
    )
    var recordings: String = "on"

    @Option(name: .long, help: "The most a session's recording may hold, in MiB; the rest is not recorded.")
    var recordingMaxMib: Int = 64

    @Option(name: .long, help: "Delete recordings of sessions that ended longer ago (90d, 30d ...; 0: keep for ever).")
    var recordingRetention: String = "90d"

    @Option(
        name: .long,
        help: OutputFormat.help(
            "the ready line as {\"url\", \"port\", \"caFile\", \"credentialsFile\", \"configFile\", \"profile\", \"pid\"}."
        )
    )
    var format: OutputFormat = .text

    @Flag(
        name: .long,
        help:
            "Run in the background: return once the gateway is ready, after printing its ready line (its log goes to DATA_DIR/gateway.log; stop it with kill $(cat DATA_DIR/gateway.lock))."
    )
    var detach = false

    @Option(name: .long, help: "Use this certificate chain (PEM) instead of the generated one (needs --tls-key).")
    var tlsCert: String?

    @Option(name: .long, help: "The private key (PEM) for --tls-cert.")
    var tlsKey: String?

    @Flag(
        name: .customLong("blind-relay"),
        inversion: .prefixedNo,
        help:
            "Carry relay-blind pairs on the listen port: jumpgate forward and the agent then encrypt end to end, and the gateway only passes bytes (turn off behind a proxy that lets only TLS through)."
    )
    var blindRelay = true

    @Option(name: .long, help: "End sessions with no bytes in either direction for this long: 20m, 90s, 1h; 0 never.")
    var idleTimeout: String = "20m"

    @Option(name: .long, help: "End sessions older than this (8h, 30m ...; default: no limit).")
    var maxSessionDuration: String?

    @Option(
        name: .long,
        help: "End a session whose agent stays away this long (killed, host down); default 5m."
    )
    var agentLossTimeout: String = "5m"

    @Flag(name: .long, help: "Do not serve Prometheus metrics at GET /metrics.")
    var noMetrics = false

    @Option(name: .long, help: LogLevel.help)
    var logLevel: LogLevel?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Event-loop threads (default: 1).",
            discussion: """
                One loop keeps both data channels of a session on one thread, so relaying a frame never \
                crosses threads; on a 2-core machine that costs a quarter less CPU per GiB than a loop per \
                core (docs/PERFORMANCE.md). On a large machine, more loops add cores; frames that cross \
                loops then hop once per read burst.
                """
        )
    )
    var threads: Int?

    @Option(name: .long, help: "Close a connection whose TLS handshake takes longer (10s).")
    var tlsHandshakeTimeout: String = "10s"

    @Option(
        name: .long,
        help: "Close a connection whose request header is not complete this long after its first byte (10s)."
    )
    var headerTimeout: String = "10s"

    @Option(name: .long, help: "After 10 s, a request body must average this many bytes a second (1024).")
    var minimumBodyRate: Int = 1024

    @Option(
        name: .long,
        help: "Close an idle HTTP connection (before a request, between requests) after this long (60s)."
    )
    var keepaliveTimeout: String = "60s"

    @Option(name: .long, help: "Concurrent connections allowed from one source address (1000).")
    var maxConnectionsPerSource: Int = 1000

    @Option(name: .long, help: "Concurrent connections allowed in all (10000).")
    var maxConnections: Int = 10000

    @Option(name: .long, help: "The most the store may grow to, in KiB (default: the disk's room).")
    var storeMaxKib: Int?

    @Option(
        name: .long,
        help: "MiB the gateway may hold for all peers in request bodies and relays' held frames (256)."
    )
    var bufferBudgetMib: Int = 256

    func validate() throws {
        if let threads = self.threads, !(1...256).contains(threads) {
            throw ValidationError("--threads must be from 1 to 256.")
        }
        _ = try parseHostPort(self.listen)
        guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together.")
        }
        _ = try self.durations()
        _ = try self.connectionLimits()
        if let kib = self.storeMaxKib, kib < 64 { throw ValidationError("--store-max-kib must be at least 64.") }
        guard self.accountId.count == 12, self.accountId.allSatisfy(\.isWholeNumber) else {
            throw ValidationError("--account-id must be 12 digits.")
        }
        guard !self.region.isEmpty, self.region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw ValidationError("--region '\(self.region)' is not a region name such as us-east-1.")
        }
        guard ["on", "off"].contains(self.recordings) else {
            throw ValidationError("--recordings is on or off, not '\(self.recordings)'.")
        }
        guard (1...1024).contains(self.recordingMaxMib) else {
            throw ValidationError("--recording-max-mib must be from 1 to 1024.")
        }
        guard DurationText.seconds(self.recordingRetention) != nil else {
            throw ValidationError(
                "--recording-retention '\(self.recordingRetention)' is not a duration such as 90d (0: for ever)."
            )
        }
        guard DurationText.seconds(self.auditRetention) != nil else {
            throw ValidationError(
                "--audit-retention '\(self.auditRetention)' is not a duration such as 365d (0: for ever)."
            )
        }
    }

    /// `--idle-timeout` (0: never), `--max-session-duration`, `--agent-loss-timeout`, in seconds.
    func durations() throws -> (idle: Int64, maximum: Int64?, agentLoss: Int64) {
        guard let idle = DurationText.seconds(self.idleTimeout) else {
            throw ValidationError(
                "--idle-timeout '\(self.idleTimeout)' is not a duration such as 20m, 90s or 1h (0: never)."
            )
        }
        let maximum = try self.maxSessionDuration.map { text -> Int64 in
            guard let seconds = DurationText.seconds(text), seconds > 0 else {
                throw ValidationError("--max-session-duration '\(text)' is not a duration such as 8h or 30m.")
            }
            return seconds
        }
        guard let agentLoss = DurationText.seconds(self.agentLossTimeout), agentLoss > 0 else {
            throw ValidationError(
                "--agent-loss-timeout '\(self.agentLossTimeout)' is not a duration such as 2m or 90s."
            )
        }
        return (idle, maximum, agentLoss)
    }

    func run() async throws {
        if self.detach {
            try Detach.start(directory: self.dataDir, flag: "--data-dir", logPath: self.dataDir + "/gateway.log")
            return
        }
        let readyDescriptor = Detach.takeReadyDescriptor()
        NIOSingletons.groupLoopCountSuggestion = self.threads ?? 1
        try CommandLogging.bootstrap(level: self.logLevel)
        let logger = Logger(label: "jumpgate.server")
        HeapTrimmer.start(on: MultiThreadedEventLoopGroup.singleton.next())
        let (host, port) = try parseHostPort(self.listen)
        let (idle, maximum, agentLoss) = try self.durations()
        var configuration = GatewayConfiguration(
            dataDirectory: self.dataDir,
            listenHost: host,
            listenPort: port,
            publicURL: self.publicURL
        )
        configuration.tlsCertificateFile = self.tlsCert
        configuration.tlsKeyFile = self.tlsKey
        configuration.blindRelay = self.blindRelay
        configuration.idleTimeoutSeconds = idle == 0 ? .max : idle
        configuration.maximumSessionDurationSeconds = maximum
        configuration.agentLoss.timeoutSeconds = agentLoss
        configuration.connectionLimits = try self.connectionLimits()
        if let kib = self.storeMaxKib { configuration.storeMaximumBytes = kib << 10 }
        configuration.resources = ResourceNames(region: self.region, account: self.accountId)
        configuration.auditLogPath = self.auditLog
        let retention = DurationText.seconds(self.auditRetention) ?? 0
        configuration.auditRetentionSeconds = retention == 0 ? nil : retention
        configuration.recordings.enabled = self.recordings == "on"
        configuration.recordings.maximumBytes = Int64(self.recordingMaxMib) << 20
        let keep = DurationText.seconds(self.recordingRetention) ?? 0
        configuration.recordings.retentionSeconds = keep == 0 ? nil : keep
        if !self.noMetrics {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            configuration.metricsRegistry = registry
        }
        let server: GatewayServer
        do {
            server = try await GatewayServer.start(configuration: configuration, logger: logger)
        } catch let error as GatewayStartError {
            // Already says what is wrong and what to do (the address, or the data directory).
            throw CommandFailure("The gateway could not start: \(error).")
        } catch {
            throw CommandFailure(
                "The gateway could not start: \(FailureText.binding(host: host, port: port, NetworkFailure(error)))"
            )
        }
        let readyLine: String
        switch self.format {
        case .text:
            readyLine =
                ("Jumpgate gateway ready at \(server.url) (pid \(getpid()); CA: \(server.caFile ?? "the one that issued --tls-cert"), "
                    + "admin credentials: \(server.credentialsFile), AWS config: \(server.configFile))\n")
        case .json:
            let ready: JSONValue = [
                "url": .string(server.url), "port": .integer(Int64(server.channel.localAddress?.port ?? port)),
                "caFile": server.caFile.map { .string($0) } ?? .null,
                "credentialsFile": .string(server.credentialsFile), "configFile": .string(server.configFile),
                "profile": "jumpgate-admin", "pid": .integer(Int64(getpid())),
            ]
            readyLine = ready.serialized() + "\n"
        }
        emit(readyLine)
        Detach.announceReady(readyLine, to: readyDescriptor)
        // SIGHUP: reopen the audit log (after logrotate moved it).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        Task {
            for await _ in hangups { server.reopenAuditLog() }
        }
        // SIGTERM/SIGINT: graceful shutdown through ServiceLifecycle.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: GatewayService(server: server, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    /// The connection limits from the flags, validated.
    func connectionLimits() throws -> ConnectionLimits {
        func duration(_ text: String, _ flag: String) throws -> TimeAmount {
            guard let seconds = DurationText.seconds(text), seconds > 0 else {
                throw ValidationError("--\(flag) '\(text)' is not a positive duration such as 10s or 1m.")
            }
            return .seconds(seconds)
        }
        var limits = ConnectionLimits()
        limits.tlsHandshakeTimeout = try duration(self.tlsHandshakeTimeout, "tls-handshake-timeout")
        limits.requestHeaderTimeout = try duration(self.headerTimeout, "header-timeout")
        limits.keepAliveIdleTimeout = try duration(self.keepaliveTimeout, "keepalive-timeout")
        guard self.minimumBodyRate > 0 else { throw ValidationError("--minimum-body-rate must be positive.") }
        limits.minimumBodyRate = self.minimumBodyRate
        guard self.maxConnectionsPerSource > 0, self.maxConnections > 0 else {
            throw ValidationError("--max-connections-per-source and --max-connections must be positive.")
        }
        limits.maximumConnectionsPerSource = self.maxConnectionsPerSource
        limits.maximumConnections = self.maxConnections
        guard (1...65536).contains(self.bufferBudgetMib) else {
            throw ValidationError("--buffer-budget-mib must be from 1 to 65536.")
        }
        limits.bufferBudget = self.bufferBudgetMib << 20
        return limits
    }
}
