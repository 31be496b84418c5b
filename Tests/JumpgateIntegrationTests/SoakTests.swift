import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Many sessions, each with several long-lived connections doing verified echo round trips, while the
/// agent's and the clients' links to the gateway are cut at random every few seconds. Nothing may be lost
/// or corrupted, no connection may fail, the gateway and agent must not leak descriptors or memory, and
/// every session must be accounted for in the store and in /metrics. CI runs 2 minutes of 10 sessions x
/// 5 connections; scripts/reliability runs 10 minutes of 50 x 10 (JUMPGATE_SOAK_*).
@Suite("Soak: sessions under random cuts, nothing lost or leaked", .serialized)
struct SoakTests {
    static func setting(_ name: String, _ fallback: Int) -> Int {
        Int(ProcessInfo.processInfo.environment[name] ?? "") ?? fallback
    }

    /// The gateway's open descriptors and resident bytes (from its /metrics) and the agent's (from /proc).
    struct Usage {
        var gatewayFDs: Int
        var gatewayRSS: Int
        var agentFDs: Int
        var agentRSS: Int

        static func sample(_ lab: EndToEndTests.Lab) async throws -> Usage {
            let metrics = try await GatewayLimitsTests.metrics(lab)
            let agent = ProcessStatistics.sample(pid: lab.agent.process.processIdentifier)
            return Usage(
                gatewayFDs: Int(GatewayLimitsTests.sample(metrics, "process_open_fds") ?? -1),
                gatewayRSS: Int(GatewayLimitsTests.sample(metrics, "process_resident_memory_bytes") ?? -1),
                agentFDs: agent?.openFileDescriptors ?? -1,
                agentRSS: agent?.residentBytes ?? -1
            )
        }

        /// Each figure's median over `samples` (the upper one of an even count), apart.
        static func median(_ samples: some Collection<Usage>) -> Usage {
            func middle(_ values: [Int]) -> Int { values.sorted()[values.count / 2] }
            return Usage(
                gatewayFDs: middle(samples.map(\.gatewayFDs)),
                gatewayRSS: middle(samples.map(\.gatewayRSS)),
                agentFDs: middle(samples.map(\.agentFDs)),
                agentRSS: middle(samples.map(\.agentRSS))
            )
        }
    }

