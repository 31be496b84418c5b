import Foundation
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

/// The agent's port sessions through real processes: big transfers, half-close, targets that fail,
/// refuse, stall or close half-way, a stalled stream next to a busy one, and the official-agent mode.
@Suite("Agent: port sessions", .serialized)
struct AgentTests {
    @Test("1 GiB each way through one connection, verified on the fly")
    func oneGibibyteEachWay() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            #expect(try await streamingEcho(port: localPort, total: 1 << 30) == 1 << 30)
        }
    }

    @Test("half-close: the client's FIN reaches the target, whose answer still comes back in full")
    func halfClose() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let payload = randomBuffer(3 << 20)
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let done = loop.makePromise(of: ByteBuffer.self)
            let channel = try await ClientBootstrap(group: loop)
                .channelOption(.allowRemoteHalfClosure, value: false)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Collector(expected: Int.max, done: done))
                    }
                }
                .connect(host: "127.0.0.1", port: localPort)
                .get()
            // Everything, then FIN: the echo server answers, then closes its side when it sees the FIN.
            try await channel.writeAndFlush(payload)
            try await channel.close(mode: .output)
            // A hang becomes a failure (the FIN or the tail never arrived).
            let guardTimer = loop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }
            defer { guardTimer.cancel() }
            let echoed = try await done.futureResult.get()
            #expect(echoed.readableBytes == payload.readableBytes)
            #expect(echoed == payload)
        }
    }

    @Test("a target that sends 16 MiB and closes at once: every byte arrives before the EOF (five times)")
    func targetSendsThenCloses() async throws {
        let payload = randomBuffer(16 << 20)
        let sender = try await startServer { SendAndCloseHandler(payload: payload) }
        defer { sender.close(promise: nil) }
        let port = try #require(sender.localAddress?.port)
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(port)"]) { lab, _ in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: port)
            defer { client.stop() }
            for _ in 0..<5 {
                // Nothing is sent; the Collector gets the response and then the EOF.
                let received = try await echoRoundTrip(port: localPort, bytes: ByteBuffer(), expected: Int.max)
                #expect(received.readableBytes == payload.readableBytes)
                #expect(received == payload)
            }
        }
    }

    @Test("a target that closes half-way ends that connection only; the session stays up")
    func targetClosesHalfWay() async throws {
        let closer = try await startServer { ClosingEchoHandler(limit: 100_000) }
        defer { closer.close(promise: nil) }
        let port = try #require(closer.localAddress?.port)
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(port)"]) { lab, _ in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: port)
            defer { client.stop() }
            let cut = try await echoRoundTrip(port: localPort, bytes: randomBuffer(1 << 20))
            #expect(cut.readableBytes == 100_000)
            // The next connection works.
            let small = randomBuffer(50_000)
            #expect(try await echoRoundTrip(port: localPort, bytes: small) == small)
            #expect(client.process.isRunning)
        }
    }

    @Test("even with --allow '*:*', metadata and link-local addresses are refused in every spelling, with the reason")
    func forbiddenSpellings() async throws {
        let echo = try await startServer { EchoHandler() }
        defer { echo.close(promise: nil) }
        let echoPort = try #require(echo.localAddress?.port)
        // Everything, plus the loopback echo target (loopback is never part of '*').
        try await EndToEndTests.withLab(allow: ["*:*", "127.0.0.1:\(echoPort)"]) { lab, _ in
            // The same agent forwards to an allowed destination...
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let payload = randomBuffer(1000)
            #expect(try await echoRoundTrip(port: localPort, bytes: payload) == payload)
            // ...but never to these: one number, octal, IPv4-mapped IPv6, a link-local neighbour.
            for host in [
                "2852039166", "0251.0376.0251.0376", "::ffff:169.254.169.254", "169.254.10.1", "fd00:ec2::254",
            ] {
                let (refused, port, _) = try EndToEndTests().startSession(lab, host: host, port: 80)
                defer { refused.stop() }
                #expect(try await bytesBeforeRefusal(port: port, bytes: ByteBuffer(string: "GET /")) == 0)
                let why = try refused.waitForLine { $0.hasPrefix("The agent says: ") }
                #expect(why.contains("169.254") || why.contains("fd00:ec2"), "\(host): \(why)")
            }
        }
    }

    @Test("a refused dial is reported per connection with the official line; the session stays up")
    func dialRefused() async throws {
        // A port with nothing on it now, and an echo server on it later.
        let probe = try await startServer { EchoHandler() }
        let port = try #require(probe.localAddress?.port)
        try await probe.close()
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(port)"]) { lab, _ in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: port)
            defer { client.stop() }
            let nothing = try await bytesBeforeRefusal(port: localPort, bytes: randomBuffer(1000))
            #expect(nothing == 0)
            _ = try client.waitForLine { $0.contains("Connection to destination port failed, check SSM Agent logs.") }
            let why = try client.waitForLine { $0.hasPrefix("The agent says: ") }
            #expect(why.lowercased().contains("refused"), "\(why)")
            #expect(
                lab.agent.waitForStandardError(containing: "connection to the destination failed"),
                "\(lab.agent.standardError.suffix(1500))"
            )
            let echo = try await startServer(port: port) { EchoHandler() }
            defer { echo.close(promise: nil) }
            let payload = randomBuffer(10_000)
            #expect(try await echoRoundTrip(port: localPort, bytes: payload) == payload)
        }
    }

    @Test("a dial that hangs times out after --dial-timeout and is reported; the session stays up")
    func dialTimeout() async throws {
        // A listener that never accepts: once its accept queue is full, new SYNs are dropped and a
        // connect hangs, as to a firewalled host.
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let stuck = try await ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 1)
            .serverChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { stuck.close(promise: nil) }
        let port = try #require(stuck.localAddress?.port)
        var fillers: [any Channel] = []
        defer { for filler in fillers { filler.close(promise: nil) } }
        for _ in 0..<4 {
            if let filler = try? await ClientBootstrap(group: loop).connectTimeout(.milliseconds(300))
                .connect(host: "127.0.0.1", port: port).get()
            {
                fillers.append(filler)
            }
        }
        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(port)"], agentArguments: ["--dial-timeout", "2"]) {
            lab,
            _ in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: port)
            defer { client.stop() }
            let started = Date()
            let nothing = try await bytesBeforeRefusal(port: localPort, bytes: randomBuffer(1000))
            let elapsed = Date().timeIntervalSince(started)
            #expect(nothing == 0)
            #expect(elapsed >= 1.5 && elapsed < 15, "\(elapsed) s")
            _ = try client.waitForLine { $0.contains("Connection to destination port failed") }
            #expect(
                lab.agent.waitForStandardError { $0.lowercased().contains("timed out") || $0.contains("timeout") },
                "\(lab.agent.standardError.suffix(1500))"
            )
            #expect(client.process.isRunning)
        }
    }

    @Test("smux v2: one stream moves 64 MiB while another's window is full and unread")
    func stalledStreamDoesNotBlockOthers() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let never = loop.makePromise(of: ByteBuffer.self)
            defer { never.succeed(ByteBuffer()) }
            // Stream A: writes 8 MiB and never reads the echo.
            let stalled = try await ClientBootstrap(group: loop)
                .channelOption(.autoRead, value: false)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Collector(expected: Int.max, done: never))
                    }
                }
                .connect(host: "127.0.0.1", port: localPort)
                .get()
            defer { stalled.close(promise: nil) }
            stalled.writeAndFlush(randomBuffer(8 << 20), promise: nil)
            try await Task.sleep(nanoseconds: 1_000_000_000)
            // Stream B: 64 MiB each way, verified, while A stays stuck.
            #expect(try await streamingEcho(port: localPort, total: 64 << 20, seed: 7) == 64 << 20)
            #expect(stalled.isActive)
        }
    }

    @Test("--no-extensions: the plain official behaviour (smux v1, per-message acks, digests) carries data byte-exact")
    func officialBehaviour() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--no-extensions"]) { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 8, baseSize: 100_000, step: 999) == 8)
            #expect(try await streamingEcho(port: localPort, total: 16 << 20) == 16 << 20)
            let log = lab.agent.standardError
            #expect(log.contains("extensions=none") && log.contains("mode=smux v1"), "\(log.suffix(1500))")
            // A refused connection gets the official line only: no reason travels without connect-errors.
            let (refused, refusedPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: 1)
            defer { refused.stop() }
            #expect(try await bytesBeforeRefusal(port: refusedPort, bytes: ByteBuffer(string: "x")) == 0)
            _ = try refused.waitForLine { $0.contains("Connection to destination port failed, check SSM Agent logs.") }
            try await Task.sleep(nanoseconds: 300_000_000)
            #expect(!refused.output.contains { $0.hasPrefix("The agent says: ") })
            // Official-mode traffic (per-message acks, digests, smux v1, a refused stream): nothing refused.
            try await EndToEndTests.expectNoAgentRefusals(lab)
        }
    }

    @Test("basic mode (an agent reporting a version before mux): one connection at a time, byte-exact, re-dialled")
    func basicMode() async throws {
        try await EndToEndTests.withLab(agentArguments: ["--compat-version", "3.0.100.0"]) { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            // Connections one after the other: each is a new target connection (DisconnectToPort, re-dial).
            for size in [1000, 1 << 20, 3 << 20] {
                let payload = randomBuffer(size)
                #expect(try await echoRoundTrip(port: localPort, bytes: payload) == payload)
            }
            // A second connection waits, unserved, until the first one ends.
            let first = randomBuffer(100_000)
            let second = randomBuffer(200_000)
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let firstDone = loop.makePromise(of: ByteBuffer.self)
            let firstChannel = try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Closes the connection once the whole echo is back (basic mode cannot tell one
                        // connection's late bytes from the next one's, as with the official plugin).
                        try channel.pipeline.syncOperations.addHandler(
                            Collector(expected: first.readableBytes, done: firstDone)
                        )
                    }
                }
                .connect(host: "127.0.0.1", port: localPort).get()
            try await firstChannel.writeAndFlush(first)
            let waiting = Task { try await echoRoundTrip(port: localPort, bytes: second) }
            try await Task.sleep(nanoseconds: 1_000_000_000)
            #expect(!waiting.isCancelled)
            #expect(try await firstDone.futureResult.get() == first)
            #expect(try await waiting.value == second)

            let log = lab.agent.standardError
            #expect(log.contains("mode=basic"), "\(log.suffix(1500))")
            #expect(client.output.contains("Connection accepted for session \(sessionID)."))
            #expect(client.process.isRunning)
            // Basic mode (DisconnectToPort flags, re-dials, a waiting connection): nothing refused.
            try await EndToEndTests.expectNoAgentRefusals(lab)
        }
    }
}
