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

/// Turns the byte stream of one connection into frames with unmasked payloads that never hold on to the
/// buffers handed in past the call. TLS libraries reuse their read buffer (NIOSSL does), and a slice of it
/// kept past the read would make the next read copy the whole buffer. So each payload is copied once
/// (fused with the unmasking) into a buffer of the reader's own; a frame split across reads is gathered
/// in a buffer of its own, unmasked there in place and handed out as it is (one copy, not two).
///
/// With `borrowsUnmaskedPayloads` (the gateway's relay, which writes every payload of a read into the
/// partner's TLS before the read ends, and the client's and agent's `PortSession`, which writes them to
/// local connections it flushes at the read's end), an unmasked or zero-key payload of a data frame that
/// is complete in the read is handed out as a slice of the buffer read, with no copy; the consumer must
/// then not keep it past its `channelReadComplete`, or copy it first (``ByteBuffer/ownedCopy()``: the relay
/// copies what it holds for an absent side or hands to another event loop, the session what it keeps).
public struct WebSocketFrameReader {
    private var decoder: WebSocketFrameDecoder
    private var partial: ByteBuffer?
    private let allocator = ByteBufferAllocator()
    private let borrowsUnmaskedPayloads: Bool
    private enum Entry {
        /// A payload copied into the read's own buffer, at this offset.
        case copied(fin: Bool, opcode: WebSocketOpcode, offset: Int, length: Int)
        /// A frame ready as it is: gathered from several reads, or borrowed.
        case ready(WebSocketFrame)
    }
    /// The frames of the current read, in order (reused between reads).
    private var pending: [Entry] = []

    public init(
        role: WebSocketFrameDecoder.Role,
        maximumFrameSize: Int,
        firstDataFrameMaximumSize: Int? = nil,
        borrowsUnmaskedPayloads: Bool = false
    ) {
        self.decoder = WebSocketFrameDecoder(role: role, maximumFrameSize: maximumFrameSize)
        self.decoder.firstDataFrameMaximumSize = firstDataFrameMaximumSize
        self.borrowsUnmaskedPayloads = borrowsUnmaskedPayloads
    }

    /// Bytes of an incomplete frame held for the next read.
    public var bufferedBytes: Int { self.partial?.readableBytes ?? 0 }

    /// Decodes every complete frame in `input` (after any frame left incomplete by earlier reads) and
    /// calls `body` with each, in order, once all are copied. Throws on a protocol violation, after the
    /// frames before it were delivered (so what is delivered does not depend on how TCP cut the bytes);
    /// the connection is then unusable.
    public mutating func read(_ input: ByteBuffer, _ body: (WebSocketFrame) throws -> Void) throws {
        var input = input
        // Allocated at the first copied payload: a read that only extends an incomplete frame, or whose
        // payloads are all borrowed, needs none.
        var payloads: ByteBuffer?
        self.pending.removeAll(keepingCapacity: true)
        // Nothing of `input` is kept past this call, also when `body` throws.
        defer { self.pending.removeAll(keepingCapacity: true) }
        var violation: (any Error)?
        do {
            try self.decodeFrames(&input, into: &payloads)
        } catch {
            violation = error
        }
        // Slices of the copies only now that every payload is written: a slice taken earlier would make
        // each later write copy the buffer.
        for entry in self.pending {
            switch entry {
            case .ready(let frame):
                try body(frame)
            case .copied(let fin, let opcode, let offset, let length):
                try body(
                    WebSocketFrame(fin: fin, opcode: opcode, payload: payloads!.getSlice(at: offset, length: length)!)
                )
            }
        }
        if let violation { throw violation }
    }

    /// The decoding half of ``read(_:_:)``: completes a held partial frame, then decodes what follows,
    /// copying or borrowing each frame's payload; keeps an incomplete tail for the next read.
    private mutating func decodeFrames(_ input: inout ByteBuffer, into payloads: inout ByteBuffer?) throws {
        if var partial = self.partial {
            self.partial = nil
            while true {
                if let frame = try Self.gathered(&self.decoder, &partial) {
                    self.pending.append(.ready(frame))
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
                // Control frames are copied: a pong may wait for a writable socket.
                if self.borrowsUnmaskedPayloads, !frame.opcode.isControl,
                    frame.maskingKey == nil || frame.maskingKey == .zero
                {
                    self.pending.append(
                        .ready(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, payload: frame.payload))
                    )
                } else {
                    self.copy(frame, into: &payloads, remaining: input.readableBytes)
                }
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

    /// The frame completed in `partial` (the reader's own buffer), unmasked in place and handed out as a
    /// slice of it, or nil while it is incomplete.
    private static func gathered(
        _ decoder: inout WebSocketFrameDecoder,
        _ partial: inout ByteBuffer
    ) throws -> WebSocketFrame? {
        guard let (fin, opcode, key, length) = try Self.decodeInPlace(&decoder, &partial) else { return nil }
        partial.moveReaderIndex(to: partial.readerIndex - length)
        if let key, key != .zero {
            // No slice of `partial` is alive here, so this writes in place rather than copying.
            partial.withUnsafeMutableReadableBytes { bytes in
                let payload = UnsafeMutableRawBufferPointer(rebasing: bytes[..<length])
                ByteBuffer.mask(UnsafeRawBufferPointer(payload), into: payload, key: key, keyOffset: 0)
            }
        }
        return WebSocketFrame(fin: fin, opcode: opcode, payload: partial.readSlice(length: length)!)
    }

    /// Decodes the frame at `buffer`'s reader index, leaving its payload just before the new reader
    /// index, and returns what the frame is without a slice of `buffer` (which would outlive the call).
    private static func decodeInPlace(
        _ decoder: inout WebSocketFrameDecoder,
        _ buffer: inout ByteBuffer
    ) throws -> (fin: Bool, opcode: WebSocketOpcode, key: WebSocketMaskingKey?, length: Int)? {
        guard let frame = try decoder.decode(buffer: &buffer) else { return nil }
        return (frame.fin, frame.opcode, frame.maskingKey, frame.payload.readableBytes)
    }

    /// Copies `frame`'s payload (unmasked) to the end of `payloads`, which is allocated the first time with
    /// room for this payload and the `remaining` bytes of the read (enough for every later copy). When
    /// borrowing, most of what remains is not copied: room for 16 KiB more, and the buffer grows if need be
    /// (safe: no slice of it is taken before the last copy).
    private mutating func copy(_ frame: WebSocketFrame, into payloads: inout ByteBuffer?, remaining: Int) {
        if payloads == nil {
            let more = self.borrowsUnmaskedPayloads ? min(remaining, 16 * 1024) : remaining
            payloads = self.allocator.buffer(capacity: frame.payload.readableBytes + more)
        }
        let offset = payloads!.writerIndex
        if let key = frame.maskingKey {
            payloads!.writeMaskedBytes(frame.payload, maskingKey: key)
        } else {
            payloads!.writeImmutableBuffer(frame.payload)
        }
        self.pending.append(
            .copied(fin: frame.fin, opcode: frame.opcode, offset: offset, length: frame.payload.readableBytes)
        )
    }
}
