import JumpgateWire
import Testing

@Suite("RandomBytePool")
struct RandomBytePoolTests {
    @Test("two pools never produce the same stream, and a stream does not repeat across blocks")
    func distinctStreams() {
        var a = RandomBytePool()
        var b = RandomBytePool()
        let first = (0..<2048).map { _ in a.next() }  // 16 KiB: four 4 KiB blocks
        let other = (0..<2048).map { _ in b.next() }
        #expect(first != other)
        #expect(Set(first).count == first.count)
        #expect(Array(first[0..<512]) != Array(first[512..<1024]))
    }

    @Test("bits are balanced: each of the 64 bit positions is set about half the time")
    func balancedBits() {
        var pool = RandomBytePool()
        var counts = [Int](repeating: 0, count: 64)
        let samples = 20_000
        for _ in 0..<samples {
            let value = pool.next()
            for bit in 0..<64 where value & (1 << UInt64(bit)) != 0 { counts[bit] += 1 }
        }
        // Mean 10,000, standard deviation about 71: 600 is more than 8 sigma.
        for count in counts { #expect(abs(count - samples / 2) < 600, "\(counts)") }
    }

    @Test("message ids drawn from it are version 4 UUIDs")
    func messageIDs() {
        var pool = RandomBytePool()
        for _ in 0..<100 {
            let text = MessageID.random(using: &pool).description
            #expect(Array(text)[14] == "4")
            #expect("89ab".contains(Array(text)[19]))
        }
    }
}
