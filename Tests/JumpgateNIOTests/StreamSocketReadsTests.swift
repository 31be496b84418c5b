import JumpgateNIO
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// `StreamSocketReads.bytesWaiting`: what decides whether a stream's SYN waits for the connection's first
/// bytes (StreamTableOpeningTests). Real sockets on 127.0.0.1: the answer comes from the kernel.
@Suite("Stream sockets: bytes waiting on an accepted connection")
struct StreamSocketReadsTests {
    /// Polls `condition` (bounded: 10 s) until it holds.
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(2))
        }
        Issue.record("timed out waiting for \(what)")
    }

    @Test("a connection whose application spoke has bytes waiting before any read; a silent one has none")
    func bytesWaitingAtAccept() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = NIOLockedValueBox<[Int: any Channel]>([:])
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                if let port = channel.remoteAddress?.port { accepted.withLockedValue { $0[port] = channel } }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { server.close(promise: nil) }
        let address = try #require(server.localAddress)
        let speaker = try await ClientBootstrap(group: group).connect(to: address).get()
        defer { speaker.close(promise: nil) }
        let silent = try await ClientBootstrap(group: group).connect(to: address).get()
        defer { silent.close(promise: nil) }
        try await speaker.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\n")).get()

        let speakerPort = try #require(speaker.localAddress?.port)
        let silentPort = try #require(silent.localAddress?.port)
        try await Self.eventually("both connections accepted") {
            accepted.withLockedValue { $0[speakerPort] != nil && $0[silentPort] != nil }
        }
        let spoke = try #require(accepted.withLockedValue { $0[speakerPort] })
        let quiet = try #require(accepted.withLockedValue { $0[silentPort] })
        try await Self.eventually("the speaker's bytes counted") {
            try await spoke.eventLoop.submit { StreamSocketReads.bytesWaiting(on: spoke) }.get()
        }
        // Nothing was read (autoRead is off): the count is of bytes that arrived, which the speaker sent
        // and the silent one did not.
        #expect(try await quiet.eventLoop.submit { StreamSocketReads.bytesWaiting(on: quiet) }.get() == false)
        // Off the channel's event loop it does not ask (the answer would come later): false.
        #expect(StreamSocketReads.bytesWaiting(on: spoke) == false)
    }

    @Test("a channel that is not a socket: false")
    func notASocket() throws {
        let embedded = EmbeddedChannel()
        #expect(StreamSocketReads.bytesWaiting(on: embedded) == false)
        _ = try embedded.finish()
    }
}
