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

/// One `-L [BIND:]LOCALPORT:HOST:PORT`.
struct ForwardSpec: Equatable {
    var bindHost: String?
    var localPort: Int
    var host: String
    var port: Int

    /// Splits on colons outside brackets, so IPv6 addresses are written `[::1]`.
    init(_ text: String) throws {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for c in text {
            if c == "[" { depth += 1 } else if c == "]" { depth -= 1 }
            if c == ":" && depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        func unbracket(_ s: String) -> String {
            s.hasPrefix("[") && s.hasSuffix("]") ? String(s.dropFirst().dropLast()) : s
        }
        guard parts.count == 3 || parts.count == 4, let port = Int(parts[parts.count - 1]), (1...65535).contains(port),
            let local = Int(parts[parts.count - 3]), (0...65535).contains(local), !parts[parts.count - 2].isEmpty
        else {
            throw ValidationError(
                "-L '\(text)' must be [BIND:]LOCALPORT:HOST:PORT, for example 1213:db.vpc.internal:3306"
            )
        }
        self.bindHost = parts.count == 4 ? unbracket(parts[0]) : nil
        self.localPort = local
        self.host = unbracket(parts[parts.count - 2])
        self.port = port
    }
}

struct ForwardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Forward several local ports through one agent: one session per forward, started and ended together.",
        discussion:
            "Example: jumpgate forward mi-0123456789abcdef0 -L 1213:db.vpc.internal:3306 -L 1313:sqs.us-east-1.amazonaws.com:443"
    )

    @Argument(help: ArgumentHelp("The managed instance (mi-...).", valueName: "target")) var target: String
    @Option(
        name: .customShort("L"),
        help: ArgumentHelp(
            "[BIND:]LOCALPORT:HOST:PORT (repeatable); LOCALPORT 0 picks a free port.",
            valueName: "[bind:]lport:host:port"
        )
    )
    var forwards: [String] = []
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The address to listen on when -L gives none: 127.0.0.1 (default), 0.0.0.0 or ::.",
            valueName: "address"
        )
    )
    var bind: String = "127.0.0.1"
    @Option(name: .long, help: OutputFormat.help("one JSON event a line: ready, accepted, closed, ended ..."))
    var format: OutputFormat = .text
    @Option(
        name: .long,
        help:
            "Run this shell command once every forward is ready (ports in JUMPGATE_PORT_1.. and JUMPGATE_PORTS); end the sessions when it exits. On a terminal it gets the terminal (an interactive psql or mysql works)."
    )
    var exec: String?
    @Option(
        name: .long,
        help: ArgumentHelp(
            "How long to keep resuming after the connection to the gateway drops (90s, 5m, 1h); local connections stay open meanwhile.",
            valueName: "duration"
        )
    )
    var resumeTimeout: String = "5m"
    @Flag(
        name: .long,
        help:
            "Do not ask for the relay-blind path (end-to-end encryption with the agent, the gateway passing bytes only): use the gateway's WebSocket path."
    )
    var noBlindPath = false
    @OptionGroup var gateway: GatewayOptions
    @Option(name: .long, help: LogLevel.help) var logLevel: LogLevel?

    func validate() throws {
        _ = try Jumpgate.resumeTimeout(self.resumeTimeout)
        guard !self.forwards.isEmpty else { throw ValidationError("Give at least one -L [BIND:]LOCALPORT:HOST:PORT.") }
        for forward in self.forwards { _ = try ForwardSpec(forward) }
    }

    func run() async throws {
        try CommandLogging.bootstrap(level: self.logLevel, default: .warning)
        let logger = Logger(label: "jumpgate.forward")
        HeapTrimmer.start(on: MultiThreadedEventLoopGroup.singleton.next())
        let resumeTimeout = try Jumpgate.resumeTimeout(self.resumeTimeout)
        let specs = try self.forwards.map(ForwardSpec.init)
        let json = self.format == .json

        // 1. Every port is bound before any session starts.
        var listeners: [LocalListener] = []
        for spec in specs {
            do {
                listeners.append(
                    try await LocalListener.bind(
                        host: spec.bindHost ?? self.bind,
                        port: spec.localPort,
                        eventLoop: MultiThreadedEventLoopGroup.singleton.next()
                    )
                )
            } catch let error as ClientError {
                for listener in listeners { listener.close() }
                throw CommandFailure(error.description + " No session was started.")
            }
        }

        // 2. One session per forward, each authorised on its own.
        let client: SSMClient
        var grants: [SessionGrant] = []
        do {
            client = try self.gateway.client()
            for (spec, listener) in zip(specs, listeners) {
                let request: JSONValue = [
                    "Target": .string(self.target), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                    "Parameters": [
                        "host": [.string(spec.host)], "portNumber": [.string(String(spec.port))],
                        "localPortNumber": [.string(String(listener.port))],
                    ],
                    "JumpgateBlindPath": .bool(!self.noBlindPath),
                ]
                grants.append(try SessionGrant(json: try await client.call("StartSession", request)))
            }
        } catch {
            for listener in listeners { listener.close() }
            if let client = try? self.gateway.client() {
                for grant in grants {
                    _ = try? await client.call("TerminateSession", ["SessionId": .string(grant.sessionID)])
                }
            }
            throw error
        }

        // 3. Run them together; the first to end ends the others.
        var made: [PortForwarder] = []
        // Each forward's open local connections: its `ended` event waits (2 s at most) for their `closed`.
        let openConnections = grants.map { _ in OpenChannels() }
        for (index, (spec, (grant, listener))) in zip(specs, zip(grants, listeners)).enumerated() {
            made.append(
                PortForwarder(
                    grant: grant,
                    localPort: listener.port,
                    caFile: client.configuration.caFile,
                    upgradeSigner: client.upgradeSigner,
                    console: ForwardConsole(sessionID: grant.sessionID, json: json),
                    logger: logger,
                    listener: listener,
                    onAccept: openConnections[index].connectionEvents(
                        localPort: listener.port,
                        sessionID: grant.sessionID,
                        json: json
                    ),
                    onConnectFailure: Self.connectFailure(
                        localPort: listener.port,
                        sessionID: grant.sessionID,
                        destination: HostPort.text(spec.host, spec.port),
                        json: json
                    ),
                    onAgentStatus: SessionEvents.agentStatus(sessionID: grant.sessionID, json: json),
                    resume: client.resumeSession(_:askingBlindPath:),
                    resumeTimeout: resumeTimeout
                )
            )
        }
        let forwarders = made
        let sessions = grants
        let bound = listeners
        // Why they end: the user (a signal, the end of --exec) or the session that ended first.
        let cause = NIOLockedValueBox<EndCause?>(nil)
        // Ending runs once; whoever asks again waits for it, so the process never exits before the gateway
        // has heard (or the bound has passed).
        let ending = NIOLockedValueBox<Task<Void, Never>?>(nil)
        let endAll: @Sendable () async -> Void = {
            let task = ending.withLockedValue { task -> Task<Void, Never> in
                if let task { return task }
                let started = Task {
                    // Every session first (the flag, the local ports), then the gateway, all at once and bounded.
                    for forwarder in forwarders { forwarder.terminate() }
                    await withTaskGroup(of: Void.self) { group in
                        for grant in sessions {
                            group.addTask {
                                _ = try? await client.call(
                                    "TerminateSession",
                                    ["SessionId": .string(grant.sessionID)],
                                    timeout: SessionRunner.terminateTimeout
                                )
                            }
                        }
                    }
                }
                task = started
                return started
            }
            await task.value
        }
        // On a terminal, one line shows the connections and the bytes each way, summed over the forwards;
        // not with --exec, whose command has the terminal.
        let statusLine: Task<Void, Never>? =
            self.format == .text && self.exec == nil && StatusLine.isAvailable
            ? Task {
                for forwarder in forwarders { _ = try? await forwarder.readyPort.get() }
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                    var total = PortSessionTraffic()
                    for forwarder in forwarders {
                        let traffic = await forwarder.traffic()
                        total.openConnections += traffic.openConnections
                        total.totalConnections += traffic.totalConnections
                        total.bytesIn += traffic.bytesIn
                        total.bytesOut += traffic.bytesOut
                    }
                    if !Task.isCancelled { StatusLine.draw(StatusLine.text(total)) }
                }
            } : nil
        // Ctrl+C or SIGTERM ends every session (outside the group: a signal wait cannot be cancelled).
        Task {
            // With --exec, also a hangup (the terminal closed) and Ctrl+\: the command has a process group of
            // its own, which neither reaches off a terminal, so forward must stop it. (When the command holds
            // the terminal, ForwardExec, the terminal's Ctrl+C, Ctrl+\ and hangup reach the command, and
            // forward ends when it does.)
            _ = await TerminationSignal.wait(
                self.exec == nil ? [SIGINT, SIGTERM] : ForwardExec.endingSignals
            )
            cause.withLockedValue { $0 = $0 ?? .user }
            ForwardExec.ending.withLockedValue { $0 = true }
            await endAll()
        }
        // Each child returns an exit status when it is a reason to stop (a session ended, the --exec
        // command exited), or nil (readiness printed, nothing to run).
        let status: Int32 = await withTaskGroup(of: Int32?.self) { group in
            for (index, forwarder) in forwarders.enumerated() {
                group.addTask {
                    let outcome: PortForwarder.Outcome
                    do {
                        outcome = try await forwarder.run()
                    } catch let error as ClientError {
                        outcome = .failed(error.description)
                    } catch {
                        outcome = .failed(
                            FailureText.reachingGateway(
                                client.configuration.endpointURL,
                                caFile: client.configuration.caFile,
                                NetworkFailure(error)
                            )
                        )
                    }
                    let endedWith = cause.withLockedValue { cause -> String? in
                        if outcome != .endedByUser { cause = cause ?? .session(forwarder.sessionID) }
                        guard case .session(let first) = cause, first != forwarder.sessionID else { return nil }
                        return first
                    }
                    await openConnections[index].allClosed(
                        within: .seconds(2),
                        on: MultiThreadedEventLoopGroup.singleton.next()
                    )
                    SessionEvents.report(outcome, sessionID: forwarder.sessionID, json: json, endedWith: endedWith)
                    return outcome.exitStatus
                }
            }
            group.addTask {
                for forwarder in forwarders {
                    // A port that will not open (its session failed or was ended first) is reported by its
                    // own child: nothing is announced as ready, and --exec does not run.
                    guard (try? await forwarder.readyPort.get()) != nil else { return nil }
                }
                for (index, spec) in specs.enumerated() {
                    let listener = bound[index]
                    let grant = sessions[index]
                    if json {
                        var fields: [(key: String, value: JSONValue)] = [
                            ("sessionId", .string(grant.sessionID)), ("localAddress", .string(listener.host)),
                            ("localPort", .integer(Int64(listener.port))), ("target", .string(self.target)),
                            ("host", .string(spec.host)), ("port", .integer(Int64(spec.port))),
                        ]
                        if let idle = grant.idleTimeoutSeconds { fields.append(("idleTimeoutSeconds", .integer(idle))) }
                        if let maximum = grant.maximumDurationSeconds {
                            fields.append(("maxSessionDurationSeconds", .integer(maximum)))
                        }
                        JSONEvents.emit("ready", fields)
                    } else {
                        emit(
                            "Forwarding \(HostPort.text(listener.host, listener.port)) -> \(HostPort.text(spec.host, spec.port)) through \(self.target) (session \(grant.sessionID))\n"
                        )
                        if index == 0, let notice = grant.limitsNotice { emit(notice + "\n") }
                    }
                }
                guard let command = self.exec else { return nil }
                let status = await ForwardExec.run(command, ports: bound.map(\.port))
                cause.withLockedValue { $0 = $0 ?? .user }
                return status
            }
            var first: Int32 = 0
            for await result in group {
                if let result {
                    first = result
                    break
                }
            }
            // Started together, ended together.
            ForwardExec.ending.withLockedValue { $0 = true }
            await endAll()
            group.cancelAll()
            return first
        }
        statusLine?.cancel()
        await statusLine?.value
        StatusLine.clear()
        if status != 0 { throw ExitCode(status) }
    }

    /// Why the forwards end together.
    enum EndCause: Sendable, Equatable {
        case user
        case session(String)
    }

    /// A connection the agent could not connect: a line on stderr (text) or an event (json).
    static func connectFailure(
        localPort: Int,
        sessionID: String,
        destination: String,
        json: Bool
    ) -> @Sendable (String?) -> Void {
        { reason in
            if json {
                var event: [(key: String, value: JSONValue)] = [
                    ("sessionId", .string(sessionID)), ("localPort", .integer(Int64(localPort))),
                    ("destination", .string(destination)),
                ]
                if let reason { event.append(("reason", .string(reason))) }
                JSONEvents.emit("connect-failed", event)
            } else {
                let why = reason ?? "the agent gave no reason; see its log"
                StatusLine.withLineCleared {
                    StandardStream.error.write("Connection from port \(localPort) to \(destination) failed: \(why)\n")
                }
            }
        }
    }
}
