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
        // Close the output only once every echo is written (a close would fail pending writes).
        if case ChannelEvent.inputClosed = event {
            let channel = context.channel
            context.writeAndFlush(NIOAny(ByteBuffer())).whenComplete { _ in channel.close(mode: .output, promise: nil) }
        }
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
    /// Close the connection once `expected` bytes arrived (else the test closes it, its own way).
    let closeWhenDone: Bool

    init(expected: Int, done: EventLoopPromise<ByteBuffer>, closeWhenDone: Bool = true) {
        self.expected = expected
        self.done = done
        self.closeWhenDone = closeWhenDone
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        if self.received.readableBytes >= self.expected {
            self.done.succeed(self.received)
            if self.closeWhenDone { context.close(promise: nil) }
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

func echoRoundTrip(port: Int, bytes: ByteBuffer, expected: Int? = nil) async throws -> ByteBuffer {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: ByteBuffer.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    Collector(expected: expected ?? bytes.readableBytes, done: done)
                )
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    if bytes.readableBytes > 0 { channel.writeAndFlush(bytes, promise: nil) }
    let timeout = loop.scheduleTask(in: .seconds(60)) { channel.close(promise: nil) }
    defer { timeout.cancel() }
    return try await done.futureResult.get()
}

/// What came back on a connection that is refused or cut: nothing. The end is a FIN, or a reset when
/// the other side closed with our bytes still unread in its socket (the kernel answers that with RST), a
/// race the test does not control; both mean the same here.
func bytesBeforeRefusal(port: Int, bytes: ByteBuffer) async throws -> Int {
    do {
        return try await echoRoundTrip(port: port, bytes: bytes).readableBytes
    } catch let error as IOError where error.errnoCode == ECONNRESET {
        return 0
    }
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

/// Sends `bytes` to the echo at `port` in `chunk`-sized writes `interval` apart and returns what came back.
/// The pacing runs on the connection's event loop, not on the test's task: with the suite running, Swift
/// Testing's cooperative pool (as many threads as cores) was starved by other tests, the writer got a turn
/// every few seconds, and the transfer looked stalled to its timeout (NetworkDropTests: "I/O on closed
/// channel" after 50 s, while the trace showed the tunnel forwarding each chunk the moment it arrived).
func pacedEchoRoundTrip(
    port: Int,
    bytes: ByteBuffer,
    chunk: Int,
    interval: TimeAmount,
    timeout: TimeAmount = .seconds(120)
) async throws -> ByteBuffer {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: ByteBuffer.self)
    let collector = Collector(expected: bytes.readableBytes, done: done)  // read on its loop only
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(collector)
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    let deadline = loop.scheduleTask(in: timeout) {
        done.fail(
            PacedTransferTimeout(
                timeout: timeout,
                total: bytes.readableBytes,
                received: collector.received.readableBytes
            )
        )
        channel.close(promise: nil)
    }
    defer { deadline.cancel() }
    _ = try await loop.submit {
        let remaining = NIOLoopBoundBox(bytes, eventLoop: loop)
        return loop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { task in
            guard let piece = remaining.value.readSlice(length: min(chunk, remaining.value.readableBytes)),
                piece.readableBytes > 0
            else {
                task.cancel()
                return
            }
            channel.writeAndFlush(piece).whenFailure { _ in task.cancel() }
        }
    }.get()
    return try await done.futureResult.get()
}

struct PacedTransferTimeout: Error, CustomStringConvertible {
    let timeout: TimeAmount
    let total: Int
    let received: Int
    var description: String {
        "\(self.received) of \(self.total) paced bytes came back within \(self.timeout.nanoseconds / 1_000_000_000) s"
    }
}

/// An echo server that ends a connection once it has echoed `limit` bytes on it: it sends its FIN and
/// discards whatever else arrives. (Closing outright with unread input would make the kernel send RST,
/// which lets a receiver's kernel-queued data be thrown away: a race a test must not depend on.)
final class ClosingEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let limit: Int
    var seen = 0
    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        guard self.seen < self.limit else { return }
        let take = min(buffer.readableBytes, self.limit - self.seen)
        self.seen += take
        context.write(self.wrapOutboundOut(buffer.readSlice(length: take)!), promise: nil)
        if self.seen >= self.limit {
            let channel = context.channel
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer())).whenComplete { _ in
                channel.close(mode: .output, promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { context.close(promise: nil) }
    }
}

