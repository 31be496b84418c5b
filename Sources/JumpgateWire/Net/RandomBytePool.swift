import Crypto

/// A cryptographically strong random number generator that makes four system calls for its 32-byte seed
/// (Swift's generator takes 8 bytes per call) instead of one per 8 bytes of output: ChaCha20 keystream (ChaChaPoly over zeros, a fresh nonce for
/// each 4 KiB block) under a key drawn from the system generator. Message ids and WebSocket masking keys
/// take 16 and 4 bytes per message; with the system generator that was a `getrandom` call or two for
/// every 32 KiB relayed. Not thread-safe: one per connection or session, used on its event loop.
public struct RandomBytePool: RandomNumberGenerator, Sendable {
    private let key: SymmetricKey
    private var counter: UInt64 = 0
    private var pool: [UInt8] = []
    private var index = 0
    private static let blockSize = 4096
    private static let zeros = [UInt8](repeating: 0, count: blockSize)

    public init() {
        var system = SystemRandomNumberGenerator()
        var seed = [UInt8]()
        seed.reserveCapacity(32)
        for _ in 0..<4 {
            var word = system.next() as UInt64
            for _ in 0..<8 {
                seed.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        self.key = SymmetricKey(data: seed)
    }

    public mutating func next() -> UInt64 {
        if self.index + 8 > self.pool.count { self.refill() }
        let value = self.pool.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: self.index, as: UInt64.self) }
        self.index += 8
        return value
    }

    private mutating func refill() {
        var nonce = [UInt8](repeating: 0, count: 12)
        var count = self.counter
        for i in 0..<8 {
            nonce[i] = UInt8(truncatingIfNeeded: count)
            count >>= 8
        }
        self.counter += 1
        // The nonce never repeats under this key, so the keystream never does.
        let sealed = try! ChaChaPoly.seal(Self.zeros, using: self.key, nonce: try! ChaChaPoly.Nonce(data: nonce))
        self.pool = Array(sealed.ciphertext)
        self.index = 0
    }
}
