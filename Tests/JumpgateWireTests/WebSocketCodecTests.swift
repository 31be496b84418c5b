import JumpgateWire
import NIOCore
import NIOTestUtils
import PropertyBased
import Testing

@Suite("WebSocket codec")
struct WebSocketCodecTests {
    /// The obvious byte-at-a-time masking that RFC 6455 describes, to check the fast one against.
    func naiveMask(_ bytes: [UInt8], _ key: WebSocketMaskingKey, offset: Int = 0) -> [UInt8] {
        let k = [key.b0, key.b1, key.b2, key.b3]
        return bytes.enumerated().map { $0.element ^ k[($0.offset + offset) % 4] }
    }

    @Test("word-at-a-time masking equals byte-at-a-time masking for every length and offset")
    func maskingMatchesNaive() {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("maskingMatchesNaive seed \(seed)")
        var rng = SplitMix64(seed: seed)
        // Many 8-byte words and every tail length, at every key offset.
        for length in 0..<200 {
            for offset in 0..<4 {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let key = WebSocketMaskingKey(networkWord: UInt32(truncatingIfNeeded: rng.next()))
                var out = ByteBuffer()
                out.writeMaskedBytes(ByteBuffer(bytes: bytes), maskingKey: key, keyOffset: offset)
                #expect(Array(out.readableBytesView) == self.naiveMask(bytes, key, offset: offset))
            }
        }
    }