func startServer(
    port: Int = 0,
    reading: Bool = true,
    _ makeHandler: @escaping @Sendable () -> any ChannelHandler
) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 256)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.allowRemoteHalfClosure, value: true)
        .childChannelOption(.autoRead, value: reading)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(makeHandler()) }
        }
        .bind(host: "127.0.0.1", port: port)
        .get()
}

/// A deterministic byte stream (xorshift64*), so gigabytes can be checked without keeping them.
struct PatternStream {
    var state: UInt64
    init(seed: UInt64) { self.state = seed | 1 }
    mutating func next() -> UInt64 {
        self.state ^= self.state >> 12
        self.state ^= self.state << 25
        self.state ^= self.state >> 27
        return self.state &* 2_685_821_657_736_338_717
    }
    mutating func fill(_ buffer: inout ByteBuffer, count: Int) {
        precondition(count % 8 == 0)
        for _ in 0..<(count / 8) { buffer.writeInteger(self.next(), endianness: .little) }
    }
}

/// Checks that what arrives is the pattern, byte for byte, and completes when `total` bytes arrived.
final class PatternVerifier: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var pattern: PatternStream
    var pending = ByteBuffer()
    var received = 0
    let total: Int
    let done: EventLoopPromise<Int>
    var mismatch = false
    /// Stops reading (autoRead off) once this many bytes arrived, on the event loop itself: a test that
    /// stopped it from its own task stopped it late when the suite kept the test's threads busy, after
    /// everything had arrived.
    var stopReadingAt: Int?

    init(seed: UInt64, total: Int, done: EventLoopPromise<Int>, stopReadingAt: Int? = nil) {
        self.pattern = PatternStream(seed: seed)
        self.total = total
        self.done = done
        self.stopReadingAt = stopReadingAt
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received += buffer.readableBytes
        if let stop = self.stopReadingAt, self.received >= stop {
            self.stopReadingAt = nil
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
        self.pending.writeBuffer(&buffer)
        while self.pending.readableBytes >= 8, let word = self.pending.readInteger(endianness: .little, as: UInt64.self)
        {
            if word != self.pattern.next() { self.mismatch = true }
        }
        self.pending.discardReadBytes()
        if self.mismatch {
            self.done.fail(HarnessError("the stream differs from what was sent, before byte \(self.received)"))
            context.close(promise: nil)
        } else if self.received >= self.total {
            self.done.succeed(self.received)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.fail(HarnessError("the connection closed after \(self.received) of \(self.total) bytes"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(error)
        context.close(promise: nil)
    }
}

/// Streams `total` bytes of a pattern through an echo at `port` and verifies the echo on the fly;
/// returns the bytes verified. Memory stays at a few MiB whatever `total` is.
func streamingEcho(port: Int, total: Int, seed: UInt64 = 42, chunk: Int = 1 << 20) async throws -> Int {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: Int.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(PatternVerifier(seed: seed, total: total, done: done))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    var pattern = PatternStream(seed: seed)
    var sent = 0
    while sent < total {
        let n = min(chunk, total - sent)
        var buffer = channel.allocator.buffer(capacity: n)
        pattern.fill(&buffer, count: n)
        try await channel.writeAndFlush(buffer)
        sent += n
    }
    return try await done.futureResult.get()
}

/// A target that sends `payload` as soon as a connection arrives, then closes it (an HTTP/1.0-style
/// response): the tunnel must deliver every byte before the EOF.
final class SendAndCloseHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: ByteBuffer
    init(payload: ByteBuffer) { self.payload = payload }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(self.payload)).whenComplete { _ in channel.close(promise: nil) }
    }
}
