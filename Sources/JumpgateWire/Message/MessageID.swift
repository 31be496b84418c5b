/// A message id: a UUID, written on the wire with its two 8-byte halves swapped.
///
/// The official peers split the UUID into its most and least significant halves and write the least
/// significant half first (spec §4.4). ``MessageID`` stores the UUID in RFC 4122 order; the codec swaps.
public struct MessageID: Hashable, Sendable, CustomStringConvertible {
    /// UUID bytes 0..<8, big-endian.
    public var high: UInt64
    /// UUID bytes 8..<16, big-endian.
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A random version 4 UUID, from the system generator (two system calls; code outside the wire library
    /// takes ids from a shared pool, `SystemRandom.id()` in JumpgateNIO).
    public static func random() -> MessageID {
        var rng = SystemRandomNumberGenerator()
        return .random(using: &rng)
    }

    public static func random<R: RandomNumberGenerator>(using rng: inout R) -> MessageID {
        var high = rng.next() as UInt64
        var low = rng.next() as UInt64
        high = (high & ~0x0000_0000_0000_F000) | 0x0000_0000_0000_4000  // version 4
        low = (low & ~0xC000_0000_0000_0000) | 0x8000_0000_0000_0000  // RFC 4122 variant
        return MessageID(high: high, low: low)
    }

    /// Parses the `8-4-4-4-12` text form, in either case.
    public init?(_ text: String) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var nibbles = 0
        for (position, byte) in text.utf8.enumerated() {
            if position == 8 || position == 13 || position == 18 || position == 23 {
                guard byte == UInt8(ascii: "-") else { return nil }
                continue
            }
            let value: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = UInt64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = UInt64(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            if nibbles < 16 {
                high = high << 4 | value
            } else {
                low = low << 4 | value
            }
            nibbles += 1
        }
        guard nibbles == 32, text.utf8.count == 36 else { return nil }
        self.init(high: high, low: low)
    }

    /// Lowercase `8-4-4-4-12`, the form used in acknowledgement JSON and logs.
    public var description: String {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for i in 0..<32 {
            if i == 8 || i == 12 || i == 16 || i == 20 { out.append(UInt8(ascii: "-")) }
            let word = i < 16 ? self.high : self.low
            let shift = UInt64(60 - 4 * (i % 16))
            out.append(hex[Int((word >> shift) & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
