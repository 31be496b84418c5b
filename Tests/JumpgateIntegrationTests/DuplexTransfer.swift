import Crypto
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A full-speed transfer both ways on one connection, checked with SHA-256 at both ends, for the fault
/// tests. The client sends a 16-byte header (seed, byte count), then its upload; the target streams as
/// many bytes back at once, and once both are done appends SHA-256(what it sent) and SHA-256(what it
/// received). Both ends write only while their socket is writable, so the speed is the tunnel's. All of it
/// runs on event loops (never on Swift Testing's cooperative pool, which other suites can starve).
enum DuplexTransfer {
    /// What arrived where: equal digests mean byte-exact both ways.
    struct Result: Sendable {
        var uploadSent: SHA256Digest
        var uploadReceivedByTarget: [UInt8]
        var downloadSentByTarget: [UInt8]
        var downloadReceived: SHA256Digest
        var isByteExact: Bool {
            Array(self.uploadSent) == self.uploadReceivedByTarget
                && Array(self.downloadReceived) == self.downloadSentByTarget
        }
    }

    static let chunk = 64 << 10

    /// Listens on 127.0.0.1; each connection is one duplex transfer, counted in `progress`.
    static func startTarget(progress: TransferProgress) async throws -> any Channel {
        try await startServer { DuplexTargetHandler(progress: progress) }
    }

