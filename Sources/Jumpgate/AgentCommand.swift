import ArgumentParser
import FoundationEssentials
import JumpgateAgent
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import UnixSignals

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "The jump-server side: register once, then run.",
        subcommands: [AgentRegisterCommand.self, AgentRunCommand.self, AgentAllowListCommand.self]
    )
}

struct AgentRegisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract:
            "Register this host with a gateway using an activation, and store the credentials in the state directory."
    )

    @OptionGroup var gateway: GatewayOptions
    @Option(name: .long, help: .hidden) var endpoint: String?
    @Option(name: .long, help: ArgumentHelp("Activation id from create-activation.", valueName: "id"))
    var activationId: String
    @Option(name: .long, help: ArgumentHelp("Activation code from create-activation.", valueName: "code"))
    var activationCode: String
    @Option(name: .long, help: ArgumentHelp("Where to keep the registration (files are 0600).", valueName: "dir"))
    var stateDir: String
    @Option(
        name: .long,
        help: ArgumentHelp(
            "HOST:PORTS this agent may forward to (repeatable), e.g. 198.18.0.0/15:3306, '*.vpc.internal:443'. Without it the agent refuses every destination.",
            valueName: "host:ports"
        )
    )
    var allow: [String] = []
    @Option(
        name: .long,
        help: ArgumentHelp(
            "HOST:PORTS this agent must never forward to (repeatable); deny wins.",
            valueName: "host:ports"
        )
    )
    var deny: [String] = []
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The name shown in 'instances list' (default: the activation's default name, else the hostname).",
            valueName: "name"
        )
    )
    var name: String?
    @Flag(name: .long, help: "Replace an existing registration in the state directory.") var force = false
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Tag the instance (repeatable); policies see it as ssm:resourceTag/KEY.",
            valueName: "KEY=VALUE"
        )
    )
    var tag: [String] = []
    @Option(name: .long, help: OutputFormat.help("{\"InstanceId\", \"StateDir\", \"Allow\", \"Deny\"}."))
    var format: OutputFormat = .text

    func validate() throws {
        if self.endpoint != nil, self.gateway.endpointURL != nil {
            throw ValidationError("--endpoint is the old name of --endpoint-url: give only --endpoint-url.")
        }
        for tag in self.tag where !tag.contains("=") || tag.hasPrefix("=") {
            throw ValidationError("--tag '\(tag)' is not KEY=VALUE.")
        }
        do {
            _ = try AllowList(allow: self.allow, deny: self.deny)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        try CommandLogging.bootstrap(level: nil)
        var options = self.gateway
        options.endpointURL = options.endpointURL ?? self.endpoint
        let location = try options.location()
        guard let caFile = location.caFile else {
            throw CommandFailure(
                "No CA for the gateway: pass --ca-file DATA_DIR/tls/ca.pem (from the gateway's data directory) or set AWS_CA_BUNDLE."
            )
        }
        if self.allow.isEmpty {
            StatusLine.withLineCleared {
                StandardStream.error.write(
                    "Warning: no --allow given, so this agent will refuse every destination. Add patterns later with 'jumpgate agent run --allow HOST:PORTS', or register again with --allow and --force.\n"
                )
            }
        }
        let instanceID: String
        do {
            instanceID = try await AgentRegistration.register(
                endpoint: location.endpointURL,
                caFile: caFile,
                activationID: self.activationId,
                activationCode: self.activationCode,
                stateDirectory: self.stateDir,
                allow: self.allow,
                deny: self.deny,
                name: self.name,
                force: self.force,
                tags: self.tag.map { (String($0.prefix { $0 != "=" }), String($0.drop { $0 != "=" }.dropFirst())) }
            )
        } catch let error as AgentError {
            throw CommandFailure(error.description)
        }
        switch self.format {
        case .text:
            emit(instanceID + "\n")
        case .json:
            let result: JSONValue = [
                "InstanceId": .string(instanceID), "StateDir": .string(self.stateDir),
                "Allow": .array(self.allow.map { .string($0) }), "Deny": .array(self.deny.map { .string($0) }),
            ]
            emit(result.serialized() + "\n")
        }
    }
}

