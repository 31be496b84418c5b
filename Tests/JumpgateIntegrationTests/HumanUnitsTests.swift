import JumpgateClient
import Testing

@Suite("Byte counts and durations as people read and type them")
struct HumanUnitsTests {
    @Test("byte counts: bytes below 1 KiB, then three significant digits in binary units")
    func byteCounts() {
        #expect(ByteCount.text(0) == "0 B")
        #expect(ByteCount.text(1023) == "1023 B")
        #expect(ByteCount.text(1024) == "1.00 KiB")
        #expect(ByteCount.text(1536) == "1.50 KiB")
        #expect(ByteCount.text(100 * 1024) == "100 KiB")
        #expect(ByteCount.text(25_165_824) == "24.0 MiB")
        #expect(ByteCount.text(3_446_711_255) == "3.21 GiB")
        #expect(ByteCount.text(Int64(5) << 50) == "5120 TiB")
    }

    @Test("durations: s, m, h, d or plain seconds; anything else is refused")
    func durations() {
        #expect(DurationText.seconds("90s") == 90)
        #expect(DurationText.seconds("5m") == 300)
        #expect(DurationText.seconds("8h") == 28_800)
        #expect(DurationText.seconds("7d") == 604_800)
        #expect(DurationText.seconds("42") == 42)
        #expect(DurationText.seconds("0") == 0)
        for bad in ["", "m", "-5m", "5w", "1.5h", "99999999999s", "2026-12-31"] {
            #expect(DurationText.seconds(bad) == nil, "\(bad)")
        }
    }
}
