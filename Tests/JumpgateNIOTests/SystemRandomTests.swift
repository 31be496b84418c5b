import JumpgateNIO
import JumpgateWire
import Testing

/// Kernel randomness in bulk, strings without modulo bias, and ids from the shared pool. The kernel's
/// generator cannot be seeded: the statistical bounds below are wide (6 standard deviations or more), so
/// only a biased or broken generator fails them.
@Suite("System randomness: bytes in bulk, unbiased strings, ids")
struct SystemRandomTests {
    @Test("bytes of every length across getentropy's 256-byte limit, never repeated")
    func bytes() {
        for count in [0, 1, 16, 255, 256, 257, 272, 512, 1000] {
            let first = SystemRandom.bytes(count)
            #expect(first.count == count)
            if count >= 16 {
                #expect(first != SystemRandom.bytes(count), "two draws of \(count) bytes")
            }
            // Every 256-byte chunk is filled, the last one too: its bytes differ between two draws.
            if count >= 272 {
                let tail = (count - 1) / 256 * 256
                #expect(Array(first[tail...]) != Array(SystemRandom.bytes(count)[tail...]), "\(count)")
            }
        }
        // Each byte value about as often as the others: 256,000 bytes, 1,000 of each expected (sd about 31).
        var counts = [Int](repeating: 0, count: 256)
        for byte in SystemRandom.bytes(256_000) { counts[Int(byte)] += 1 }
        #expect(counts.min()! > 800 && counts.max()! < 1200, "\(counts.min()!)...\(counts.max()!)")
    }

    @Test("strings: the length asked for, only the alphabet's symbols, each as likely (no modulo bias)")
    func strings() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        for count in [0, 1, 17, 40, 300] {
            let text = SystemRandom.string(count, from: alphabet)
            #expect(text.count == count && text.allSatisfy(alphabet.contains))
        }
        // 62 symbols: 256 % 62 = 8, so a plain modulo would give the first 8 symbols 5 chances in 256 and the
        // others 4: of 124,000 draws, about 2,422 each against 1,938 (2,000 each, sd about 44, unbiased).
        var counts: [Character: Int] = [:]
        for character in SystemRandom.string(124_000, from: alphabet) { counts[character, default: 0] += 1 }
        #expect(counts.count == 62)
        #expect(counts.values.min()! > 1_730 && counts.values.max()! < 2_270, "\(counts.values.sorted())")
    }

    @Test("ids: version 4, RFC 4122 variant, unique")
    func ids() {
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let id = SystemRandom.id().description
            let characters = Array(id)
            #expect(characters.count == 36 && characters[14] == "4" && "89ab".contains(characters[19]), "\(id)")
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
    }
}
