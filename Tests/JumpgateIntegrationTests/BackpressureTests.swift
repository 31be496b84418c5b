import Foundation
import JumpgateClient
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// A full send window pauses the sources and never ends a session (issue: a download through the official
/// plugin ended when the plugin fell behind). Official mode throughout: an agent with `--no-extensions`,
/// so smux v1 (no per-stream windows), 1 KiB messages and one JSON acknowledgement per message. The Jumpgate
/// client then behaves as the official plugin does: it stops reading its data channel (and so stops
/// acknowledging) while its local connections do not take what it has.
@Suite("Backpressure in official mode: stopped readers pause the sources", .serialized)
struct BackpressureTests {
    /// Accepted connections of a test server, so a test can start and stop their reading.
    final class Accepted: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let channels: NIOLockedValueBox<[any Channel]>
        init(_ channels: NIOLockedValueBox<[any Channel]>) { self.channels = channels }
        func channelActive(context: ChannelHandlerContext) {
            self.channels.withLockedValue { $0.append(context.channel) }
            context.fireChannelActive()
        }
    }

    static func pattern(_ count: Int, seed: UInt64) -> ByteBuffer {
        var stream = PatternStream(seed: seed)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        stream.fill(&buffer, count: count)
        return buffer
    }

    /// A target on 127.0.0.1 whose accepted connections get `makeHandlers()` and are recorded.
    static func startTarget(
        reading: Bool,
        accepted: NIOLockedValueBox<[any Channel]>,
        _ makeHandlers: @escaping @Sendable () -> [any ChannelHandler & Sendable]
    ) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: reading)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Accepted(accepted))
                    for handler in makeHandlers() { try channel.pipeline.syncOperations.addHandler(handler) }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    /// Waits (bounded) until `condition` holds, polling every 50 ms; false if it never did.
    @discardableResult
    static func eventually(seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return try await condition()
    }

    static func setReading(_ channel: any Channel, _ reading: Bool) async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: reading).get()
        if reading { channel.read() }
    }

    static func pending(_ channel: any Channel) async throws -> Int {
        try await channel.getOption(ChannelOptions.bufferedWritableBytes).get()
    }

    static let megabyte = 1 << 20

    @Test(
        "download: a local reader stops for 10 s; the session survives, memory stays bounded, all bytes arrive",
        // Official mode (smux v1). Basic mode has the same receive bound; a run of this test in basic mode
        // did not finish (see the issue note), so it is not claimed here.
        arguments: [["--no-extensions"]]
    )
    func stoppedLocalReader(agentArguments: [String]) async throws {
        let total = 96 * Self.megabyte
        let seed: UInt64 = 0x15_0001
        print("BackpressureTests.stoppedLocalReader: pattern seed \(seed)")
        let payload = Self.pattern(total, seed: seed)
        let accepted = NIOLockedValueBox<[any Channel]>([])
        // Sends the whole pattern to each connection, then closes it (its FIN follows the last byte).
        let target = try await Self.startTarget(reading: true, accepted: accepted) {
            [SendAndCloseHandler(payload: payload)]
        }
        defer { target.close(promise: nil) }
        let targetPort = try #require(target.localAddress?.port)
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(targetPort)"], agentArguments: agentArguments) {
            lab,
            _ in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: targetPort
            )
            defer { client.stop() }
            let agentBefore = GatewayLimitsTests.residentMegabytes(pid: lab.agent.process.processIdentifier)
            let clientBefore = GatewayLimitsTests.residentMegabytes(pid: client.process.processIdentifier)

            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let done = loop.makePromise(of: Int.self)
            // Read the first 2 MiB, then stop reading, as a database tool does when a user stops scrolling.
            let verifier = PatternVerifier(seed: seed, total: total, done: done, stopReadingAt: 2 * Self.megabyte)
            let reader = try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(verifier)
                    }
                }
                .connect(host: "127.0.0.1", port: localPort).get()
            defer { reader.close(promise: nil) }
            #expect(
                try await Self.eventually(seconds: 30) {
                    try await loop.submit { verifier.received }.get() >= 2 * Self.megabyte
                }
            )
            let stalledAt = Date()
            // Backpressure reaches the target: it cannot write the rest (the agent stopped reading it).
            let targetChannel = try #require(accepted.withLockedValue { $0.first })
            #expect(
                try await Self.eventually(seconds: 10) { try await Self.pending(targetChannel) > 0 },
                "the agent kept reading a target whose bytes nobody takes"
            )
            // A second connection opens and closes while the agent's send window is full: its SYN and
            // FIN are control messages, which a full window must not refuse (this ended the session).
            // (Basic mode serves one connection at a time: the second waits, unserved, and closes.)
            let basic = agentArguments.contains("--compat-version")
            let second = try await ClientBootstrap(group: loop).connect(host: "127.0.0.1", port: localPort).get()
            if !basic { await Self.eventually(seconds: 10) { accepted.withLockedValue { $0.count } >= 2 } }
            try await second.close()

            // Ten seconds of a stopped reader in all.
            let remaining = 10 - Date().timeIntervalSince(stalledAt)
            if remaining > 0 { try await Task.sleep(nanoseconds: UInt64(remaining * 1e9)) }
            #expect(client.process.isRunning, "the client ended: \(client.output.suffix(5))")
            let agentGrowth =
                GatewayLimitsTests.residentMegabytes(pid: lab.agent.process.processIdentifier) - agentBefore
            let clientGrowth =
                GatewayLimitsTests.residentMegabytes(pid: client.process.processIdentifier) - clientBefore
            print("BackpressureTests.stoppedLocalReader: agent grew \(agentGrowth) MiB, client \(clientGrowth) MiB")
            #expect(
                !MemoryBound.applies || agentGrowth < 64,
                "the agent holds \(agentGrowth) MiB for a reader that stopped"
            )
            #expect(
                !MemoryBound.applies || clientGrowth < 64,
                "the client holds \(clientGrowth) MiB for a reader that stopped"
            )
            #expect(try await Self.pending(targetChannel) > 0, "the target still waits to send the rest")
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(
                sessions["Sessions"]?.arrayValue?.contains { $0["SessionId"]?.stringValue == sessionID } == true,
                "the session is still active"
            )

            // The reader resumes: every byte arrives, in order.
            try await Self.setReading(reader, true)
            #expect(try await done.futureResult.get() == total)
            // And a new connection in the same session downloads in full.
            #expect(try await Self.download(port: localPort, total: total, seed: seed) == total)
            #expect(client.process.isRunning)
            #expect(!lab.agent.standardError.contains("outgoing buffer"))
        }
    }

    static func download(port: Int, total: Int, seed: UInt64) async throws -> Int {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: Int.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        PatternVerifier(seed: seed, total: total, done: done)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        return try await done.futureResult.get()
    }

    @Test("upload: the target stops reading for 10 s; the session survives, memory stays bounded, all bytes arrive")
    func stoppedTarget() async throws {
        let total = 96 * Self.megabyte
        let seed: UInt64 = 0x15_0002
        print("BackpressureTests.stoppedTarget: pattern seed \(seed)")
        let accepted = NIOLockedValueBox<[any Channel]>([])
        let verified = NIOLockedValueBox<[EventLoopFuture<Int>]>([])
        // The target's connections start without reading; each verifies the pattern once allowed to read.
        let target = try await Self.startTarget(reading: false, accepted: accepted) {
            let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Int.self)
            verified.withLockedValue { $0.append(promise.futureResult) }
            return [PatternVerifier(seed: seed, total: total, done: promise)]
        }
        defer { target.close(promise: nil) }
        let targetPort = try #require(target.localAddress?.port)
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(targetPort)"], agentArguments: ["--no-extensions"]) {
            lab,
            _ in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: targetPort)
            defer { client.stop() }
            let agentBefore = GatewayLimitsTests.residentMegabytes(pid: lab.agent.process.processIdentifier)
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let writer = try await ClientBootstrap(group: loop).connect(host: "127.0.0.1", port: localPort).get()
            defer { writer.close(promise: nil) }
            writer.writeAndFlush(Self.pattern(total, seed: seed), promise: nil)
            let stalledAt = Date()
            // Backpressure reaches the writer: most of what it offered waits in its own buffer.
            #expect(
                try await Self.eventually(seconds: 20) {
                    try await Self.pending(writer) > total / 2
                        && Date().timeIntervalSince(stalledAt) > 10
                },
                "the tunnel took more than half of what the writer offered a target that does not read"
            )
            #expect(client.process.isRunning, "the client ended: \(client.output.suffix(5))")
            let agentGrowth =
                GatewayLimitsTests.residentMegabytes(pid: lab.agent.process.processIdentifier) - agentBefore
            print("BackpressureTests.stoppedTarget: agent grew \(agentGrowth) MiB")
            #expect(
                !MemoryBound.applies || agentGrowth < 48,
                "the agent holds \(agentGrowth) MiB for a target that does not read"
            )

            // The target reads again: every byte arrives, in order; then a second connection uploads in full.
            let first = try #require(accepted.withLockedValue { $0.first })
            try await Self.setReading(first, true)
            #expect(try await #require(verified.withLockedValue { $0.first }).get() == total)
            let second = try await ClientBootstrap(group: loop).connect(host: "127.0.0.1", port: localPort).get()
            defer { second.close(promise: nil) }
            second.writeAndFlush(Self.pattern(total, seed: seed), promise: nil)
            #expect(await Self.eventually(seconds: 10) { accepted.withLockedValue { $0.count } >= 2 })
            try await Self.setReading(try #require(accepted.withLockedValue { $0.last }), true)
            #expect(try await #require(verified.withLockedValue { $0.last }).get() == total)
            #expect(client.process.isRunning)
        }
    }
}
