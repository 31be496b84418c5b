import ArgumentParser
import Foundation
import JumpgateClient
import JumpgateGateway
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
        abstract: "Run the gateway: the SSM API, agent registration, control and data channels, on one TLS port."
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

    @Option(name: .long, help: "How to print the ready line: text or json.")
    var format: OutputFormat = .text

    @Option(name: .long, help: "Use this certificate chain (PEM) instead of the generated one (needs --tls-key).")
    var tlsCert: String?

    @Option(name: .long, help: "The private key (PEM) for --tls-cert.")
    var tlsKey: String?

    @Option(name: .long, help: "End sessions with no bytes in either direction for this long: 20m, 90s, 1h; 0 never.")
    var idleTimeout: String = "20m"

    @Option(name: .long, help: "End sessions older than this (8h, 30m ...; default: no limit).")
    var maxSessionDuration: String?

    @Option(
        name: .long,
        help: "End a session whose agent stays away this long (killed, or its host down): 2m, 90s."
    )
    var agentLossTimeout: String = "2m"

    @Flag(name: .long, help: "Do not serve Prometheus metrics at GET /metrics.")
    var noMetrics = false

    @Option(name: .long, help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: String?

    @Option(name: .long, help: "Event-loop threads (default: one per core).")
    var threads: Int?

    func run() async throws {
        if let threads = self.threads {
            guard (1...256).contains(threads) else { throw ValidationError("--threads must be from 1 to 256.") }
            NIOSingletons.groupLoopCountSuggestion = threads
        }
        CommandLogging.bootstrap(level: self.logLevel)
        let logger = Logger(label: "jumpgate.server")
        let (host, port) = try parseHostPort(self.listen)
        guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together.")
        }
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
        var configuration = GatewayConfiguration(
            dataDirectory: self.dataDir,
            listenHost: host,
            listenPort: port,
            publicURL: self.publicURL
        )
        configuration.tlsCertificateFile = self.tlsCert
        configuration.tlsKeyFile = self.tlsKey
        configuration.idleTimeoutSeconds = idle == 0 ? .max : idle
        configuration.maximumSessionDurationSeconds = maximum
        configuration.agentLoss.timeoutSeconds = agentLoss
        if !self.noMetrics {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            configuration.metricsRegistry = registry
        }
        let server: GatewayServer
        do {
            server = try await GatewayServer.start(configuration: configuration, logger: logger)
        } catch {
            FileHandle.standardError.write(
                Data("error: the gateway could not start on \(self.listen): \(error)\n".utf8)
            )
            throw ExitCode(1)
        }
        switch self.format {
        case .text:
            emit(
                "Jumpgate gateway ready at \(server.url) (CA: \(server.caFile ?? "the one that issued --tls-cert"), "
                    + "admin credentials: \(server.credentialsFile))\n"
            )
        case .json:
            let ready: JSONValue = [
                "url": .string(server.url), "port": .integer(Int64(server.channel.localAddress?.port ?? port)),
                "caFile": server.caFile.map { .string($0) } ?? .null,
                "credentialsFile": .string(server.credentialsFile),
                "profile": "jumpgate-admin",
            ]
            emit(ready.serialized() + "\n")
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
}