    @Test("RFC 6455 §5.7 examples decode")
    func rfcExamples() throws {
        var decoder = WebSocketFrameDecoder(role: .any)
        var unmasked = ByteBuffer(bytes: [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])
        let frame1 = try #require(try decoder.decode(buffer: &unmasked))
        #expect(frame1.opcode == .text && frame1.fin && frame1.maskingKey == nil)
        #expect(String(buffer: frame1.unmaskedPayload()) == "Hello")
        var masked = ByteBuffer(bytes: [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
        let frame2 = try #require(try decoder.decode(buffer: &masked))
        #expect(frame2.maskingKey == WebSocketMaskingKey(0x37, 0xfa, 0x21, 0x3d))
        #expect(String(buffer: frame2.unmaskedPayload()) == "Hello")
        var ping = ByteBuffer(bytes: [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])
        #expect(try decoder.decode(buffer: &ping)?.opcode == .ping)
    }

    @Test("frames of every length class round-trip, and unmasked payloads are slices")
    func encodeDecode() throws {
        for length in [0, 1, 125, 126, 65535, 65536, 200_000] {
            let payload = ByteBuffer(repeating: UInt8(length % 251), count: length)
            for key in [nil, WebSocketMaskingKey.random()] {
                var wire = ByteBuffer()
                wire.writeWebSocketFrame(opcode: .binary, payload: payload, maskingKey: key)
                #expect(
                    wire.readableBytes == WebSocketFrame.headerSize(payloadLength: length, masked: key != nil) + length
                )
                var decoder = WebSocketFrameDecoder(role: key == nil ? .client : .server)
                let frame = try #require(try decoder.decode(buffer: &wire))
                #expect(frame.unmaskedPayload() == payload)
                #expect(wire.readableBytes == 0)
            }
        }
    }

    @Test("the decoder works drip-fed and with many frames in one buffer")
    func decoderVerifier() throws {
        func frame(_ op: WebSocketOpcode, _ text: String, key: WebSocketMaskingKey?) -> (ByteBuffer, [WebSocketFrame]) {
            var wire = ByteBuffer()
            wire.writeWebSocketFrame(opcode: op, payload: ByteBuffer(string: text), maskingKey: key)
            var masked = ByteBuffer()
            if let key {
                masked.writeMaskedBytes(ByteBuffer(string: text), maskingKey: key)
            } else {
                masked = ByteBuffer(string: text)
            }
            return (wire, [WebSocketFrame(opcode: op, maskingKey: key, payload: masked)])
        }
        let key = WebSocketMaskingKey(1, 2, 3, 4)
        let pairs = [
            frame(.binary, "hello", key: key), frame(.text, String(repeating: "x", count: 300), key: key),
            frame(.ping, "p", key: key),
        ]
        var all = ByteBuffer()
        for (b, _) in pairs { all.writeImmutableBuffer(b) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: pairs + [(all, pairs.flatMap(\.1))],
            decoderFactory: { WebSocketFrameDecoder(role: .server) }
        )
    }

    @Test(
        "invalid frames are typed errors",
        arguments: [
            ([0x82, 0x05] + Array("hello".utf8), WebSocketFrameDecoder.Role.server),  // unmasked from a client
            ([0x82, 0x80, 1, 2, 3, 4], .client),  // masked from a server
            ([0xC2, 0x00], .client),  // RSV1
            ([0x83, 0x00], .client),  // opcode 3
            ([0x09, 0x00], .client),  // fragmented ping
            ([0x89, 0x7E, 0x00, 0x7E] + Array(repeating: 0, count: 126), .client),  // 126-byte control frame
            ([0x82, 0x7E, 0x00, 0x05] + Array(repeating: 0, count: 5), .client),  // non-minimal 16-bit length
            ([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], .client),  // 64-bit length with the top bit set
        ] as [([UInt8], WebSocketFrameDecoder.Role)]
    )
    func invalid(bytes: [UInt8], role: WebSocketFrameDecoder.Role) {
        var decoder = WebSocketFrameDecoder(role: role)
        var input = ByteBuffer(bytes: bytes)
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &input) }
    }

    @Test("the maximum frame size is enforced from the header, before any payload is buffered")
    func maximumFrameSize() {
        var decoder = WebSocketFrameDecoder(role: .client, maximumFrameSize: 70_000)
        var header = ByteBuffer()
        header.writeWebSocketFrameHeader(opcode: .binary, payloadLength: 70_001, maskingKey: nil)
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &header) }
        var huge = ByteBuffer(bytes: [0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0])
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &huge) }
    }

    @Test("random bytes never crash the decoder")
    func garbage() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var decoder = WebSocketFrameDecoder(role: .any, maximumFrameSize: 4096)
            var input = ByteBuffer(
                bytes: (0..<Int.random(in: 0..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            )
            while (try? decoder.decode(buffer: &input)) != nil {}
        }
    }

    @Test("pings are answered with pongs carrying the same payload")
    func pings() {
        var sm = WebSocketConnectionStateMachine()
        var masked = ByteBuffer()
        let key = WebSocketMaskingKey(9, 8, 7, 6)
        masked.writeMaskedBytes(ByteBuffer(string: "keepalive"), maskingKey: key)
        #expect(
            sm.frameReceived(WebSocketFrame(opcode: .ping, maskingKey: key, payload: masked))
                == .sendPong(ByteBuffer(string: "keepalive"))
        )
        #expect(sm.frameReceived(WebSocketFrame(opcode: .pong, payload: ByteBuffer())) == .none)
    }

    @Test("fragmented messages are reassembled within the size limit")
    func fragments() {
        var sm = WebSocketConnectionStateMachine(maximumMessageSize: 10)
        #expect(
            sm.frameReceived(WebSocketFrame(fin: false, opcode: .binary, payload: ByteBuffer(string: "abc"))) == .none
        )
        // Control frames may interleave with a fragmented message.
        #expect(sm.frameReceived(WebSocketFrame(opcode: .ping, payload: ByteBuffer())) == .sendPong(ByteBuffer()))
        #expect(
            sm.frameReceived(WebSocketFrame(fin: true, opcode: .continuation, payload: ByteBuffer(string: "def")))
                == .deliver(opcode: .binary, payload: ByteBuffer(string: "abcdef"))
        )
        #expect(
            sm.frameReceived(WebSocketFrame(fin: false, opcode: .binary, payload: ByteBuffer(string: "123456")))
                == .none
        )
        #expect(
            sm.frameReceived(WebSocketFrame(fin: true, opcode: .continuation, payload: ByteBuffer(string: "78901")))
                == .sendCloseAndClose(code: 1009, reason: "message exceeds 10 bytes")
        )
        var orphan = WebSocketConnectionStateMachine()
        guard
            case .sendCloseAndClose(1002, _) = orphan.frameReceived(
                WebSocketFrame(opcode: .continuation, payload: ByteBuffer())
            )
        else {
            Issue.record("orphan continuation must be a protocol error")
            return
        }
    }

    @Test(
        "close frames are validated and answered",
        arguments: [
            ([], UInt16(1000)), ([0x03, 0xE8], 1000), ([0x0B, 0xB8, 0x6F, 0x6B], 3000), ([0x03], 1002),
            ([0x03, 0xED], 1002), ([0x03, 0xEE], 1002), ([0x13, 0x88], 1002), ([0x03, 0xE8, 0xC3, 0x28], 1007),
        ] as [([UInt8], UInt16)]
    )
    func closeFrames(body: [UInt8], answer: UInt16) {
        var sm = WebSocketConnectionStateMachine()
        guard
            case .sendCloseAndClose(let code, _) = sm.frameReceived(
                WebSocketFrame(opcode: .close, payload: ByteBuffer(bytes: body))
            )
        else {
            Issue.record("close must be answered")
            return
        }
        #expect(code == answer)
        #expect(!sm.isOpen)
        #expect(sm.frameReceived(WebSocketFrame(opcode: .binary, payload: ByteBuffer(string: "late"))) == .none)
    }

    @Test("the peer's close reason is kept for the application; the answer echoes the code only")
    func peerCloseReason() {
        var sm = WebSocketConnectionStateMachine()
        let body = ByteBuffer.webSocketCloseBody(code: 1008, reason: "invalid or expired token for this session")
        #expect(
            sm.frameReceived(WebSocketFrame(opcode: .close, payload: body))
                == .sendCloseAndClose(code: 1008, reason: "")
        )
        #expect(sm.peerCloseReason == "invalid or expired token for this session")
        var silent = WebSocketConnectionStateMachine()
        _ = silent.frameReceived(WebSocketFrame(opcode: .close, payload: ByteBuffer()))
        #expect(silent.peerCloseReason == nil)
    }

    @Test("a close we start completes when the peer answers")
    func closeHandshake() {
        var sm = WebSocketConnectionStateMachine()
        #expect(sm.closeInitiated(code: 1001, reason: "shutting down")?.code == 1001)
        #expect(sm.closeInitiated(code: 1001, reason: "again") == nil)
        #expect(sm.frameReceived(WebSocketFrame(opcode: .close, payload: ByteBuffer(bytes: [0x03, 0xE9]))) == .close)
        let body = ByteBuffer.webSocketCloseBody(code: 1000, reason: String(repeating: "é", count: 100))
        #expect(body.readableBytes <= 125)
    }
}