struct AgentRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract:
            "Keep the control channel to the gateway up and serve port-forwarding sessions (and shells, with --allow-shell)."
    )

    @Option(name: .long, help: "The state directory written by 'agent register'.") var stateDir: String
    @Option(name: .long, help: "Replace the registered allow-list (repeatable HOST:PORTS).") var allow: [String] = []
    @Option(name: .long, help: "Replace the registered deny-list (repeatable HOST:PORTS).") var deny: [String] = []
    @Option(name: .long, help: "Seconds to wait for a destination to accept a connection.") var dialTimeout: Int = 10
    @Flag(name: .long, help: "Offer none of the Jumpgate fast-path extensions (behave like the official agent).")
    var noExtensions = false
    @Flag(
        name: .long,
        help:
            "Serve no relay-blind path: every session's bytes then go through the gateway's TLS, as with the official agent (docs/BLIND-RELAY.md)."
    )
    var noBlindPath = false
    @Option(
        name: .long,
        help: "Report this AgentVersion instead (test mode: an old version makes the official plugin use basic mode)."
    )
    var compatVersion: String?
    @Option(
        name: .long,
        help:
            "Seconds between log summaries of what a session's client sent that the agent refused (one line per session)."
    )
    var refusalSummaryInterval: Int = 60
    @Flag(
        name: .long,
        help:
            "Serve shell and command sessions (a login shell, or a command, on this host for users the gateway's policies allow). Off by default: without it a compromised gateway gets no shell here."
    )
    var allowShell = false
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The account shells and commands run as (default: \(ShellAccounts.defaultUser), created on first use, when the agent runs as root; else the agent's own; root only if named here).",
            valueName: "user"
        )
    )
    var shellUser: String?
    @Option(
        name: .long,
        parsing: .upToNextOption,
        help: ArgumentHelp(
            "Accounts the gateway's session documents may ask shells to run as (runAsDefaultUser; none by default, never root): without this, a compromised gateway cannot choose an account such as one with sudo rights.",
            valueName: "user"
        )
    )
    var allowRunAs: [String] = []
    @Option(name: .long, help: LogLevel.help) var logLevel: LogLevel?
    @Flag(
        name: .long,
        help:
            "Run in the background: return once the control channel is up (log in STATE_DIR/agent.log; stop it with kill $(cat STATE_DIR/agent.pid))."
    )
    var detach = false

    func validate() throws {
        if let user = self.shellUser {
            guard self.allowShell else { throw ValidationError("--shell-user needs --allow-shell.") }
            if case .failure(let refusal) = ShellAccounts.choose(
                configured: user,
                agentIsRoot: geteuid() == 0,
                agentUser: ShellAccounts.current()?.name ?? "uid \(geteuid())"
            ) {
                throw ValidationError("\(refusal)")
            }
            guard ShellAccounts.lookup(user) != nil else {
                throw ValidationError("--shell-user \(user): there is no such user on this host; create it first.")
            }
        }
        if !self.allowRunAs.isEmpty {
            guard self.allowShell else { throw ValidationError("--allow-run-as needs --allow-shell.") }
            guard self.shellUser == nil, geteuid() == 0 else {
                throw ValidationError(
                    "--allow-run-as works for an agent that runs as root without --shell-user: otherwise shells run only as one account."
                )
            }
            for user in self.allowRunAs {
                guard ShellAccounts.isValidName(user), user != "root" else {
                    throw ValidationError(
                        "--allow-run-as \(user): give user names, never root (only --shell-user root runs root shells)."
                    )
                }
            }
        }
        guard (1...86_400).contains(self.refusalSummaryInterval) else {
            throw ValidationError("--refusal-summary-interval must be between 1 and 86400 seconds.")
        }
        do {
            if !self.allow.isEmpty || !self.deny.isEmpty { _ = try AllowList(allow: self.allow, deny: self.deny) }
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        if self.detach {
            try Detach.start(directory: self.stateDir, flag: "--state-dir", logPath: self.stateDir + "/agent.log")
            return
        }
        let readyDescriptor = Detach.takeReadyDescriptor()
        try CommandLogging.bootstrap(level: self.logLevel)
        let logger = Logger(label: "jumpgate.agent")
        HeapTrimmer.start(on: MultiThreadedEventLoopGroup.singleton.next())
        var options = AgentRunner.Options()
        options.dialTimeout = .seconds(Int64(self.dialTimeout))
        options.offerExtensions = !self.noExtensions
        options.blindPath = !self.noBlindPath
        options.refusalSummarySeconds = Int64(self.refusalSummaryInterval)
        options.allowShell = self.allowShell
        options.shellUser = self.shellUser
        options.allowedRunAs = Set(self.allowRunAs)
        if let version = self.compatVersion { options.reportedVersion = version }
        let runner: AgentRunner
        do {
            let state = try AgentStateDirectory.load(from: self.stateDir)
            let announced = NIOLockedValueBox(false)
            let line =
                "Jumpgate agent \(state.instanceID) connected to \(state.endpoint) (pid \(getpid()); "
                + "log \(self.stateDir)/agent.log when detached)\n"
            options.onConnected = {
                let first = announced.withLockedValue { was in
                    defer { was = true }
                    return !was
                }
                if first { Detach.announceReady(line, to: readyDescriptor) }
            }
            runner = try AgentRunner(
                state: state,
                allow: self.allow.isEmpty ? nil : self.allow,
                deny: self.deny.isEmpty ? nil : self.deny,
                options: options,
                logger: logger
            )
        } catch {
            // AgentError and WireError (a bad --allow) already say what is wrong and what to do.
            throw CommandFailure("\(error)")
        }
        // STATE_DIR/agent.pid names this process while it runs, and locks the directory to it.
        let lock: AgentRunLock
        do {
            lock = try AgentRunLock.acquire(stateDirectory: self.stateDir)
        } catch {
            throw CommandFailure("\(error)")
        }
        defer { lock.release() }
        let task = Task { await runner.run() }
        // SIGHUP: the allow-list changed in the state directory (`jumpgate agent allow-list`).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let reloader = Task {
            for await _ in hangups { runner.reloadAllowList() }
        }
        defer { reloader.cancel() }
        let signal = await waitForTerminationSignal()
        logger.info("stopping: draining sessions", metadata: ["signal": "\(signal)"])
        task.cancel()
        await runner.drain()
    }
}
