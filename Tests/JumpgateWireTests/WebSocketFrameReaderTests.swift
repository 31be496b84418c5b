import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import PropertyBased
import Testing

@Suite("WebSocket frame reader (owned payloads)")
struct WebSocketFrameReaderTests {
    /// `payloads` as frames on the wire, masked when `masked`.
    /// `payloads` as frames on the wire, masked when `masked` (with the zero key when `zeroKey`, as a
    /// Jumpgate client sends its large frames).
    static func wire(_ payloads: [ByteBuffer], masked: Bool, zeroKey: Bool = false) -> ByteBuffer {
        var wire = ByteBuffer()
        for payload in payloads {
            let key: WebSocketMaskingKey? = masked ? (zeroKey ? .zero : .random()) : nil
            wire.writeWebSocketFrame(opcode: .binary, payload: payload, maskingKey: key)
        }
        return wire
    }

    static func read(_ wire: ByteBuffer, in pieces: [Int], masked: Bool, borrowing: Bool = false) throws -> [ByteBuffer]
    {
        var reader = WebSocketFrameReader(
            role: masked ? .server : .client,
            maximumFrameSize: 1 << 20,
            borrowsUnmaskedPayloads: borrowing
        )
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
        for (masked, zeroKey, borrowing) in [
            (false, false, false), (true, false, false), (false, false, true), (true, true, true), (true, false, true),
        ] {
            let wire = Self.wire(payloads, masked: masked, zeroKey: zeroKey)
            for pieces in [
                [wire.readableBytes], Array(repeating: 1, count: wire.readableBytes),
                Array(repeating: 3001, count: 200),
            ] {
                #expect(try Self.read(wire, in: pieces, masked: masked, borrowing: borrowing) == payloads)
            }
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
            for (masked, zeroKey) in [(false, false), (true, false), (true, true)] {
                let wire = Self.wire(payloads, masked: masked, zeroKey: zeroKey)
                for borrowing in [false, true] {
                    #expect((try? Self.read(wire, in: pieces, masked: masked, borrowing: borrowing)) == payloads)
                }
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
        // As a TLS handler reuses its buffer: indices reset (not clear(), which replaces shared storage
        // itself) and a write. A retained slice would force a copy.
        let inputReused = input.reusedInPlace()
        #expect(inputReused)
        #expect(kept[0] == ByteBuffer(repeating: 1, count: 100_000))
    }

    @Test("borrowing: whole unmasked and zero-key data frames are slices of the read; the rest are copies")
    func borrowing() throws {
        var input = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        input.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(repeating: 1, count: 40_000), maskingKey: .zero)
        input.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(repeating: 2, count: 300), maskingKey: .random())
        input.writeWebSocketFrame(opcode: .ping, payload: ByteBuffer(string: "p"), maskingKey: .zero)
        input.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(repeating: 3, count: 40_000), maskingKey: .zero)
        var tail = ByteBuffer()
        tail.writeWebSocketFrame(opcode: .binary, payload: ByteBuffer(repeating: 4, count: 40_000), maskingKey: .zero)
        input.writeImmutableBuffer(tail.getSlice(at: 0, length: 10_000)!)
        let range = input.withUnsafeReadableBytes {
            UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count)
        }
        func inRead(_ buffer: ByteBuffer) -> Bool {
            buffer.withUnsafeReadableBytes { range.contains(UInt(bitPattern: $0.baseAddress!)) }
        }
        var reader = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20, borrowsUnmaskedPayloads: true)
        var seen: [(WebSocketOpcode, Int, Bool)] = []
        try reader.read(input) { frame in
            #expect(frame.maskingKey == nil)
            seen.append((frame.opcode, frame.payload.readableBytes, inRead(frame.payload)))
        }
        #expect(
            seen.map { "\($0.0) \($0.1) \($0.2)" } == [
                "binary 40000 true", "binary 300 false", "ping 1 false", "binary 40000 true",
            ]
        )
        #expect(reader.bufferedBytes == 10_000)
        // The gathered frame is unmasked in the reader's own buffer (a random key here, so that an unmasking
        // that went wrong shows).
        var masked = ByteBuffer()
        masked.writeWebSocketFrame(
            opcode: .binary,
            payload: ByteBuffer(repeating: 5, count: 30_000),
            maskingKey: .random()
        )
        var rest = tail.getSlice(at: 10_000, length: tail.readableBytes - 10_000)!
        rest.writeImmutableBuffer(masked.getSlice(at: 0, length: 7)!)
        var gathered: [ByteBuffer] = []
        try reader.read(rest) { gathered.append($0.payload) }
        try reader.read(masked.getSlice(at: 7, length: masked.readableBytes - 7)!) { gathered.append($0.payload) }
        #expect(gathered == [ByteBuffer(repeating: 4, count: 40_000), ByteBuffer(repeating: 5, count: 30_000)])
        // Nothing of the first read is kept once its frames are dropped.
        let inputReused = input.reusedInPlace()
        #expect(inputReused)
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
