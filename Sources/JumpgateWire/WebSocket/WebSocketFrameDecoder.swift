import NIOCore

/// Parses WebSocket frames from a byte stream, handing payloads out as slices of what was read.
///
/// It checks what RFC 6455 requires of every frame: no reserved bits (no extensions are negotiated),
/// a known opcode, control frames unfragmented and at most 125 bytes, masking as the role requires
/// (clients mask, servers do not), minimal length encodings, and a maximum frame size so a peer
/// cannot make it buffer without bound.
public struct WebSocketFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = WebSocketFrame

    public enum Role: Sendable, Hashable {
        /// Receives frames from clients, which must be masked.
        case server
        /// Receives frames from a server, which must not be masked.
        case client
        /// Accepts either (for tools that read captures).
        case any
    }

    public var role: Role
    public var maximumFrameSize: Int
    /// A smaller limit for the first data frame only (an unauthenticated peer's opening frame); nil: none.
    public var firstDataFrameMaximumSize: Int?

    public init(role: Role, maximumFrameSize: Int = 1 << 20) {
        self.role = role
        self.maximumFrameSize = maximumFrameSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> WebSocketFrame? {
        let start = buffer.readerIndex
        guard let (first, second) = buffer.getMultipleIntegers(at: start, as: (UInt8, UInt8).self) else { return nil }
        let fin = first & 0x80 != 0
        guard first & 0x70 == 0 else {
            throw WireError(
                .invalidWebSocketFrame,
                "WebSocket frame has reserved bits set and no extension was negotiated"
            )
        }
        let opcode = WebSocketOpcode(rawValue: first & 0x0F)
        guard opcode.isKnown else {
            throw WireError(.invalidWebSocketFrame, "WebSocket frame has unknown opcode \(opcode.rawValue)")
        }
        let masked = second & 0x80 != 0
        switch (self.role, masked) {
        case (.server, false): throw WireError(.invalidWebSocketFrame, "client frames must be masked")
        case (.client, true): throw WireError(.invalidWebSocketFrame, "server frames must not be masked")
        default: break
        }
        var offset = start + 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.getInteger(at: offset, as: UInt16.self) else { return nil }
            guard extended >= 126 else {
                throw WireError(.invalidWebSocketFrame, "WebSocket length is not minimally encoded")
            }
            length = Int(extended)
            offset += 2
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: offset, as: UInt64.self) else { return nil }
            guard extended > 0xFFFF, extended >> 63 == 0 else {
                throw WireError(.invalidWebSocketFrame, "WebSocket 64-bit length is invalid or not minimally encoded")
            }
            guard extended <= UInt64(self.maximumFrameSize) else {
                throw WireError(
                    .webSocketFrameTooLarge,
                    "WebSocket frame of \(extended) bytes exceeds the \(self.maximumFrameSize)-byte limit"
                )
            }
            length = Int(extended)
            offset += 8
        }
        if opcode.isControl {
            guard fin, length <= 125 else {
                throw WireError(
                    .invalidWebSocketFrame,
                    "WebSocket control frames must be unfragmented and at most 125 bytes"
                )
            }
        }
        guard length <= self.maximumFrameSize else {
            throw WireError(
                .webSocketFrameTooLarge,
                "WebSocket frame of \(length) bytes exceeds the \(self.maximumFrameSize)-byte limit"
            )
        }
        if let first = self.firstDataFrameMaximumSize, !opcode.isControl, length > first {
            throw WireError(
                .webSocketFrameTooLarge,
                "the first WebSocket data frame (\(length) bytes) exceeds the \(first)-byte limit before authentication"
            )
        }
        var key: WebSocketMaskingKey?
        if masked {
            guard let word = buffer.getInteger(at: offset, as: UInt32.self) else { return nil }
            key = WebSocketMaskingKey(networkWord: word)
            offset += 4
        }
        guard buffer.writerIndex - offset >= length else { return nil }
        buffer.moveReaderIndex(to: offset)
        let payload = buffer.readSlice(length: length)!
        if self.firstDataFrameMaximumSize != nil, !opcode.isControl { self.firstDataFrameMaximumSize = nil }
        return WebSocketFrame(fin: fin, opcode: opcode, maskingKey: key, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> WebSocketFrame? {
        try self.decode(buffer: &buffer)
    }
}

extension WebSocketFrameDecoder {
    /// How many more bytes the frame that starts at `buffer`'s reader index needs before it can be
    /// decoded (at least 1 when it cannot be decoded yet): the rest of the header first, then the payload.
    public static func bytesMissing(in buffer: ByteBuffer) -> Int {
        let available = buffer.readableBytes
        guard let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else { return 2 - available }
        let masked = second & 0x80 != 0
        let code = Int(second & 0x7F)
        let headerSize = 2 + (code == 126 ? 2 : code == 127 ? 8 : 0) + (masked ? 4 : 0)
        guard available >= headerSize else { return headerSize - available }
        let length: Int
        switch code {
        case 126: length = Int(buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self)!)
        case 127: length = Int(truncatingIfNeeded: buffer.getInteger(at: buffer.readerIndex + 2, as: UInt64.self)!)
        default: length = code
        }
        return max(1, headerSize + max(0, length) - available)
    }
}

