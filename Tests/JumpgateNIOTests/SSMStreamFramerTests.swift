import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// ``SSMStreamFramer``: SSM messages split out of a plain byte stream by their headers, however the
/// bytes are cut, each in a buffer of its own; bad headers and oversized payloads refused before anything
/// is buffered towards them.
@Suite struct SSMStreamFramerTests {
    /// Records what reached the end of the pipeline.
    final class Sink: ChannelInboundHandler {
        typealias InboundIn = WebSocketMessage
        var frames: [ByteBuffer] = []
        var errors: [any Error] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .binary(let frame) = self.unwrapInboundIn(data) else { return }
            self.frames.append(frame)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.errors.append(error) }
    }

    func channel(maximumPayloadLength: Int = 1 << 20, borrows: Bool = true) throws -> (EmbeddedChannel, Sink) {
        let sink = Sink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            SSMStreamFramer(maximumPayloadLength: maximumPayloadLength, borrowsWholeMessages: borrows), sink,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, sink)
    }

    /// The golden vectors and a 64 KiB data message, back to back in one stream.
    static func stream() -> (wire: [UInt8], messages: [[UInt8]]) {
        var messages = GoldenVectors.all.map(\.bytes)
        let large = SSMMessage(
            messageType: .inputStreamData,
            createdDate: GoldenVectors.createdDate,
            sequenceNumber: 7,
            payloadType: .output,
            payload: ByteBuffer(bytes: (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        ).encoded()
        messages.append(Array(large.readableBytesView))
        return (messages.flatMap { $0 }, messages)
    }

    @Test("the header's lengths split a stream, whole or cut at every byte, into the messages it carries")
    func splitsWhateverTheCuts() throws {
        let (wire, messages) = Self.stream()
        // All at once, then one byte at a time.
        for chunk in [wire.count, 1] {
            let (channel, sink) = try self.channel()
            var offset = 0
            while offset < wire.count {
                let end = min(offset + chunk, wire.count)
                try channel.writeInbound(ByteBuffer(bytes: wire[offset..<end]))
                offset = end
            }
            #expect(sink.frames.map { Array($0.readableBytesView) } == messages, "chunk \(chunk)")
            #expect(sink.errors.isEmpty)
            #expect(try channel.finish().isClean)
        }
    }

    @Test(
        "random cuts (seeded): every message comes out whole; one whole in a read is lent, one cut is copied",
        arguments: [true, false]
    )
    func randomCuts(borrows: Bool) throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("SSMStreamFramerTests.randomCuts: seed \(seed)")
        var rng = HostileFrames.Generator(state: seed)
        let (wire, messages) = Self.stream()
        // Where each message lies in the stream.
        var spans: [Range<Int>] = []
        for message in messages {
            spans.append((spans.last?.upperBound ?? 0)..<((spans.last?.upperBound ?? 0) + message.count))
        }
        for _ in 0..<50 {
            let (channel, sink) = try self.channel(borrows: borrows)
            var offset = 0
            // The reads, kept alive until checked, so their memory is not reused meanwhile.
            var reads: [(span: Range<Int>, buffer: ByteBuffer)] = []
            while offset < wire.count {
                let end = min(offset + 1 + Int(rng.next() % 9_000), wire.count)
                reads.append((offset..<end, ByteBuffer(bytes: wire[offset..<end])))
                try channel.writeInbound(reads[reads.count - 1].buffer)
                offset = end
            }
            #expect(sink.frames.map { Array($0.readableBytesView) } == messages, "seed \(seed)")
            let memory = reads.map { read in
                read.buffer.withUnsafeReadableBytes {
                    UInt(bitPattern: $0.baseAddress)..<(UInt(bitPattern: $0.baseAddress) + UInt($0.count))
                }
            }
            for (frame, span) in zip(sink.frames, spans) {
                #expect(throws: Never.self) { try SSMMessage(decoding: frame) }
                let start = frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
                let lent = memory.contains { $0.contains(start) }
                let whole = reads.contains {
                    $0.span.contains(span.lowerBound) && $0.span.upperBound >= span.upperBound
                }
                #expect(lent == (borrows && whole), "seed \(seed): message at \(span) lent \(lent), whole \(whole)")
            }
            _ = try channel.finish()
        }
    }

    @Test("a header that is not one, and a payload over the limit, are errors before anything is buffered")
    func refusesBadHeaders() throws {
        var wrongHeader = GoldenVectors.acknowledge.buffer
        wrongHeader.setInteger(UInt32(999), at: 0)
        var tooLong = GoldenVectors.inputHello.buffer
        tooLong.setInteger(UInt32(1 << 30), at: 116)
        for (bad, code) in [(wrongHeader, WireError.Code.invalidHeaderLength), (tooLong, .payloadTooLarge)] {
            let (channel, sink) = try self.channel()
            // A good message first: it still comes out; nothing after the bad header does.
            var input = GoldenVectors.terminateFlag.buffer
            input.writeImmutableBuffer(bad)
            input.writeImmutableBuffer(GoldenVectors.acknowledge.buffer)
            try channel.writeInbound(input)
            #expect(sink.frames.count == 1)
            #expect((sink.errors.first as? WireError)?.code == code)
            #expect(!channel.isActive, "the connection was kept")
        }
    }

    @Test("a stream that ends inside a message says how much was missing")
    func truncatedStream() throws {
        let (channel, sink) = try self.channel()
        let bytes = GoldenVectors.inputHello.bytes
        try channel.writeInbound(ByteBuffer(bytes: bytes.dropLast(3)))
        #expect(sink.frames.isEmpty)
        channel.pipeline.fireChannelInactive()
        #expect((sink.errors.first as? SSMStreamFramer.TruncatedStream)?.missing == 3)
    }

    @Test("what the session writes goes out as plain bytes; text is refused")
    func writes() throws {
        let (channel, _) = try self.channel()
        try channel.writeOutbound(WebSocketMessage.binary(GoldenVectors.acknowledge.buffer))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == GoldenVectors.acknowledge.buffer)
        #expect(throws: SSMStreamFramer.TextNotCarried.self) {
            try channel.writeOutbound(WebSocketMessage.text(ByteBuffer(string: "{}")))
        }
    }
}
