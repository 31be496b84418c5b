import ArgumentParser
import Foundation
import JumpgateAgent
import Logging
import NIOCore

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "The jump-server side: register once, then run.",
        subcommands: [AgentRegisterCommand.self, AgentRunCommand.self]
    )
}

struct AgentRegisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract:
            "Register this host with a gateway using an activation, and store the credentials in the state directory."
    )

    @Option(name: .long, help: "The gateway, https://HOST:PORT.") var endpoint: String
    @Option(name: .long, help: "The gateway's CA certificate (DATA_DIR/tls/ca.pem on the gateway).") var caFile: String
    @Option(name: .long, help: "Activation id from CreateActivation.") var activationId: String
    @Option(name: .long, help: "Activation code from CreateActivation.") var activationCode: String
    @Option(name: .long, help: "Where to keep the registration (files are 0600).") var stateDir: String
    @Option(
        name: .long,
        help: "HOST:PORTS this agent may forward to (repeatable), e.g. 198.18.0.0/15:3306, '*.vpc.internal:443'."
    )
    var allow: [String] = []
    @Option(name: .long, help: "HOST:PORTS this agent must never forward to (repeatable); deny wins.") var deny:
        [String] = []
    @Option(name: .long, help: "The name shown in DescribeInstanceInformation (default: the hostname).") var name:
        String?
    @Flag(name: .long, help: "Replace an existing registration in the state directory.") var force = false

    func run() async throws {
        CommandLogging.bootstrap(level: nil)
        do {
            let instanceID = try await AgentRegistration.register(
                endpoint: self.endpoint,
                caFile: self.caFile,
                activationID: self.activationId,
                activationCode: self.activationCode,
                stateDirectory: self.stateDir,
                allow: self.allow,
                deny: self.deny,
                name: self.name,
                force: self.force
            )
            emit(instanceID + "\n")
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct AgentRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Keep the control channel to the gateway up and serve port-forwarding sessions."
    )

    @Option(name: .long, help: "The state directory written by 'agent register'.") var stateDir: String
    @Option(name: .long, help: "Replace the registered allow-list (repeatable HOST:PORTS).") var allow: [String] = []
    @Option(name: .long, help: "Replace the registered deny-list (repeatable HOST:PORTS).") var deny: [String] = []
    @Option(name: .long, help: "Seconds to wait for a destination to accept a connection.") var dialTimeout: Int = 10
    @Flag(name: .long, help: "Offer none of the Jumpgate fast-path extensions (behave like the official agent).")
    var noExtensions = false
    @Option(
        name: .long,
        help: "Report this AgentVersion instead (test mode: an old version makes the official plugin use basic mode)."
    )
    var compatVersion: String?
    @Option(name: .long, help: "Log level (trace, debug, info, notice, warning, error).") var logLevel: String?

    func run() async throws {
        CommandLogging.bootstrap(level: self.logLevel)
        let logger = Logger(label: "jumpgate.agent")
        var options = AgentRunner.Options()
        options.dialTimeout = .seconds(Int64(self.dialTimeout))
        options.offerExtensions = !self.noExtensions
        if let version = self.compatVersion { options.reportedVersion = version }
        let runner: AgentRunner
        do {
            let state = try AgentStateDirectory.load(from: self.stateDir)
            runner = try AgentRunner(
                state: state,
                allow: self.allow.isEmpty ? nil : self.allow,
                deny: self.deny.isEmpty ? nil : self.deny,
                options: options,
                logger: logger
            )
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let task = Task { await runner.run() }
        let signal = await waitForTerminationSignal()
        logger.info("stopping: draining sessions", metadata: ["signal": "\(signal)"])
        task.cancel()
        await runner.drain()
    }
}
