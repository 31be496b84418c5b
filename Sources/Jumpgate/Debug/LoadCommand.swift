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

/// `jumpgate debug load`: the pieces of a scale test against a running gateway, each in its own process
/// (one process cannot hold the descriptors of 10,000 forwarded connections on both ends).
/// `scripts/bench-scale` runs them together and reads the gateway's memory from /metrics.
struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load a gateway with many agents, sessions and connections (scripts/bench-scale runs these).",
        subcommands: [LoadAgentsCommand.self, LoadSessionsCommand.self, LoadEchoCommand.self]
    )

    /// The `index`th address after `first` (IPv4), so that simulated hosts each have their own.
    static func address(_ first: String, plus index: Int) throws -> String {
        guard let bytes = IPAddressBytes.parse(first), bytes.count == 4, bytes[0] == 127 else {
            throw ValidationError("'\(first)' is not an IPv4 loopback address (127.0.0.0/8): load stays on this host.")
        }
        let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } &+ UInt32(truncatingIfNeeded: index)
        guard value >> 24 == 127 else {
            throw ValidationError("'\(first)' plus \(index) leaves 127.0.0.0/8: start lower or use fewer --sources.")
        }
        return [24, 16, 8, 0].map { String(value >> $0 & 0xFF) }.joined(separator: ".")
    }

    /// One line of JSON on standard output, at once (the driver waits for it).
    static func report(_ fields: JSONValue) {
        StandardStream.output.write(fields.serialized() + "\n")
    }

    /// The value at quantile `q` of `values` in milliseconds, rounded to 0.1 ms.
    static func quantile(_ values: [Double], _ q: Double) -> JSONValue {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return .double((sorted[Int(Double(sorted.count - 1) * q)] * 10).rounded() / 10)
    }

    static func milliseconds(since start: NIODeadline) -> Double {
        Double((NIODeadline.now() - start).nanoseconds) / 1e6
    }

    /// Runs `count` jobs, at most `width` at a time; the results in order.
    static func bounded<T: Sendable>(
        _ count: Int,
        width: Int,
        _ job: @escaping @Sendable (Int) async throws -> T
    ) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            var results: [T?] = Array(repeating: nil, count: count)
            var next = 0
            for _ in 0..<min(width, count) {
                let index = next
                next += 1
                group.addTask { (index, try await job(index)) }
            }
            for try await (index, result) in group {
                results[index] = result
                if next < count {
                    let index = next
                    next += 1
                    group.addTask { (index, try await job(index)) }
                }
            }
            return results.map { $0! }
        }
    }
}

struct LoadAgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents",
        abstract: "Register COUNT agents with one activation and run them all in this process.",
        discussion: """
            Each agent has its own state directory under --state-dir and reaches the gateway from its own \
            local address (--first-source, then the next ones, --sources of them in turn). Prints one JSON \
            line once every agent's control channel is up, then runs until SIGTERM or SIGINT.
            """
    )

    @OptionGroup var gateway: GatewayOptions
    @Option(help: "The activation to register with (its limit must cover --count).") var activationId: String
    @Option(help: "The activation's code.") var activationCode: String
    @Option(help: "How many agents.") var count = 100
    @Option(help: "Where the agents' state directories go (one per agent).") var stateDir: String
    @Option(help: "The first local address agents connect from.") var firstSource = "127.0.0.2"
    @Option(help: "How many local addresses the agents share, in turn.") var sources = 100
    @Option(help: "Destinations the agents may reach (HOST:PORTS, repeatable).") var allow: [String] = []

    func run() async throws {
        let location = try self.gateway.location()
        guard let caFile = location.caFile else { throw ValidationError("--ca-file is required.") }
        guard self.count > 0, self.sources > 0 else { throw ValidationError("--count and --sources must be positive.") }
        let (endpoint, stateDir, allow) = (location.endpointURL, self.stateDir, self.allow)
        let (activationID, activationCode) = (self.activationId, self.activationCode)
        let registering = NIODeadline.now()
        let instances = try await LoadCommand.bounded(self.count, width: 8) { index in
            try await AgentRegistration.register(
                endpoint: endpoint,
                caFile: caFile,
                activationID: activationID,
                activationCode: activationCode,
                stateDirectory: "\(stateDir)/agent-\(index)",
                allow: allow,
                deny: [],
                name: "load-\(index)",
                force: true
            )
        }
        try (instances.joined(separator: "\n") + "\n").write(
            toFile: "\(stateDir)/instances",
            atomically: true,
            encoding: .utf8
        )
        LoadCommand.report([
            "event": "registered", "agents": .integer(Int64(self.count)),
            "ms": .integer(Int64(LoadCommand.milliseconds(since: registering))),
        ])

        let starting = NIODeadline.now()
        let connected = NIOLockedValueBox<Set<Int>>([])
        let all = self.count
        var tasks: [Task<Void, Never>] = []
        for index in 0..<self.count {
            var options = AgentRunner.Options()
            options.sourceAddress = try LoadCommand.address(self.firstSource, plus: index % self.sources)
            options.onConnected = {
                let done = connected.withLockedValue { set in set.insert(index).inserted && set.count == all }
                if done {
                    LoadCommand.report([
                        "event": "connected", "agents": .integer(Int64(all)),
                        "ms": .integer(Int64(LoadCommand.milliseconds(since: starting))),
                    ])
                }
            }
            let runner = try AgentRunner(
                state: try AgentStateDirectory.load(from: "\(stateDir)/agent-\(index)"),
                allow: nil,
                deny: nil,
                options: options,
                logger: Logger(label: "jumpgate.load.agent")
            )
            tasks.append(Task { await runner.run() })
        }
        _ = await TerminationSignal.wait([SIGTERM, SIGINT])
        for task in tasks { task.cancel() }
    }
}

