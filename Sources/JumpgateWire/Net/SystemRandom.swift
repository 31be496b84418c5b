import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Random bytes in bulk from the kernel, and ids from one shared pool.
///
/// Swift's `SystemRandomNumberGenerator` makes one `getrandom` system call for every 8 bytes it returns, and
/// `UInt8.random(in:)` one for every byte: a 32-byte token cost 32 system calls, and each id (a version 4
/// UUID) two. `bytes(_:)` takes the same kernel randomness 256 bytes per call (`getentropy`), for secrets;
/// `id()` takes ids from one process-wide ``RandomBytePool`` (ChaCha20 under a key from the kernel, one
/// refill per 4 KiB), for ids that must be unique but are not secret: request and event ids, record ids.
public enum SystemRandom {
    /// `count` bytes from the kernel's generator, in as few calls as it allows.
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        #if canImport(Glibc)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let length = min(256, buffer.count - offset)  // getentropy's most per call
                guard getentropy(buffer.baseAddress! + offset, length) == 0 else {
                    fatalError("getentropy failed: \(errno)")  // as Swift's own generator does
                }
                offset += length
            }
        }
        #else
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: generator.next() as UInt64) }
        #endif
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

    private static let ids = Mutex(RandomBytePool())

    /// A random version 4 UUID from the shared pool: unique, not secret.
    public static func id() -> MessageID {
        self.ids.withLock { MessageID.random(using: &$0) }
    }
}
