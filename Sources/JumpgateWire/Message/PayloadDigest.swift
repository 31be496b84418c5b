import Crypto
import NIOCore

/// The 32-byte `PayloadDigest` header field: SHA-256 of the payload, or all zeros in Jumpgate's
/// negotiated digest-free mode. Stored inline so decoding a message allocates nothing.
public struct PayloadDigest: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64
    public var w1: UInt64
    public var w2: UInt64
    public var w3: UInt64

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    public static let zero = PayloadDigest(w0: 0, w1: 0, w2: 0, w3: 0)

    /// SHA-256 of the readable bytes of `payload`.
    public static func sha256(of payload: ByteBuffer) -> PayloadDigest {
        let digest = payload.withUnsafeReadableBytes { SHA256.hash(data: $0) }
        return digest.withUnsafeBytes { raw in
            PayloadDigest(
                w0: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                w1: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                w2: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                w3: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            )
        }
    }

    /// Parses 64 hex digits.
    public init?(hex: String) {
        guard hex.utf8.count == 64 else { return nil }
        var words: [UInt64] = []
        var current: UInt64 = 0
        for (i, c) in hex.utf8.enumerated() {
            let v: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = UInt64(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            current = current << 4 | v
            if i % 16 == 15 {
                words.append(current)
                current = 0
            }
        }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    public var hex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for word in [self.w0, self.w1, self.w2, self.w3] {
            for shift in stride(from: 60, through: 0, by: -4) {
                out.append(digits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { self.hex }
}
