import Benchmark
@_spi(Benchmarks) import JumpgateGateway
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOEmbedded

/// Handler-level paths, with allocation counts checked against Thresholds/ (a per-frame allocation that
/// comes back fails `swift package benchmark thresholds check`):
/// - a read burst of 16 data frames through the gateway's relay to the other side's channel;
/// - 1 MiB written by a local connection through the client's session handler, delivered by the agent's
///   session handler to its target (back to back over EmbeddedChannels, no sockets);
/// - the relay-blind path (docs/BLIND-RELAY.md, the default for `jumpgate forward`): a read burst through
///   the gateway's `BlindGlue` to the partner connection, and the same 1 MiB through the two session
///   handlers with `SSMStreamFramer` in front of each, the byte stream delivered as TLS would hand it on.
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    // Only allocation counts are checked (times flake on a shared machine): a few mallocs of slack, far
    // less than one per frame would add (16 frames a burst, 16 messages a MiB). Counts are per sample, not
    // per iteration: a `.kilo` benchmark's sample is 1,000 bursts, so one allocation per frame would add
    // 16,000 (`thresholds check` compares these raw counts; a plain run divides them by the scaling
    // factor unless given `--scale`). Each sample also holds the harness's own 16 (HarnessOverhead).
    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        maxDuration: .seconds(2),
        maxIterations: 100_000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 8])]
    )

    // Names without spaces: `thresholds update` writes file names with underscores, `thresholds check`
    // looks for the name as it is (benchmark 1.38.1).
    Benchmark("RelayBurst16x64KiB", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state)
        let client = EmbeddedChannel(handler: DiscardingSink())
        let agent = EmbeddedChannel(handler: DiscardingSink())
        relay.attach(.client, channel: client)
        relay.attach(.agent, channel: agent)
        let frame = SSMMessage(
            messageType: .inputStreamData,
            createdDate: 1,
            sequenceNumber: 1,
            payloadType: .output,
            payload: ByteBuffer(repeating: 1, count: 65536)
        ).encoded()
        let burst = Array(repeating: frame, count: 16)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(relay.forward(burst, from: .client))
        }
    }

    Benchmark("BlindGlueBurst16Reads", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let state = GatewayState(clock: { 1_700_000_000 })
        let relay = SessionRelay(sessionID: "s", state: state)
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(loop: loop)
        let agent = EmbeddedChannel(handler: DiscardingSink(), loop: loop)
        try client.pipeline.syncOperations.addHandler(BlindGlue(side: .client, partner: agent, relay: relay))
        // What one read of a busy socket brings (TLS records the gateway does not open).
        let read = ByteBuffer(repeating: 1, count: 16 * 1024)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for _ in 0..<16 { client.pipeline.fireChannelRead(read) }
            client.pipeline.fireChannelReadComplete()
        }
    }

    // Nothing measured: what the harness itself counts in a sample (16 mallocs with this package's metrics,
    // which collecting the time and CPU figures makes). Every threshold includes it.
    Benchmark("HarnessOverhead", configuration: .init(scalingFactor: .kilo)) { benchmark in
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations { blackHole(iteration) }
    }

    // What the session benchmarks' 16 event-loop wake-ups per MiB cost EmbeddedEventLoop itself: each wake-up
    // ends with the session's flush task, which NIO's own loop queues with no allocation and EmbeddedEventLoop
    // schedules with a promise and closures of its own. The session thresholds include it.
    Benchmark("EmbeddedLoop16Ticks", configuration: .init(scalingFactor: .one)) { benchmark in
        let loop = EmbeddedEventLoop()
        var ran = 0
        let task: () -> Void = { ran += 1 }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for _ in 0..<16 {
                loop.assumeIsolated().execute(task)
                loop.run()
            }
        }
        benchmark.stopMeasurement()
        blackHole(ran)
    }

    Benchmark("FramedSessionLocalToTarget1MiB", configuration: .init(scalingFactor: .one)) { benchmark in
        try benchmarkLocalToTarget(benchmark, pair: SessionPair(framed: true))
    }

    Benchmark("SessionLocalToTarget1MiB", configuration: .init(scalingFactor: .one)) {
        benchmark in
        try benchmarkLocalToTarget(benchmark, pair: SessionPair())
    }
}

/// 1 MiB a time from a local connection on the client to the agent's target, after a first MiB that is not
/// the per-frame path: the agent's window reaches the client only once 64 KiB were consumed (it goes with
/// the agent's first data otherwise), so the 16 reads pushed at once wait, copied, for it.
func benchmarkLocalToTarget(_ benchmark: Benchmark, pair: SessionPair) throws {
    let (local, id) = try pair.connect()
    let target = try pair.target(id)
    let chunk = ByteBuffer(repeating: 7, count: 64 * 1024)
    func moveOneMiB() throws {
        for _ in 0..<16 {
            // One read per event-loop wake-up, as the product reads a busy connection: the session's flush
            // of the data channel runs at the wake-up's end.
            try local.writeInbound(chunk)
            pair.loop.run()
        }
        try pair.pump()
        var received = 0
        while let bytes = try target.readOutbound(as: ByteBuffer.self) { received += bytes.readableBytes }
        blackHole(received)
    }
    try moveOneMiB()
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations { try moveOneMiB() }
}

