import Benchmark
import JumpgateWire
import NIOCore

/// Codec, masking and smux costs on the data path. Each benchmark states its steady state: work that
/// allocates per message is a regression on the hot path (targets in docs/PERFORMANCE.md).
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    Benchmark.defaultConfiguration = .init(metrics: metrics, maxDuration: .seconds(2), maxIterations: 1_000_000)

    // A 64 KiB fast-path data message and a 1 KiB official one, encoded once.
    func dataFrame(payloadSize: Int) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeSSMMessage(
            SSMMessage(
                messageType: .inputStreamData,
                createdDate: 1_700_000_000_000,
                sequenceNumber: 42,
                payloadType: .output,
                payload: ByteBuffer(repeating: 0x5A, count: payloadSize)
            )
        )
        return frame
    }

    for size in [1024, 65536] {
        let frame = dataFrame(payloadSize: size)
        Benchmark("decode data message \(size) B", configuration: .init(scalingFactor: .kilo)) { benchmark in
            for _ in benchmark.scaledIterations {
                let message = try SSMMessage(decoding: frame)
                blackHole(message.payload.readableBytes)
            }
        }

        let payload = ByteBuffer(repeating: 0x5A, count: size)
        let id = MessageID.random()
        Benchmark("encode data message \(size) B, digest-free", configuration: .init(scalingFactor: .kilo)) {
            benchmark in
            var out = ByteBuffer()
            out.reserveCapacity(size + 256)
            for _ in benchmark.scaledIterations {
                out.clear()
                out.writeSSMMessageHeader(
                    messageType: .inputStreamData,
                    createdDate: 1_700_000_000_000,
                    sequenceNumber: 1,
                    flags: 0,
                    messageID: id,
                    payloadDigest: .zero,
                    payloadType: .output,
                    payloadLength: UInt32(size)
                )
                out.writeImmutableBuffer(payload)
                blackHole(out.readableBytes)
            }
        }

        Benchmark("SHA-256 payload digest \(size) B", configuration: .init(scalingFactor: .kilo)) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(PayloadDigest.sha256(of: payload))
            }
        }

        Benchmark("WebSocket copy-and-mask \(size) B", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var out = ByteBuffer()
            out.reserveCapacity(size + 16)
            let key = WebSocketMaskingKey.random()
            for _ in benchmark.scaledIterations {
                out.clear()
                out.writeWebSocketFrame(opcode: .binary, payload: payload, maskingKey: key)
                blackHole(out.readableBytes)
            }
        }
    }

    Benchmark("acknowledge JSON write", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var out = ByteBuffer()
        out.reserveCapacity(256)
        let id = MessageID.random()
        for i in benchmark.scaledIterations {
            out.clear()
            out.writeAcknowledgeJSON(messageType: .outputStreamData, messageID: id, sequenceNumber: Int64(i))
            blackHole(out.readableBytes)
        }
    }

    // smux: 1 MiB of 32 KiB PSH frames, cut into 1 KiB SSM-payload-sized pieces as the official peers
    // deliver them, parsed by the streaming decoder.
    let smuxStream: ByteBuffer = {
        var stream = ByteBuffer()
        let chunk = ByteBuffer(repeating: 0xA5, count: 32768)
        for _ in 0..<32 {
            stream.writeSmuxFrame(SmuxFrame(version: 1, command: .psh, streamID: SmuxStreamID(3), data: chunk))
        }
        return stream
    }()
    Benchmark(
        "smux parse 1 MiB in 1 KiB pieces",
        configuration: .init(metrics: metrics + [.throughput], scalingFactor: .one)
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            var parser = SmuxFrameParser(version: 1)
            var offset = 0
            var total = 0
            while offset < smuxStream.readableBytes {
                let piece = smuxStream.getSlice(at: offset, length: min(1024, smuxStream.readableBytes - offset))!
                try parser.parse(piece) { frame in total += frame.data.readableBytes }
                offset += 1024
            }
            blackHole(total)
        }
    }

    Benchmark("smux v2 session: send and receive 1 MiB", configuration: .init(scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations {
            var client = SmuxSession(configuration: .init(version: 2, role: .client))
            var server = SmuxSession(configuration: .init(version: 2, role: .server))
            let (id, opening) = try client.openStream()
            for frame in opening { _ = try server.frameReceived(frame) }
            // The server's window, as its first data back on the stream would carry it.
            if let update = server.takeWindowAnnouncement(on: id) {
                _ = try client.frameReceived(.windowUpdate(streamID: id, update))
            }
            let data = ByteBuffer(repeating: 1, count: 32768)
            var moved = 0
            // Bounded: 1 MiB takes 32 rounds; a stall ends the loop instead of spinning.
            for _ in 0..<1000 where moved < 1 << 20 {
                let n = client.sendableBytes(on: id)
                guard n > 0 else { fatalError("smux v2 window stalled") }
                try client.dataWillBeSent(on: id, count: n)
                if case .data(_, let bytes) = try server.frameReceived(
                    SmuxFrame(version: 2, command: .psh, streamID: id, data: data.getSlice(at: 0, length: n)!)
                ) {
                    moved += bytes.readableBytes
                    if let update = server.dataConsumed(on: id, count: bytes.readableBytes) {
                        _ = try client.frameReceived(update)
                    }
                }
            }
            blackHole(moved)
        }
    }
}
