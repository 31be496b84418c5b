import ArgumentParser
import Foundation
import JumpgateGateway
import JumpgateWire
import Logging
import NIOCore

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

    @Option(name: .long, help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: String?

    func run() async throws {
        CommandLogging.bootstrap(level: self.logLevel)
        let logger = Logger(label: "jumpgate.server")
        let (host, port) = try parseHostPort(self.listen)
        let server: GatewayServer
        do {
            server = try await GatewayServer.start(
                configuration: GatewayConfiguration(
                    dataDirectory: self.dataDir,
                    listenHost: host,
                    listenPort: port,
                    publicURL: self.publicURL
                ),
                logger: logger
            )
        } catch {
            FileHandle.standardError.write(
                Data("error: the gateway could not start on \(self.listen): \(error)\n".utf8)
            )
            throw ExitCode(1)
        }
        switch self.format {
        case .text:
            emit(
                "Jumpgate gateway ready at \(server.url) (CA: \(server.caFile), admin credentials: \(server.credentialsFile))\n"
            )
        case .json:
            let ready: JSONValue = [
                "url": .string(server.url), "port": .integer(Int64(server.channel.localAddress?.port ?? port)),
                "caFile": .string(server.caFile), "credentialsFile": .string(server.credentialsFile),
                "profile": "jumpgate-admin",
            ]
            emit(ready.serialized() + "\n")
        }
        let signal = await waitForTerminationSignal()
        logger.info("shutting down", metadata: ["signal": "\(signal)"])
        await server.shutdown()
    }
}
