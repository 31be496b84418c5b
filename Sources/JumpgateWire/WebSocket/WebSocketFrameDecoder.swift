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
        var key: WebSocketMaskingKey?
        if masked {
            guard let word = buffer.getInteger(at: offset, as: UInt32.self) else { return nil }
            key = WebSocketMaskingKey(networkWord: word)
            offset += 4
        }
        guard buffer.writerIndex - offset >= length else { return nil }
        buffer.moveReaderIndex(to: offset)
        let payload = buffer.readSlice(length: length)!
        return WebSocketFrame(fin: fin, opcode: opcode, maskingKey: key, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> WebSocketFrame? {
        try self.decode(buffer: &buffer)
    }
}
