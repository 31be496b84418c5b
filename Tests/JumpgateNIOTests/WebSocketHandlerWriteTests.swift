import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// What ``WebSocketHandler`` writes for its peer: which frames are copied and masked into the batch, and
/// which large client frames go out as they are behind a zero-key header.
@Suite struct WebSocketHandlerWriteTests {
    /// A client handler on an embedded channel, with or without ``WebSocketHandler/Configuration/zeroMaskForLargeFrames``.
    func client(zeroMask: Bool) throws -> EmbeddedChannel {
        var configuration = WebSocketHandler.Configuration()
        configuration.zeroMaskForLargeFrames = zeroMask
        let channel = EmbeddedChannel(handler: WebSocketHandler(role: .client, configuration: configuration))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// Every buffer the handler wrote, in order, and the frames its peer (a server, unless `decodedBy`
    /// says otherwise) decodes from them.
    func written(
        _ channel: EmbeddedChannel,
        decodedBy role: WebSocketFrameDecoder.Role = .server
    ) throws -> (buffers: [ByteBuffer], frames: [WebSocketFrame]) {
        var buffers: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
        var wire = ByteBuffer()
        for var buffer in buffers { wire.writeBuffer(&buffer) }
        var decoder = WebSocketFrameDecoder(role: role)
        var frames: [WebSocketFrame] = []
        while let frame = try decoder.decode(buffer: &wire) { frames.append(frame) }
        #expect(wire.readableBytes == 0)
        return (buffers, frames)
    }

    /// A payload whose bytes differ from their neighbours', so a mask that was applied shows.
    func payload(_ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
    }

    func baseAddress(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    @Test func largeClientFrameGoesAsItIsBehindAZeroKeyHeader() throws {
        let channel = try self.client(zeroMask: true)
        defer { _ = try? channel.finish() }
        let large = self.payload(64 * 1024 + 200)
        channel.write(WebSocketMessage.binary(large), promise: nil)
        channel.flush()
        let (buffers, frames) = try self.written(channel)
        // The header on its own, then the caller's buffer itself: no copy, no mask pass.
        #expect(buffers.count == 2)
        #expect(buffers.last.map(self.baseAddress) == self.baseAddress(large))
        #expect(frames.count == 1)
        #expect(frames.first?.maskingKey == .zero)
        #expect(frames.first?.opcode == .binary)
        #expect(frames.first?.unmaskedPayload() == large)
    }

    @Test func smallAndControlFramesKeepFreshKeys() throws {
        let channel = try self.client(zeroMask: true)
        defer { _ = try? channel.finish() }
        let small = self.payload(WebSocketHandler.zeroCopyThreshold - 1)
        let large = self.payload(WebSocketHandler.zeroCopyThreshold)
        channel.write(WebSocketMessage.binary(small), promise: nil)
        channel.write(WebSocketMessage.binary(large), promise: nil)
        channel.write(WebSocketMessage.text(self.payload(10)), promise: nil)
        channel.flush()
        channel.pipeline.triggerUserOutboundEvent(WebSocketCloseRequest(code: 1000, reason: "done"), promise: nil)
        let (_, frames) = try self.written(channel)
        #expect(frames.map(\.opcode) == [.binary, .binary, .text, .close])
        let keys = frames.map(\.maskingKey)
        // A random key is zero once in 2^32 draws: these three are not.
        #expect(keys[0] != nil && keys[0] != .zero)
        #expect(keys[1] == .zero)
        #expect(keys[2] != nil && keys[2] != .zero)
        #expect(keys[3] != nil && keys[3] != .zero)
        // The small frame went masked: its bytes on the wire are not the payload's.
        #expect(frames[0].payload != small)
        #expect(frames[0].unmaskedPayload() == small)
        #expect(frames[1].unmaskedPayload() == large)
    }

    @Test func withoutTheSettingLargeClientFramesAreMaskedCopies() throws {
        let channel = try self.client(zeroMask: false)
        defer { _ = try? channel.finish() }
        let large = self.payload(64 * 1024)
        channel.write(WebSocketMessage.binary(large), promise: nil)
        channel.flush()
        let (buffers, frames) = try self.written(channel)
        #expect(buffers.count == 1)
        #expect(frames.count == 1)
        #expect(frames.first?.maskingKey != nil && frames.first?.maskingKey != .zero)
        #expect(frames.first?.payload != large)
        #expect(frames.first?.unmaskedPayload() == large)
    }

    @Test func serverFramesAreNeverMasked() throws {
        let channel = EmbeddedChannel(handler: WebSocketHandler(role: .server))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        defer { _ = try? channel.finish() }
        let large = self.payload(64 * 1024)
        channel.write(WebSocketMessage.binary(large), promise: nil)
        channel.write(WebSocketMessage.binary(self.payload(100)), promise: nil)
        channel.flush()
        let (buffers, frames) = try self.written(channel, decodedBy: .client)
        #expect(frames.map(\.maskingKey) == [nil, nil])
        #expect(buffers.contains { self.baseAddress($0) == self.baseAddress(large) })
        #expect(frames.first?.payload == large)
    }

    @Test func framesAndPromisesKeepTheirOrderAroundAZeroKeyFrame() throws {
        let channel = try self.client(zeroMask: true)
        defer { _ = try? channel.finish() }
        let completed = NIOLockedValueBox<[String]>([])
        let small = channel.eventLoop.makePromise(of: Void.self)
        let large = channel.eventLoop.makePromise(of: Void.self)
        let after = channel.eventLoop.makePromise(of: Void.self)
        small.futureResult.whenSuccess { completed.withLockedValue { $0.append("small") } }
        large.futureResult.whenSuccess { completed.withLockedValue { $0.append("large") } }
        after.futureResult.whenSuccess { completed.withLockedValue { $0.append("after") } }
        let payloads = [self.payload(100), self.payload(64 * 1024), self.payload(200)]
        channel.write(WebSocketMessage.binary(payloads[0]), promise: small)
        channel.write(WebSocketMessage.binary(payloads[1]), promise: large)
        channel.write(WebSocketMessage.binary(payloads[2]), promise: after)
        channel.flush()
        let (buffers, frames) = try self.written(channel)
        // The small frame and the large one's header in one batch, the large payload itself, then the rest.
        #expect(buffers.count == 3)
        #expect(frames.map { $0.unmaskedPayload() } == payloads)
        #expect(completed.withLockedValue { $0 } == ["small", "large", "after"])
    }

    @Test func theEnvironmentCanAskForRandomKeysEverywhere() {
        #expect(HTTPSEndpoint.zeroMaskAllowed(environment: [:]))
        #expect(HTTPSEndpoint.zeroMaskAllowed(environment: ["JUMPGATE_WEBSOCKET_MASK": "zero"]))
        #expect(!HTTPSEndpoint.zeroMaskAllowed(environment: ["JUMPGATE_WEBSOCKET_MASK": "random"]))
    }
}