@Suite("WebSocket limits before authentication")
struct WebSocketFirstFrameLimitTests {
    static func frame(_ opcode: WebSocketOpcode, _ count: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeWebSocketFrame(
            opcode: opcode,
            payload: ByteBuffer(repeating: 0x61, count: count),
            maskingKey: WebSocketMaskingKey(1, 2, 3, 4)
        )
        return buffer
    }

    @Test("the first data frame is held to the smaller limit (a ping first does not lift it); later ones are not")
    func firstDataFrame() throws {
        var reader = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20, firstDataFrameMaximumSize: 100)
        #expect(throws: WireError.self) { try reader.read(Self.frame(.text, 101)) { _ in } }

        var pingFirst = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20, firstDataFrameMaximumSize: 100)
        try pingFirst.read(Self.frame(.ping, 10)) { _ in }
        #expect(throws: WireError.self) { try pingFirst.read(Self.frame(.binary, 5000)) { _ in } }

        // The opening frame and a large one in the same read: both pass (a resumed client sends at once).
        var opened = WebSocketFrameReader(role: .server, maximumFrameSize: 1 << 20, firstDataFrameMaximumSize: 100)
        var both = Self.frame(.text, 50)
        var large = Self.frame(.binary, 70_000)
        both.writeBuffer(&large)
        var sizes: [Int] = []
        try opened.read(both) { sizes.append($0.payload.readableBytes) }
        #expect(sizes == [50, 70_000])
    }

    @Test("a fragmented first message is held to the smaller limit too")
    func firstMessage() {
        var machine = WebSocketConnectionStateMachine(maximumMessageSize: 1 << 20)
        machine.firstMessageMaximumSize = 100
        let part = WebSocketFrame(fin: false, opcode: .text, payload: ByteBuffer(repeating: 0x61, count: 60))
        #expect(machine.frameReceived(part) == .none)
        let more = WebSocketFrame(fin: false, opcode: .continuation, payload: ByteBuffer(repeating: 0x61, count: 60))
        guard case .sendCloseAndClose(let code, _) = machine.frameReceived(more) else {
            Issue.record("a 120-byte first message passed a 100-byte limit")
            return
        }
        #expect(code == 1009)
    }
}
