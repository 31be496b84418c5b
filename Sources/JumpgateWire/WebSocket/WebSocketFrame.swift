import NIOCore

/// A WebSocket opcode (RFC 6455 §5.2).
public struct WebSocketOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let continuation = WebSocketOpcode(rawValue: 0x0)
    public static let text = WebSocketOpcode(rawValue: 0x1)
    public static let binary = WebSocketOpcode(rawValue: 0x2)
    public static let close = WebSocketOpcode(rawValue: 0x8)
    public static let ping = WebSocketOpcode(rawValue: 0x9)
    public static let pong = WebSocketOpcode(rawValue: 0xA)

    public var isControl: Bool { self.rawValue & 0x8 != 0 }
    public var isKnown: Bool { [0, 1, 2, 8, 9, 10].contains(self.rawValue) }

    public var description: String {
        switch self.rawValue {
        case 0x0: return "continuation"
        case 0x1: return "text"
        case 0x2: return "binary"
        case 0x8: return "close"
        case 0x9: return "ping"
        case 0xA: return "pong"
        default: return "opcode(\(self.rawValue))"
        }
    }
}

/// A 4-byte masking key, kept as the bytes appear on the wire.
public struct WebSocketMaskingKey: Hashable, Sendable {
    public var b0: UInt8, b1: UInt8, b2: UInt8, b3: UInt8

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) {
        (self.b0, self.b1, self.b2, self.b3) = (b0, b1, b2, b3)
    }

    /// The all-zero key: masking with it leaves the payload as it is.
    public static let zero = WebSocketMaskingKey(0, 0, 0, 0)

    /// The key from a big-endian word as read off the wire.
    public init(networkWord: UInt32) {
        self.init(
            UInt8(networkWord >> 24),
            UInt8(truncatingIfNeeded: networkWord >> 16),
            UInt8(truncatingIfNeeded: networkWord >> 8),
            UInt8(truncatingIfNeeded: networkWord)
        )
    }

    public var networkWord: UInt32 { UInt32(b0) << 24 | UInt32(b1) << 16 | UInt32(b2) << 8 | UInt32(b3) }

    public static func random() -> WebSocketMaskingKey {
        var rng = SystemRandomNumberGenerator()
        return WebSocketMaskingKey(networkWord: rng.next())
    }

    @inline(__always)
    func byte(_ i: Int) -> UInt8 {
        switch i & 3 {
        case 0: return self.b0
        case 1: return self.b1
        case 2: return self.b2
        default: return self.b3
        }
    }

    /// The key repeated over 8 bytes, starting at key byte `offset`, as a little-endian value: XOR it
    /// with `UInt64(littleEndian:)` of 8 payload bytes.
    @inline(__always)
    func littleEndianWord(startingAt offset: Int) -> UInt64 {
        let k =
            UInt64(byte(offset)) | UInt64(byte(offset + 1)) << 8 | UInt64(byte(offset + 2)) << 16
            | UInt64(byte(offset + 3)) << 24
        return k | k << 32
    }
}

/// One WebSocket frame as received. If ``maskingKey`` is set, ``payload`` is still masked: the reader
/// unmasks it in the one copy it makes anyway (``ByteBuffer/writeMaskedBytes(_:maskingKey:keyOffset:)``),
/// or a relay re-masks it with a fresh key in one pass.
public struct WebSocketFrame: Hashable, Sendable {
    public var fin: Bool
    public var opcode: WebSocketOpcode
    public var maskingKey: WebSocketMaskingKey?
    public var payload: ByteBuffer

    public init(fin: Bool = true, opcode: WebSocketOpcode, maskingKey: WebSocketMaskingKey? = nil, payload: ByteBuffer)
    {
        self.fin = fin
        self.opcode = opcode
        self.maskingKey = maskingKey
        self.payload = payload
    }

