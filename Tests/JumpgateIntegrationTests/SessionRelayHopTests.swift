import JumpgateNIO
import JumpgateTestUtilities
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateGateway

/// Records the relay's writes to a channel (as the WebSocket handler would take them) and fulfils a
/// promise once `expected` frames arrived.
private final class FrameCollector: ChannelOutboundHandler {
    typealias OutboundIn = WebSocketMessage
    var sequence: [UInt64] = []
    let expected: Int
    let done: EventLoopPromise<Void>

    init(expected: Int, done: EventLoopPromise<Void>) {
        self.expected = expected
        self.done = done
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .binary(let frame) = self.unwrapOutboundIn(data), let message = try? SSMMessage(decoding: frame) {
            self.sequence.append(UInt64(message.sequenceNumber))
            if self.sequence.count == self.expected { self.done.succeed() }
        }
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {}
}

/// The relay's path across event loops, with real channels on two loops (EmbeddedChannels are always
/// "in the loop", so they never take it).
@Suite("Session relay across event loops")
struct SessionRelayHopTests {
    @Test("bursts from another loop arrive in order; past the hop limit the sender pauses and is resumed")
    func hopOrderAndResume() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (clientLoop, agentLoop) = (group.next(), group.next())
        #expect(clientLoop !== agentLoop)
        let frames = 20
        let done = agentLoop.makePromise(of: Void.self)
        // Two connected channels: the client side on one loop, the agent side on the other.
        let server = try await ServerBootstrap(group: clientLoop)
            .childChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0).get()
        let agent = try await ClientBootstrap(group: agentLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FrameCollector(expected: frames, done: done))
                }
            }
            .connect(to: server.localAddress!).get()
        let client = try await ClientBootstrap(group: clientLoop)
            .channelOption(.autoRead, value: false)
            .connect(to: server.localAddress!).get()

        let relay = SessionRelay(sessionID: "s", state: GatewayState(clock: { 1_700_000_000 }))
        relay.attach(.client, channel: client)
        relay.attach(.agent, channel: agent)
        // 20 frames of 64 KiB (1.25 MiB) in two bursts from the client's loop: together more than the hop
        // limit. The agent's loop is held until both are forwarded, so neither hop runs before.
        let gate = ConditionLock(value: 0)
        agentLoop.execute {
            gate.lock(whenValue: 1)
            gate.unlock()
        }
        let payload = ByteBuffer(repeating: 3, count: 64 * 1024)
        let burst = { (first: Int) in
            (first..<(first + frames / 2)).map {
                SSMMessage(
                    messageType: .inputStreamData,
                    createdDate: 1,
                    sequenceNumber: Int64($0),
                    payloadType: .output,
                    payload: payload
                ).encoded()
            }
        }
        let (first, second) = (burst(0), burst(frames / 2))
        let size = first.reduce(0) { $0 + $1.readableBytes }
        // The bursts come as slices of one buffer, as the gateway's WebSocket handler hands them out of
        // NIOSSL's read buffer: a hop must copy them, since that buffer is reused by the next read.
        let (stillReading, unshared) = try await clientLoop.submit {
            try client.syncOptions!.setOption(.autoRead, value: false)
            var tls = ByteBufferAllocator().buffer(capacity: 2 * size)
            for frame in first + second { tls.writeImmutableBuffer(frame) }
            let results = Self.forwardSlices(of: tls, bursts: [first.count, second.count], relay: relay)
            return ((results[0], results[1]), tls.reusedInPlace())
        }.get()
        #expect(unshared, "a burst waiting in a hop is still a slice of the sender's TLS buffer")
        gate.lock()
        gate.unlock(withValue: 1)
        #expect(stillReading.0, "the first burst (0.6 MiB in the hop) stopped the sender")
        #expect(!stillReading.1, "1.25 MiB waiting in hops did not stop the sender")
        try await done.futureResult.get()
        let sequence = try await agentLoop.submit {
            try agent.pipeline.syncOperations.handler(type: FrameCollector.self).sequence
        }.get()
        #expect(sequence == (0..<UInt64(frames)).map { $0 }, "frames arrived out of order")
        // The hop that drained the queue resumed the sender: its autoRead is on again (the resume was
        // queued on the client's loop before this look, which runs after the agent loop's last hop).
        try await agentLoop.submit {}.get()
        let reading = try await client.getOption(.autoRead).get()
        #expect(reading, "the sender stayed paused after the hops drained")
        #expect(relay.relayedBytes.toAgent == Int64(2 * size))
        try await client.close()
        try await agent.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// Forwards `tls`, cut into frames of equal size, as bursts of the given frame counts from the client;
    /// returns whether each left the sender reading. The slices are gone when it returns.
    static func forwardSlices(of tls: ByteBuffer, bursts: [Int], relay: SessionRelay) -> [Bool] {
        let size = tls.readableBytes / bursts.reduce(0, +)
        var offset = 0
        return bursts.map { count in
            let frames = (0..<count).map { index in tls.getSlice(at: offset + index * size, length: size)! }
            offset += count * size
            return relay.forward(frames, from: .client)
        }
    }
}
