import NIOCore
import NIOPosix

/// A TCP echo server on 127.0.0.1: the destination the tunnel forwards to.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { context.close(mode: .output, promise: nil) }
    }
}

func startEchoServer() async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 256)
        .childChannelOption(.allowRemoteHalfClosure, value: true)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
        }
        .bind(host: "127.0.0.1", port: 0)
        .get()
}

/// Sends `bytes` on a new connection to `port` and collects what comes back until `bytes.count`
/// arrived or the connection closed.
final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var received = ByteBuffer()
    let expected: Int
    let done: EventLoopPromise<ByteBuffer>

    init(expected: Int, done: EventLoopPromise<ByteBuffer>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        if self.received.readableBytes >= self.expected {
            self.done.succeed(self.received)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.succeed(self.received)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(error)
        context.close(promise: nil)
    }
}

func echoRoundTrip(port: Int, bytes: ByteBuffer) async throws -> ByteBuffer {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: ByteBuffer.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Collector(expected: bytes.readableBytes, done: done))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    channel.writeAndFlush(bytes, promise: nil)
    let timeout = loop.scheduleTask(in: .seconds(60)) { channel.close(promise: nil) }
    defer { timeout.cancel() }
    return try await done.futureResult.get()
}

func randomBuffer(_ count: Int) -> ByteBuffer {
    var rng = SystemRandomNumberGenerator()
    var buffer = ByteBuffer()
    buffer.reserveCapacity(count)
    while buffer.readableBytes + 8 <= count { buffer.writeInteger(rng.next() as UInt64) }
    while buffer.readableBytes < count { buffer.writeInteger(UInt8.random(in: 0...255, using: &rng)) }
    return buffer
}

/// Opens `count` connections at once, each echoing a different random payload; returns how many came
/// back byte-exact.
func parallelEchoes(port: Int, count: Int, baseSize: Int, step: Int) async throws -> Int {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<count {
            group.addTask {
                let payload = randomBuffer(baseSize + i * step)
                return try await echoRoundTrip(port: port, bytes: payload) == payload
            }
        }
        var successes = 0
        for try await ok in group where ok { successes += 1 }
        return successes
    }
}

/// One connection that writes `bytes` in `chunk`-sized pieces every `interval` (a paced transfer, so that
/// it is still running when the test breaks something) and collects the echo. Throws if the connection is
/// reset; returns what came back (shorter than `bytes` if the connection closed early).
func pacedEchoRoundTrip(port: Int, bytes: ByteBuffer, chunk: Int, interval: TimeAmount) async throws -> ByteBuffer {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: ByteBuffer.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Collector(expected: bytes.readableBytes, done: done))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    let timeout = loop.scheduleTask(in: .seconds(120)) { channel.close(promise: nil) }
    defer { timeout.cancel() }
    var remaining = bytes
    while remaining.readableBytes > 0 {
        let piece = remaining.readSlice(length: min(chunk, remaining.readableBytes))!
        try await channel.writeAndFlush(piece)
        try await Task.sleep(nanoseconds: UInt64(interval.nanoseconds))
    }
    return try await done.futureResult.get()
}