struct LoadSessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "Open SESSIONS port sessions and CONNECTIONS connections through each, and hold them.",
        discussion: """
            Sessions go to the instances listed in --targets (one id per line, in turn) and forward to \
            --destination, which must echo (`jumpgate debug load echo`). They open one after the other; \
            each connection then makes one verified 64-byte round trip and stays open. Prints one JSON line \
            with the time from StartSession to "Waiting for connections" and each connection's first round \
            trip (p50, p99, in ms), then holds everything until SIGTERM or SIGINT.
            """
    )

    @OptionGroup var gateway: GatewayOptions
    @Option(help: "A file of instance ids, one per line.") var targets: String
    @Option(help: "How many sessions.") var sessions = 100
    @Option(help: "Connections per session.") var connections = 10
    @Option(help: "The echo server the sessions forward to (HOST:PORT).") var destination: String
    @Option(help: "Index of this process's first session (spreads several processes over the targets).")
    var offset = 0
    @Option(help: "The first local address sessions connect to the gateway from.") var firstSource = "127.0.1.1"
    @Option(help: "How many local addresses the sessions share, in turn.") var sources = 100

    func run() async throws {
        let client = try self.gateway.client()
        let instances = try String(contentsOfFile: self.targets, encoding: .utf8).split(separator: "\n").map(
            String.init
        )
        guard !instances.isEmpty else { throw ValidationError("\(self.targets) lists no instance.") }
        guard self.sessions > 0, self.connections >= 0, self.offset >= 0, self.sources > 0 else {
            throw ValidationError("--sessions and --sources must be positive, --connections and --offset not negative.")
        }
        guard let colon = self.destination.lastIndex(of: ":") else {
            throw ValidationError("--destination is HOST:PORT.")
        }
        let (host, port) = (String(self.destination[..<colon]), String(self.destination[colon...].dropFirst()))
        var ready: [Double] = []
        var forwarders: [PortForwarder] = []
        var ports: [Int] = []
        var failures = 0
        for index in 0..<self.sessions {
            let target = instances[(self.offset + index) % instances.count]
            let start = NIODeadline.now()
            do {
                let grant = try SessionGrant(
                    json: try await client.call(
                        "StartSession",
                        [
                            "Target": .string(target), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                            "Parameters": [
                                "host": [.string(host)], "portNumber": [.string(port)], "localPortNumber": ["0"],
                            ],
                        ]
                    )
                )
                let forwarder = PortForwarder(
                    grant: grant,
                    localPort: 0,
                    caFile: client.configuration.caFile,
                    upgradeSigner: client.upgradeSigner,
                    console: SilentConsole(),
                    logger: Logger(label: "jumpgate.load.session"),
                    resume: client.resumeSession(_:askingBlindPath:),
                    sourceAddress: try LoadCommand.address(self.firstSource, plus: (self.offset + index) % self.sources)
                )
                do {
                    ports.append(try await Self.ready(forwarder))
                } catch {
                    forwarder.terminate()
                    throw error
                }
                ready.append(LoadCommand.milliseconds(since: start))
                forwarders.append(forwarder)
            } catch {
                failures += 1
                if failures == 1 { writeStandardError("load sessions: session \(index) failed: \(error)") }
            }
        }

        let connections = self.connections
        let (portList, group) = (ports, MultiThreadedEventLoopGroup.singleton)
        let opened = try await LoadCommand.bounded(portList.count * connections, width: 32) { index in
            let start = NIODeadline.now()
            do {
                let channel = try await EchoProbe.connect(port: portList[index / connections], group: group)
                return (channel as (any Channel)?, LoadCommand.milliseconds(since: start))
            } catch {
                return (nil, 0)
            }
        }
        let open = opened.compactMap(\.0)
        LoadCommand.report([
            "event": "ready", "sessions": .integer(Int64(forwarders.count)),
            "sessionFailures": .integer(Int64(failures)),
            "readyP50": LoadCommand.quantile(ready, 0.5), "readyP99": LoadCommand.quantile(ready, 0.99),
            "connections": .integer(Int64(open.count)),
            "connectionFailures": .integer(Int64(opened.count - open.count)),
            "readyMs": .array(ready.map { .double(($0 * 10).rounded() / 10) }),
            "firstRoundTripMs": .array(opened.filter { $0.0 != nil }.map { .double(($0.1 * 10).rounded() / 10) }),
            "firstRoundTripP50": LoadCommand.quantile(opened.filter { $0.0 != nil }.map(\.1), 0.5),
            "firstRoundTripP99": LoadCommand.quantile(opened.filter { $0.0 != nil }.map(\.1), 0.99),
        ])
        _ = await TerminationSignal.wait([SIGTERM, SIGINT])
        for channel in open { channel.close(promise: nil) }
        for forwarder in forwarders { forwarder.terminate() }
        for forwarder in forwarders {
            _ = try? await client.call("TerminateSession", ["SessionId": .string(forwarder.sessionID)])
        }
    }
}

