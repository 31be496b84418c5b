import JumpgateClient
import JumpgateNIO
import Logging
import NIOCore
import NIOPosix
import Testing

/// `PortForwarder.readyPort` is what `jumpgate forward` and the status line wait on: a forwarder that
/// cannot reach its data channel must fail it, or they wait for ever.
@Suite("PortForwarder readiness")
struct PortForwarderReadyTests {
    struct Silent: ForwarderConsole {
        func write(_ text: String) {}
    }

    func forwarder(streamURL: String) -> PortForwarder {
        PortForwarder(
            grant: SessionGrant(sessionID: "s-0123456789abcdef0", tokenValue: "t", streamURL: streamURL),
            localPort: 0,
            caFile: nil,
            console: Silent(),
            logger: Logger(label: "test")
        )
    }

    @Test("a data channel that cannot be reached fails the readiness future with the same error as run()")
    func unreachableDataChannelFailsReadiness() async throws {
        // A port that was just free on 127.0.0.1: the connection is refused.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        try await server.close()

        for url in ["wss://127.0.0.1:\(port)/v1/data-channel/s-0123456789abcdef0", "https://127.0.0.1:\(port)/x"] {
            let forwarder = self.forwarder(streamURL: url)
            var runError: ClientError?
            do {
                _ = try await forwarder.run()
                Issue.record("run() succeeded against \(url)")
            } catch let error as ClientError {
                runError = error
            }
            // Bounded: before the fix this future never completed.
            let settled = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Int.self)
            forwarder.readyPort.cascade(to: settled)
            let guardTimer = settled.futureResult.eventLoop.scheduleTask(in: .seconds(10)) {
                settled.fail(ClientError("the readiness future was still pending 10 s after run() failed"))
            }
            defer { guardTimer.cancel() }
            do {
                let port = try await settled.futureResult.get()
                Issue.record("the readiness future gave port \(port) for \(url)")
            } catch let error as ClientError {
                #expect(error.description == runError?.description)
            }
        }
    }

    @Test(
        "Ctrl+C while the data channel is still connecting ends run() at once, as the user's end, and closes the port",
        .timeLimit(.minutes(1))
    )
    func terminateWhileConnecting() async throws {
        // A gateway that accepts the TCP connection and never answers its TLS handshake.
        let accepted = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { _ in
                accepted.succeed()
                return MultiThreadedEventLoopGroup.singleton.next().makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        // `jumpgate forward` binds its ports before it connects.
        let listener = try await LocalListener.bind(
            host: "127.0.0.1",
            port: 0,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next()
        )
        let forwarder = PortForwarder(
            grant: SessionGrant(
                sessionID: "s-0123456789abcdef0",
                tokenValue: "t",
                streamURL: "wss://127.0.0.1:\(port)/v1/data-channel/s-0123456789abcdef0"
            ),
            localPort: 0,
            caFile: nil,
            console: Silent(),
            logger: Logger(label: "test"),
            listener: listener
        )
        let running = Task { try await forwarder.run() }
        try await accepted.futureResult.get()
        forwarder.terminate()
        // Without the fix run() waits out the upgrade's 30 s and then throws.
        let outcome = try await running.value
        guard case .endedByUser = outcome else {
            Issue.record("run() ended with \(outcome)")
            return
        }
        // Whoever waits for the local port hears that it will not open.
        await #expect(throws: ClientError.self) { try await forwarder.readyPort.get() }
        // And the port bound for it is closed, not left accepting connections nobody reads.
        try await listener.channel.closeFuture.get()
    }
}
