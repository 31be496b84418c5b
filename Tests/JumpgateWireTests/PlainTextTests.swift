import Foundation
import JumpgateWire
import Testing

/// The Foundation-free text helpers do what the Foundation calls they replace did.
@Suite struct PlainTextTests {
    @Test func trimmingWhitespaceMatchesFoundation() {
        let samples = ["", " ", "\t a b \t", "abc", "  abc", "abc  ", "\u{00A0}x\u{2003}", "a \n", "\n\n", " \" q \" "]
        for text in samples {
            #expect(
                text.trimmingWhitespace() == text.trimmingCharacters(in: .whitespacesAndNewlines),
                "\(text.debugDescription)"
            )
            #expect(Substring(text).trimmingWhitespace() == text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    @Test func paddedMatchesFoundation() {
        for text in ["", "a", "abcdef", "é✓", "exactly15chars!", "longer than fifteen characters"] {
            for length in [0, 1, 6, 15, 20] {
                #expect(
                    text.padded(toLength: length) == text.padding(toLength: length, withPad: " ", startingAt: 0),
                    "\(text.debugDescription) to \(length)"
                )
            }
        }
    }

    @Test func decimalsMatchPrintf() {
        let seed = UInt64(20_261_205)
        print("PlainTextTests.decimalsMatchPrintf seed \(seed)")
        var rng = SplitMix64(seed: seed)
        var values: [Double] = [0, 0.04, -0.04, 0.05, 1.25, 2.5, 99.95, 1e6 + 0.5, -3.14159]
        for _ in 0..<2000 { values.append(Double(Int64.random(in: -10_000_000...10_000_000, using: &rng)) / 1000) }
        for value in values {
            for digits in 0...2 {
                // printf rounds the binary value half to even; values exactly on a tie are skipped, where
                // the helper rounds away from zero (1.25 -> 1.3 where printf says 1.2).
                let scaled = abs(value) * pow(10, Double(digits))
                if scaled - scaled.rounded(.down) == 0.5 { continue }
                #expect(DecimalText.fixed(value, digits) == String(format: "%.\(digits)f", value), "\(value) \(digits)")
            }
        }
        // Past Int64 once scaled: Swift's own form, never a trap.
        #expect(DecimalText.fixed(1e300, 1) == "1e+300")
        #expect(DecimalText.fixed(-Double.greatestFiniteMagnitude, 2) == "\(-Double.greatestFiniteMagnitude)")
        #expect(DecimalText.fixed(8.9e17, 1) == "890000000000000000.0")
        #expect(DecimalText.fixed(.nan, 1) == "nan")
        #expect(DecimalText.fixed(1.5, -1) == "2")
        for value in [0, 5, 9, 10, 59, 123, -7] {
            #expect(DecimalText.zeroPadded(value, width: 2) == String(format: "%02d", value))
        }
    }
}