/// Turns the byte stream of one connection into frames whose payloads it owns: unmasked, copied once
/// (fused with the unmasking) out of the buffers handed in, which it never holds on to. TLS libraries
/// reuse their read buffer (NIOSSL does), and a slice of it kept past the read would make the next read
/// copy the whole buffer. A frame split across reads is kept in a buffer of its own until complete.
public struct WebSocketFrameReader {
    private var decoder: WebSocketFrameDecoder
    private var partial: ByteBuffer?
    private let allocator = ByteBufferAllocator()
    /// Frames of the current read whose payloads are being copied (reused between reads).
    private var pending: [(fin: Bool, opcode: WebSocketOpcode, offset: Int, length: Int)] = []

    public init(role: WebSocketFrameDecoder.Role, maximumFrameSize: Int, firstDataFrameMaximumSize: Int? = nil) {
        self.decoder = WebSocketFrameDecoder(role: role, maximumFrameSize: maximumFrameSize)
        self.decoder.firstDataFrameMaximumSize = firstDataFrameMaximumSize
    }

    /// Bytes of an incomplete frame held for the next read.
    public var bufferedBytes: Int { self.partial?.readableBytes ?? 0 }

    /// Decodes every complete frame in `input` (after any frame left incomplete by earlier reads) and
    /// calls `body` with each, in order, once all are copied. Throws on a protocol violation, after the
    /// frames before it were delivered (so what is delivered does not depend on how TCP cut the bytes);
    /// the connection is then unusable.
    public mutating func read(_ input: ByteBuffer, _ body: (WebSocketFrame) throws -> Void) throws {
        var input = input
        // Allocated at the first complete frame: a read that only extends an incomplete frame needs none.
        var payloads: ByteBuffer?
        let capacity = self.bufferedBytes + input.readableBytes
        self.pending.removeAll(keepingCapacity: true)
        var violation: (any Error)?
        do {
            try self.decodeFrames(&input, into: &payloads, capacity: capacity)
        } catch {
            violation = error
        }
        // Slices only now that every payload is written: a slice taken earlier would make each later
        // write copy the buffer.
        if let payloads {
            for entry in self.pending {
                try body(
                    WebSocketFrame(
                        fin: entry.fin,
                        opcode: entry.opcode,
                        payload: payloads.getSlice(at: entry.offset, length: entry.length)!
                    )
                )
            }
            self.pending.removeAll(keepingCapacity: true)
        }
        if let violation { throw violation }
    }

    /// The decoding half of ``read(_:_:)``: completes a held partial frame, then decodes what follows,
    /// copying each frame's payload; keeps an incomplete tail for the next read.
    private mutating func decodeFrames(
        _ input: inout ByteBuffer,
        into payloads: inout ByteBuffer?,
        capacity: Int
    ) throws {
        if var partial = self.partial {
            self.partial = nil
            while true {
                if let frame = try self.decoder.decode(buffer: &partial) {
                    self.copy(frame, into: &payloads, capacity: capacity)
                    break
                }
                guard input.readableBytes > 0 else {
                    self.partial = partial
                    break
                }
                var piece = input.readSlice(
                    length: min(WebSocketFrameDecoder.bytesMissing(in: partial), input.readableBytes)
                )!
                partial.writeBuffer(&piece)
            }
        }
        if self.partial == nil {
            while let frame = try self.decoder.decode(buffer: &input) {
                self.copy(frame, into: &payloads, capacity: capacity)
            }
            if input.readableBytes > 0 {
                let needed = input.readableBytes + WebSocketFrameDecoder.bytesMissing(in: input)
                let limit = self.decoder.firstDataFrameMaximumSize ?? self.decoder.maximumFrameSize
                var partial = self.allocator.buffer(capacity: min(needed, max(limit, 125) + 14))
                partial.writeBuffer(&input)
                self.partial = partial
            }
        }
    }

    /// Copies `frame`'s payload (unmasked) to the end of `payloads`, which is allocated with `capacity`
    /// (enough for every payload of the read) the first time.
    private mutating func copy(_ frame: WebSocketFrame, into payloads: inout ByteBuffer?, capacity: Int) {
        if payloads == nil { payloads = self.allocator.buffer(capacity: capacity) }
        let offset = payloads!.writerIndex
        if let key = frame.maskingKey {
            payloads!.writeMaskedBytes(frame.payload, maskingKey: key)
        } else {
            payloads!.writeImmutableBuffer(frame.payload)
        }
        self.pending.append((frame.fin, frame.opcode, offset, frame.payload.readableBytes))
    }
}