/// Swallows writes and flushes at the tail of a channel: what the benchmark measures is the handler in
/// front of it, not EmbeddedChannel's own buffering.
final class DiscardingSink: ChannelOutboundHandler {
    typealias OutboundIn = Any

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {}
}

/// Starts each requested stream with a target channel on the shared loop.
final class Attacher: PortSessionDelegate {
    let loop: EmbeddedEventLoop
    var targets: [SmuxStreamID: EmbeddedChannel] = [:]
    init(loop: EmbeddedEventLoop) { self.loop = loop }

    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {}
    func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        let target = EmbeddedChannel(loop: self.loop)
        _ = try? target.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        self.targets[id] = target
        try? session.attach(target, to: id)
    }
    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {}
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {}
}

/// A client and an agent session back to back, the gateway's part played by ``pump()``. `framed`: the
/// relay-blind path's shape, an `SSMStreamFramer` in front of each session and a byte stream between them.
final class SessionPair {
    let loop = EmbeddedEventLoop()
    let clientData: EmbeddedChannel
    let agentData: EmbeddedChannel
    let client: PortSession
    let agent: PortSession
    let clientEvents: Attacher
    let agentEvents: Attacher
    let framed: Bool
    /// The framed path's byte streams, one buffer per direction reused for every delivery: each delivery
    /// is one read of everything the other side wrote, as NIOSSL hands on what one socket read decrypted.
    var toAgent = ByteBuffer()
    var toClient = ByteBuffer()

    init(framed: Bool = false) throws {
        self.framed = framed
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        self.client = PortSession(
            sessionID: "s",
            role: .client(.init(clientVersion: JumpgateVersion.clientProtocolVersion)),
            logger: logger
        )
        let properties: [(key: String, value: String)] = [("portNumber", "5432"), ("type", "LocalPortForwarding")]
        self.agent = PortSession(
            sessionID: "s",
            role: .agent(.init(agentVersion: "3.3.9999.0", properties: properties)),
            logger: logger
        )
        self.clientEvents = Attacher(loop: self.loop)
        self.agentEvents = Attacher(loop: self.loop)
        self.client.delegate = self.clientEvents
        self.agent.delegate = self.agentEvents
        self.clientData = EmbeddedChannel(loop: self.loop)
        self.agentData = EmbeddedChannel(loop: self.loop)
        if framed {
            self.toAgent.reserveCapacity(4 << 20)
            self.toClient.reserveCapacity(1 << 20)
            try self.clientData.pipeline.syncOperations.addHandler(SSMStreamFramer())
            try self.agentData.pipeline.syncOperations.addHandler(SSMStreamFramer())
        }
        try self.clientData.pipeline.syncOperations.addHandler(self.client)
        try self.agentData.pipeline.syncOperations.addHandler(self.agent)
        try self.pump()
    }

    func connect() throws -> (EmbeddedChannel, SmuxStreamID) {
        let local = EmbeddedChannel(loop: self.loop)
        try local.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        let id = try self.client.openStream(for: local)
        try self.pump()
        return (local, id)
    }

    func target(_ id: SmuxStreamID) throws -> EmbeddedChannel {
        guard let target = self.agentEvents.targets[id] else { throw WireError(.smuxProtocolViolation, "no target") }
        return target
    }

    /// Moves messages between the data channels until neither has more (the agent's session state stays
    /// with the gateway), letting acknowledgement timers run once at the end.
    func pump() throws {
        for _ in 0..<2 {
            var progress = true
            while progress {
                progress = false
                if self.framed {
                    progress = try self.deliver(from: self.clientData, to: self.agentData, through: &self.toAgent)
                    progress =
                        try self.deliver(from: self.agentData, to: self.clientData, through: &self.toClient) || progress
                    continue
                }
                while let message = try self.clientData.readOutbound(as: WebSocketMessage.self) {
                    progress = true
                    try self.agentData.writeInbound(message)
                }
                while let message = try self.agentData.readOutbound(as: WebSocketMessage.self) {
                    progress = true
                    if case .binary(let frame) = message, SSMMessage.peekMessageType(frame) == .agentSessionState {
                        continue
                    }
                    try self.clientData.writeInbound(message)
                }
            }
            self.loop.advanceTime(by: .milliseconds(25))
        }
    }

    /// The framed path: what `from` wrote, delivered to `to` as one read. False when it wrote nothing.
    private func deliver(from: EmbeddedChannel, to: EmbeddedChannel, through stream: inout ByteBuffer) throws -> Bool {
        // Cleared only when there is something to deliver: a buffer a session still lends from would be
        // copied by `clear()` (one allocation of the harness's, counted with the handlers').
        guard var bytes = try from.readOutbound(as: ByteBuffer.self) else { return false }
        stream.clear()
        stream.writeBuffer(&bytes)
        while var more = try from.readOutbound(as: ByteBuffer.self) { stream.writeBuffer(&more) }
        try to.writeInbound(stream)
        return true
    }
}
