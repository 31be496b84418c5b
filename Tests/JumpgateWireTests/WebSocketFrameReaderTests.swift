import JumpgateWire
import NIOCore
import PropertyBased
import Testing

@Suite("WebSocket frame reader (owned payloads)")
struct WebSocketFrameReaderTests {
    /// `payloads` as frames on the wire, masked when `masked`.
    static func wire(_ payloads: [ByteBuffer], masked: Bool) -> ByteBuffer {
        var wire = ByteBuffer()
        for payload in payloads {
            wire.writeWebSocketFrame(opcode: .binary, payload: payload, maskingKey: masked ? .random() : nil)
        }
        return wire
    }

    static func read(_ wire: ByteBuffer, in pieces: [Int], masked: Bool) throws -> [ByteBuffer] {
        var reader = WebSocketFrameReader(role: masked ? .server : .client, maximumFrameSize: 1 << 20)
        var out: [ByteBuffer] = []
        var rest = wire
        for size in pieces where rest.readableBytes > 0 {
            try reader.read(rest.readSlice(length: min(size, rest.readableBytes))!) { frame in
                #expect(frame.maskingKey == nil)
                out.append(frame.payload)
            }
        }
        if rest.readableBytes > 0 { try reader.read(rest) { out.append($0.payload) } }
        #expect(reader.bufferedBytes == 0)
        return out
    }

    @Test("frames split anywhere, drip-fed or all at once, come out whole and unmasked")
    func splits() throws {
        let payloads = [0, 1, 125, 126, 4000, 65_535, 65_536, 70_000].map {
            ByteBuffer(repeating: UInt8($0 % 251), count: $0)
        }
        for masked in [false, true] {
            let wire = Self.wire(payloads, masked: masked)
            #expect(try Self.read(wire, in: [wire.readableBytes], masked: masked) == payloads)
            #expect(try Self.read(wire, in: Array(repeating: 1, count: wire.readableBytes), masked: masked) == payloads)
            #expect(try Self.read(wire, in: Array(repeating: 3001, count: 200), masked: masked) == payloads)
        }
    }

    @Test("property: any frames, any split points, same payloads")
    func property() async {
        await propertyCheck(
            count: 100,
            input: Gen.int(in: 0...20_000).array(of: 1...12),
            Gen.int(in: 1...40_000).array(of: 1...30)
        ) { sizes, pieces in
            let payloads = sizes.enumerated().map { ByteBuffer(repeating: UInt8($0.offset), count: $0.element) }
            for masked in [false, true] {
                #expect((try? Self.read(Self.wire(payloads, masked: masked), in: pieces, masked: masked)) == payloads)
            }
        }
    }

    @Test("the buffers handed in are not kept: writing to one afterwards copies nothing")
    func doesNotRetainInput() throws {
        var reader = WebSocketFrameReader(role: .client, maximumFrameSize: 1 << 20)
        var input = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        input.writeImmutableBuffer(Self.wire([ByteBuffer(repeating: 1, count: 100_000)], masked: false))
        input.writeImmutableBuffer(
            Self.wire([ByteBuffer(repeating: 2, count: 100_000)], masked: false).getSlice(at: 0, length: 5000)!
        )
        var kept: [ByteBuffer] = []
        try reader.read(input) { kept.append($0.payload) }
        #expect(kept.count == 1 && reader.bufferedBytes == 5000)
        // As a TLS handler reuses its buffer: reset and write again. A retained slice would force a copy.
        func storage(_ buffer: ByteBuffer) -> UInt {
            buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        }
        input.clear()
        let before = storage(input)
        input.writeInteger(UInt64(42))
        #expect(storage(input) == before)
        #expect(kept[0] == ByteBuffer(repeating: 1, count: 100_000))
    }

    @Test("protocol violations are errors, whether the frame arrives whole or in pieces")
    func violations() throws {
        var oversized = ByteBuffer()
        oversized.writeWebSocketFrameHeader(opcode: .binary, payloadLength: 2 << 20, maskingKey: nil)
        for piece in [1, 100] {
            var reader = WebSocketFrameReader(role: .client, maximumFrameSize: 1 << 20)
            #expect(throws: WireError.self) {
                var rest = oversized
                while rest.readableBytes > 0 {
                    try reader.read(rest.readSlice(length: min(piece, rest.readableBytes))!) { _ in }
                }
            }
        }
        var reader = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20)
        #expect(throws: WireError.self) {  // a client's frame must be masked
            try reader.read(Self.wire([ByteBuffer(string: "x")], masked: false)) { _ in }
        }
    }

    /// Found by FuzzWebSocket: a ping and a close followed by an unmasked frame (a violation for a server)
    /// used to deliver the ping and close when TCP cut the bytes between them, and nothing when they came
    /// in one read. The frames before a violation are delivered either way, then the read throws.
    @Test("frames before a protocol violation are delivered however the bytes were cut")
    func framesBeforeViolation() throws {
        var wire = ByteBuffer()
        wire.writeWebSocketFrame(opcode: .ping, payload: ByteBuffer(string: "p"), maskingKey: .init(1, 2, 3, 4))
        wire.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(string: "data"), maskingKey: .init(5, 6, 7, 8))
        wire.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(string: "unmasked"), maskingKey: nil)
        for piece in [1, 3, 7, wire.readableBytes] {
            var reader = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20)
            var delivered: [String] = []
            var rest = wire
            #expect(throws: WireError.self) {
                while rest.readableBytes > 0 {
                    try reader.read(rest.readSlice(length: min(piece, rest.readableBytes))!) { frame in
                        delivered.append("\(frame.opcode) \(String(buffer: frame.payload))")
                    }
                }
            }
            #expect(delivered == ["ping p", "binary data"], "cut into pieces of \(piece)")
        }
    }
}