extension LoadSessionsCommand {
    /// Runs `forwarder` and returns its local port once it listens; throws if its session ends or fails
    /// first, or is not ready within 30 s (a refused data channel must count as a failure, not hang).
    static func ready(_ forwarder: PortForwarder) async throws -> Int {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let settled = loop.makePromise(of: Int.self)
        let done = NIOLockedValueBox(false)
        let settle: @Sendable (Result<Int, any Error>) -> Void = { result in
            let first = done.withLockedValue { done in
                defer { done = true }
                return !done
            }
            if first { settled.completeWith(result) }
        }
        let timeout = loop.scheduleTask(in: .seconds(30)) {
            settle(.failure(ClientError("the session was not ready within 30 s")))
        }
        forwarder.readyPort.whenComplete { result in
            timeout.cancel()
            settle(result)
        }
        Task {
            do {
                let outcome = try await forwarder.run()
                settle(.failure(ClientError("the session ended before it was ready: \(outcome)")))
            } catch {
                settle(.failure(error))
            }
        }
        return try await settled.futureResult.get()
    }
}

/// Prints nothing: a load generator's sessions have no user to tell.
struct SilentConsole: ForwarderConsole {
    func write(_ text: String) {}
    func resumeChanged(_ change: ResumeProgress) {}
    func agentStatusChanged(_ status: AgentStatusPayload) {}
}

/// One connection that makes a verified 64-byte round trip before it counts as open.
final class EchoProbe: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    static let message = ByteBuffer(bytes: (0..<64).map { UInt8($0) })
    let echoed: EventLoopPromise<Void>
    var received = ByteBuffer()
    var answered = false

    init(echoed: EventLoopPromise<Void>) { self.echoed = echoed }

    func finish(_ result: Result<Void, any Error>) {
        guard !self.answered else { return }
        self.answered = true
        self.echoed.completeWith(result)
    }

    static func connect(port: Int, group: any EventLoopGroup) async throws -> any Channel {
        let loop = group.next()
        let echoed = loop.makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoProbe(echoed: echoed))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        channel.writeAndFlush(Self.message, promise: nil)
        let timeout = loop.scheduleTask(in: .seconds(30)) {
            channel.close(promise: nil)  // the probe then fails with .eof
        }
        do {
            try await echoed.futureResult.get()
            timeout.cancel()
            return channel
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        self.received.writeBuffer(&bytes)
        guard self.received.readableBytes >= Self.message.readableBytes else { return }
        self.finish(
            self.received == Self.message ? .success(()) : .failure(ChannelError.inappropriateOperationForState)
        )
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish(.failure(ChannelError.eof))
    }
}

struct LoadEchoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "An echo server for the load's sessions to reach: prints {\"port\": N}, runs until SIGTERM."
    )

    @Option(help: "The address to listen on.") var listen = "127.0.0.1"

    func run() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: self.listen, port: 0)
            .get()
        LoadCommand.report(["port": .integer(Int64(channel.localAddress?.port ?? 0))])
        _ = await TerminationSignal.wait([SIGTERM, SIGINT])
        try? await channel.close().get()
    }
}

final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