    /// Runs one transfer of `count` bytes each way through `port` (a multiple of 64 KiB); fails if the
    /// connection closes or is reset before the digests arrive, or after `timeout`.
    static func run(
        port: Int,
        count: Int,
        seed: UInt64,
        progress: TransferProgress,
        timeout: TimeAmount
    ) async throws -> Result {
        precondition(count % Self.chunk == 0)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: Result.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DuplexClientHandler(count: count, seed: seed, progress: progress, done: done)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let deadline = loop.scheduleTask(in: timeout) {
            done.fail(HarnessError("the duplex transfer did not finish in \(timeout): \(progress.summary)"))
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        let result = try await done.futureResult.get()
        try? await channel.close()
        return result
    }
}

/// Bytes received so far, the upload counted by the target and the download by the client, and waits
/// for a point in the transfer (so a fault lands while bytes are in flight).
final class TransferProgress: Sendable {
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var uploaded = 0
        var downloaded = 0
        var finished = false
        var waiters: [(bytes: Int, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    func add(uploaded: Int = 0, downloaded: Int = 0) {
        let ready = self.state.withLockedValue { state -> [CheckedContinuation<Bool, Never>] in
            state.uploaded += uploaded
            state.downloaded += downloaded
            let reached = min(state.uploaded, state.downloaded)
            let due = state.waiters.filter { $0.bytes <= reached }.map(\.continuation)
            state.waiters.removeAll { $0.bytes <= reached }
            return due
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    /// Ends every wait (the transfer is over, either way).
    func finish() {
        let waiting = self.state.withLockedValue { state -> [CheckedContinuation<Bool, Never>] in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters.map(\.continuation)
        }
        for continuation in waiting { continuation.resume(returning: false) }
    }

    /// Returns true once both directions carried `bytes`, false if the transfer ended first.
    func wait(untilBoth bytes: Int) async -> Bool {
        await withCheckedContinuation { continuation in
            let now = self.state.withLockedValue { state -> Bool? in
                if min(state.uploaded, state.downloaded) >= bytes { return true }
                if state.finished { return false }
                state.waiters.append((bytes, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Whether both directions still have bytes to carry (a fault now lands while bytes are in flight).
    func inFlight(total: Int) -> Bool {
        self.state.withLockedValue { min($0.uploaded, $0.downloaded) < total }
    }

    var summary: String {
        self.state.withLockedValue { "uploaded \($0.uploaded) bytes, downloaded \($0.downloaded) bytes" }
    }
}

/// The client's end: writes the header and the upload while writable, hashes both directions.
final class DuplexClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let count: Int
    let progress: TransferProgress
    let done: EventLoopPromise<DuplexTransfer.Result>
    var pattern: PatternStream
    var sent = 0
    var received = 0
    var sentHasher = SHA256()
    var receivedHasher = SHA256()
    var trailer: [UInt8] = []

    init(count: Int, seed: UInt64, progress: TransferProgress, done: EventLoopPromise<DuplexTransfer.Result>) {
        self.count = count
        self.pattern = PatternStream(seed: seed)
        self.progress = progress
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        var header = context.channel.allocator.buffer(capacity: 16)
        header.writeInteger(self.pattern.state)
        header.writeInteger(UInt64(self.count))
        context.write(self.wrapOutboundOut(header), promise: nil)
        self.writeWhileWritable(context: context)
        context.fireChannelActive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writeWhileWritable(context: context)
    }

    func writeWhileWritable(context: ChannelHandlerContext) {
        while self.sent < self.count, context.channel.isWritable {
            var buffer = context.channel.allocator.buffer(capacity: DuplexTransfer.chunk)
            self.pattern.fill(&buffer, count: DuplexTransfer.chunk)
            buffer.withUnsafeReadableBytes { self.sentHasher.update(bufferPointer: $0) }
            self.sent += DuplexTransfer.chunk
            context.write(self.wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        let body = min(buffer.readableBytes, self.count - self.received)
        if body > 0 {
            let slice = buffer.readSlice(length: body)!
            slice.withUnsafeReadableBytes { self.receivedHasher.update(bufferPointer: $0) }
            self.received += body
            self.progress.add(downloaded: body)
        }
        self.trailer += buffer.readableBytesView
        if self.trailer.count >= 64 {
            self.done.succeed(
                DuplexTransfer.Result(
                    uploadSent: self.sentHasher.finalize(),
                    uploadReceivedByTarget: Array(self.trailer[32..<64]),
                    downloadSentByTarget: Array(self.trailer[0..<32]),
                    downloadReceived: self.receivedHasher.finalize()
                )
            )
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.fail(
            HarnessError("the local connection closed after \(self.sent) bytes sent, \(self.received) received")
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(HarnessError("the local connection failed (\(error)) after \(self.received) bytes received"))
        context.close(promise: nil)
    }
}

/// The target's end: reads the header, then streams the download while writable and hashes the upload;
/// appends both digests when both directions are complete.
final class DuplexTargetHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let progress: TransferProgress
    var header = ByteBuffer()
    var count = 0
    var pattern = PatternStream(seed: 0)
    var sent = 0
    var received = 0
    var sentHasher = SHA256()
    var receivedHasher = SHA256()
    var trailerSent = false

    init(progress: TransferProgress) { self.progress = progress }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if self.header.readableBytes < 16 {
            var piece = buffer.readSlice(length: min(16 - self.header.readableBytes, buffer.readableBytes))!
            self.header.writeBuffer(&piece)
            guard self.header.readableBytes == 16 else { return }
            let seed = self.header.getInteger(at: self.header.readerIndex, as: UInt64.self)!
            self.count = Int(self.header.getInteger(at: self.header.readerIndex + 8, as: UInt64.self)!)
            self.pattern = PatternStream(seed: seed ^ 0x5DEE_CE66_D000_0000)
            self.writeWhileWritable(context: context)
        }
        if buffer.readableBytes > 0 {
            buffer.withUnsafeReadableBytes { self.receivedHasher.update(bufferPointer: $0) }
            self.received += buffer.readableBytes
            self.progress.add(uploaded: buffer.readableBytes)
            self.sendTrailerIfDone(context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writeWhileWritable(context: context)
    }

    func writeWhileWritable(context: ChannelHandlerContext) {
        guard self.header.readableBytes == 16 else { return }
        while self.sent < self.count, context.channel.isWritable {
            var buffer = context.channel.allocator.buffer(capacity: DuplexTransfer.chunk)
            self.pattern.fill(&buffer, count: DuplexTransfer.chunk)
            buffer.withUnsafeReadableBytes { self.sentHasher.update(bufferPointer: $0) }
            self.sent += DuplexTransfer.chunk
            context.write(self.wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
        self.sendTrailerIfDone(context: context)
    }

    func sendTrailerIfDone(context: ChannelHandlerContext) {
        guard !self.trailerSent, self.count > 0, self.sent == self.count, self.received >= self.count else { return }
        self.trailerSent = true
        var trailer = context.channel.allocator.buffer(capacity: 64)
        trailer.writeBytes(self.sentHasher.finalize())
        trailer.writeBytes(self.receivedHasher.finalize())
        context.writeAndFlush(self.wrapOutboundOut(trailer), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
