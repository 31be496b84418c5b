import JumpgateWire
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Random bytes in bulk from the kernel, and ids from one shared pool.
///
/// Swift's `SystemRandomNumberGenerator` makes one `getrandom` system call for every 8 bytes it returns, and
/// `UInt8.random(in:)` one for every byte: a 32-byte token cost 32 system calls, and each id (a version 4
/// UUID) two. `bytes(_:)` takes the same kernel randomness 256 bytes per call (`getentropy`), for secrets;
/// `id()` takes ids from one process-wide ``RandomBytePool`` (ChaCha20 under a key from the kernel, one
/// refill per 4 KiB), for ids that must be unique but are not secret: request and event ids, record ids.
/// (In the wire library, which makes no system calls of its own, `MessageID.random()` still takes the
/// system generator's two calls.)
public enum SystemRandom {
    /// `count` bytes from the kernel's generator, in as few calls as it allows. If `getentropy` fails (a
    /// sandbox that blocks it), the rest comes from Swift's generator, which has its own fallbacks and traps
    /// only when none works.
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        #if canImport(Glibc) || canImport(Darwin)
        bytes.withUnsafeMutableBytes { buffer in
            while offset < buffer.count {
                let length = min(256, buffer.count - offset)  // getentropy's most per call
                guard getentropy(buffer.baseAddress! + offset, length) == 0 else { break }
                offset += length
            }
        }
        #endif
        var generator = SystemRandomNumberGenerator()
        while offset < count {
            var word = generator.next() as UInt64
            for _ in 0..<min(8, count - offset) {
                bytes[offset] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                offset += 1
            }
        }
        return bytes
    }

    /// `count` characters drawn uniformly from `alphabet` (at most 256 symbols), from ``bytes(_:)``: bytes
    /// at or above the largest multiple of the alphabet's size are dropped, so no symbol is favoured.
    public static func string(_ count: Int, from alphabet: [Character]) -> String {
        precondition(!alphabet.isEmpty && alphabet.count <= 256)
        let limit = 256 - 256 % alphabet.count
        var text = ""
        var made = 0
        while made < count {
            for byte in self.bytes(count + count / 2 + 8) where Int(byte) < limit && made < count {
                text.append(alphabet[Int(byte) % alphabet.count])
                made += 1
            }
        }
        return text
    }

    private static let ids = NIOLockedValueBox(RandomBytePool())

    /// A random version 4 UUID from the shared pool: unique, not secret.
    public static func id() -> MessageID {
        self.ids.withLockedValue { MessageID.random(using: &$0) }
    }
}