    @Test("sessions x connections under random cuts: no byte lost, no leak, every session accounted for")
    func soak() async throws {
        let seconds = Self.setting("JUMPGATE_SOAK_SECONDS", 120)
        let sessions = Self.setting("JUMPGATE_SOAK_SESSIONS", 10)
        let connections = Self.setting("JUMPGATE_SOAK_CONNECTIONS", 5)
        let seed = UInt64(Self.setting("JUMPGATE_SOAK_SEED", Int.random(in: 1...Int.max)))
        print("SoakTests: \(sessions) sessions x \(connections) connections for \(seconds) s, seed \(seed)")
        let links = try await NetworkDropTests.TwoLinks.make()
        let (agentLink, clientLink) = (links.agent, links.client)
        defer { links.close() }
        try await EndToEndTests.withLab(
            gatewayArguments: links.gatewayArguments,
            gatewayPort: links.port,
            agentEndpoint: links.agentEndpoint
        ) { lab, echoPort in
            let baseline = try await GatewayLimitsTests.metrics(lab)
            let baselineFDs = GatewayLimitsTests.sample(baseline, "process_open_fds") ?? 0
            var clients: [ChildProcess] = []
            defer { for client in clients { client.stop() } }
            var localPorts: [Int] = []
            var sessionIDs: [String] = []
            for _ in 0..<sessions {
                let (client, localPort, sessionID) = try EndToEndTests().startSession(
                    lab,
                    host: "127.0.0.1",
                    port: echoPort
                )
                clients.append(client)
                localPorts.append(localPort)
                sessionIDs.append(sessionID)
            }
            let end = NIODeadline.now() + .seconds(Int64(seconds))
            let results = Task {
                try await withThrowingTaskGroup(of: EchoPinger.Outcome.self) { group in
                    for (index, localPort) in localPorts.enumerated() {
                        for connection in 0..<connections {
                            let connectionSeed = seed &+ UInt64(index * 1000 + connection)
                            group.addTask {
                                try await EchoPinger.run(port: localPort, seed: connectionSeed, until: end)
                            }
                        }
                    }
                    var outcomes: [EchoPinger.Outcome] = []
                    for try await outcome in group { outcomes.append(outcome) }
                    return outcomes
                }
            }

            // Warm-up: a quarter of the run; cuts all along, every 2 to 5 s. From then on, descriptors and
            // memory are sampled before each cut (at least 2 s after the one before, with every connection
            // open), and once more 4 s after the last. RSS moves by megabytes from one sample to the next
            // with the data in flight and with each process's 30 s heap trim, so the leak check compares
            // medians: of the first quarter of the samples (the baseline) and of the last quarter.
            var samples: [Usage] = []
            var rng = PatternStream(seed: seed)
            var cuts = 0
            let warmAt = NIODeadline.now() + .seconds(Int64(seconds / 4))
            // The last cut ends by end - 6.7 s, so the late sample below is taken before the pingers stop.
            while NIODeadline.now() + .seconds(12) < end {
                try await Task.sleep(nanoseconds: 2_000_000_000 + rng.next() % 3_000_000_000)
                if NIODeadline.now() >= warmAt { samples.append(try await Usage.sample(lab)) }
                try await (rng.next() % 2 == 0 ? agentLink : clientLink).blackholeAndCut()
                cuts += 1
            }
            try await Task.sleep(nanoseconds: 4_000_000_000)
            samples.append(try await Usage.sample(lab))
            #expect(NIODeadline.now() < end, "the late samples must be taken while every connection is open")
            try #require(samples.count >= 4, "too few samples after warm-up: \(samples.count)")
            // Every figure was read (-1 would pass every comparison below).
            try #require(
                samples.allSatisfy { min($0.gatewayFDs, $0.gatewayRSS, $0.agentFDs, $0.agentRSS) >= 0 },
                "a descriptor or memory figure could not be read"
            )
            // A quarter of the samples, and never fewer than 2 each side unless the run is very short.
            let window = max(samples.count / 4, min(3, samples.count / 2))
            let (warmed, late) = (Usage.median(samples.prefix(window)), Usage.median(samples.suffix(window)))
            print("SoakTests: \(samples.count) samples after warm-up, medians of \(window) compared")
            print("SoakTests: gateway RSS MiB \(samples.map { $0.gatewayRSS >> 20 }), fds \(samples.map(\.gatewayFDs))")
            print("SoakTests: agent RSS MiB \(samples.map { $0.agentRSS >> 20 }), fds \(samples.map(\.agentFDs))")
            print(
                "SoakTests: gateway fds \(warmed.gatewayFDs) -> \(late.gatewayFDs), "
                    + "RSS \(warmed.gatewayRSS >> 20) -> \(late.gatewayRSS >> 20) MiB; "
                    + "agent fds \(warmed.agentFDs) -> \(late.agentFDs), RSS \(warmed.agentRSS >> 20) -> \(late.agentRSS >> 20) MiB"
            )
            let outcomes = try await results.value
            let rounds = outcomes.map(\.rounds).reduce(0, +)
            let bytes = outcomes.map(\.bytes).reduce(0, +)
            print("SoakTests: \(cuts) cuts, \(rounds) verified round trips, \(bytes >> 20) MiB echoed")
            #expect(outcomes.count == sessions * connections)
            #expect(outcomes.allSatisfy { $0.rounds > 0 }, "every connection kept working")
            #expect(cuts >= seconds / 6)

            // Leaks: after warm-up, with the same sessions and connections open, descriptors and memory have
            // not grown with the cuts.
            #expect(late.gatewayFDs <= warmed.gatewayFDs + 4, "gateway descriptors grew")
            #expect(late.agentFDs <= warmed.agentFDs + 4, "agent descriptors grew")
            #expect(
                !MemoryBound.applies || Double(late.gatewayRSS) <= Double(warmed.gatewayRSS) * 1.1,
                "gateway memory grew more than 10%"
            )
            #expect(
                !MemoryBound.applies || Double(late.agentRSS) <= Double(warmed.agentRSS) * 1.1,
                "agent memory grew more than 10%"
            )
            let metrics = try await GatewayLimitsTests.metrics(lab)
            #expect(GatewayLimitsTests.sample(metrics, "jumpgate_sessions_active") == Double(sessions))

            // Every session accounted for: ended by its client, in the store's history and in /metrics.
            for client in clients { client.stop() }
            clients = []
            var ended: Set<String> = []
            for _ in 0..<100 where ended.count < sessions {
                let history = try await lab.ssm.call("DescribeSessions", ["State": "History"])
                ended = Set(
                    history["Sessions"]?.arrayValue?.filter { $0["Status"]?.stringValue == "Terminated" }
                        .compactMap { $0["SessionId"]?.stringValue } ?? []
                )
                if ended.count < sessions { try await Task.sleep(nanoseconds: 100_000_000) }
            }
            #expect(
                ended == Set(sessionIDs),
                "sessions not recorded as Terminated: \(Set(sessionIDs).subtracting(ended))"
            )
            let after = try await GatewayLimitsTests.metrics(lab)
            #expect(GatewayLimitsTests.sample(after, "jumpgate_sessions_active") == 0)
            #expect(GatewayLimitsTests.sample(after, "jumpgate_sessions_started_total") == Double(sessions))
            let afterFDs = GatewayLimitsTests.sample(after, "process_open_fds") ?? 0
            #expect(
                afterFDs <= baselineFDs + 4,
                "gateway descriptors after every session ended: \(afterFDs) vs \(baselineFDs)"
            )
        }
    }
}