    /// The payload with the mask removed: the slice itself when unmasked, otherwise one copy.
    public func unmaskedPayload() -> ByteBuffer {
        guard let key = self.maskingKey else { return self.payload }
        var out = ByteBuffer()
        out.writeMaskedBytes(self.payload, maskingKey: key)
        return out
    }

    /// The largest header: 2 bytes, 8 of extended length, 4 of masking key.
    public static let maximumHeaderSize = 14

    /// The header size for a payload of `length` bytes.
    public static func headerSize(payloadLength length: Int, masked: Bool) -> Int {
        let base = length < 126 ? 2 : (length <= 0xFFFF ? 4 : 10)
        return base + (masked ? 4 : 0)
    }
}

extension ByteBuffer {
    /// Copies `source`'s readable bytes, XORed with the key, 8 bytes at a time: the copy each hop makes
    /// anyway, with the masking fused in. `keyOffset` continues a mask across calls.
    @discardableResult
    public mutating func writeMaskedBytes(
        _ source: ByteBuffer,
        maskingKey: WebSocketMaskingKey,
        keyOffset: Int = 0
    ) -> Int {
        let count = source.readableBytes
        guard count > 0 else { return 0 }
        // The zero key (a Jumpgate client's large frames) leaves the bytes as they are: a plain copy.
        if maskingKey == .zero { return self.writeImmutableBuffer(source) }
        return self.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { destination in
            source.withUnsafeReadableBytes { input in
                Self.mask(input, into: destination, key: maskingKey, keyOffset: keyOffset)
            }
            return count
        }
    }

    @inline(__always)
    static func mask(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        key: WebSocketMaskingKey,
        keyOffset: Int
    ) {
        let count = input.count
        guard count > 0, let source = input.baseAddress, let destination = output.baseAddress else { return }
        let keyWord = key.littleEndianWord(startingAt: keyOffset)
        var i = 0
        while i + 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: i, as: UInt64.self)) ^ keyWord
            destination.storeBytes(of: word.littleEndian, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            destination.storeBytes(
                of: source.load(fromByteOffset: i, as: UInt8.self) ^ key.byte(keyOffset + i),
                toByteOffset: i,
                as: UInt8.self
            )
            i += 1
        }
    }

    /// Writes a frame header for a payload of `payloadLength` bytes.
    @discardableResult
    public mutating func writeWebSocketFrameHeader(
        fin: Bool = true,
        opcode: WebSocketOpcode,
        payloadLength: Int,
        maskingKey: WebSocketMaskingKey?
    ) -> Int {
        let first = (fin ? 0x80 : 0) | opcode.rawValue
        let maskBit: UInt8 = maskingKey == nil ? 0 : 0x80
        var written: Int
        if payloadLength < 126 {
            written = self.writeMultipleIntegers(first, maskBit | UInt8(payloadLength))
        } else if payloadLength <= 0xFFFF {
            written = self.writeMultipleIntegers(first, maskBit | 126, UInt16(payloadLength))
        } else {
            written = self.writeMultipleIntegers(first, maskBit | 127, UInt64(payloadLength))
        }
        if let key = maskingKey {
            written += self.writeInteger(key.networkWord)
        }
        return written
    }

    /// Writes a whole frame: the header, then the payload masked (client to server) or copied as is.
    @discardableResult
    public mutating func writeWebSocketFrame(
        fin: Bool = true,
        opcode: WebSocketOpcode,
        payload: ByteBuffer,
        maskingKey: WebSocketMaskingKey?
    ) -> Int {
        let length = payload.readableBytes
        self.reserveCapacity(
            minimumWritableBytes: WebSocketFrame.headerSize(payloadLength: length, masked: maskingKey != nil) + length
        )
        var written = self.writeWebSocketFrameHeader(
            fin: fin,
            opcode: opcode,
            payloadLength: length,
            maskingKey: maskingKey
        )
        if let key = maskingKey {
            written += self.writeMaskedBytes(payload, maskingKey: key)
        } else {
            written += self.writeImmutableBuffer(payload)
        }
        return written
    }
}