/// One long-lived connection doing echo round trips of 1 to 64 KiB (a seeded pattern), each verified
/// byte for byte before the next, until a deadline. Runs on its event loop.
final class EchoPinger: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Outcome: Sendable {
        var rounds: Int
        var bytes: Int
    }

    let done: EventLoopPromise<Outcome>
    let until: NIODeadline
    var pattern: PatternStream
    var expected = ByteBuffer()
    var received = ByteBuffer()
    var outcome = Outcome(rounds: 0, bytes: 0)
    var lastProgress = NIODeadline.now()

    init(seed: UInt64, until: NIODeadline, done: EventLoopPromise<Outcome>) {
        self.pattern = PatternStream(seed: seed)
        self.until = until
        self.done = done
    }

    static func run(port: Int, seed: UInt64, until: NIODeadline) async throws -> Outcome {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: Outcome.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoPinger(seed: seed, until: until, done: done))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        // No round trip may wait more than 60 s (a cut is repaired in seconds).
        let watchdog = loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { _ in
            channel.pipeline.handler(type: EchoPinger.self).assumeIsolated().whenSuccess { pinger in
                if NIODeadline.now() - pinger.lastProgress > .seconds(60) {
                    done.fail(HarnessError("no echo for 60 s after \(pinger.outcome.rounds) round trips"))
                    channel.close(promise: nil)
                }
            }
        }
        defer { watchdog.cancel() }
        let outcome = try await done.futureResult.get()
        try? await channel.close()
        return outcome
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sendNext(context: context)
        context.fireChannelActive()
    }

    func sendNext(context: ChannelHandlerContext) {
        guard NIODeadline.now() < self.until else {
            self.done.succeed(self.outcome)
            return
        }
        let size = 1024 + Int(self.pattern.next() % (63 * 1024)) / 8 * 8
        var buffer = context.channel.allocator.buffer(capacity: size)
        self.pattern.fill(&buffer, count: size)
        self.expected = buffer
        self.received.clear()
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        guard self.received.readableBytes >= self.expected.readableBytes else { return }
        guard self.received == self.expected else {
            self.done.fail(HarnessError("round trip \(self.outcome.rounds + 1) came back different"))
            context.close(promise: nil)
            return
        }
        self.outcome.rounds += 1
        self.outcome.bytes += self.expected.readableBytes
        self.lastProgress = .now()
        self.sendNext(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.fail(HarnessError("the connection closed after \(self.outcome.rounds) round trips"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(HarnessError("the connection failed after \(self.outcome.rounds) round trips: \(error)"))
        context.close(promise: nil)
    }
}
