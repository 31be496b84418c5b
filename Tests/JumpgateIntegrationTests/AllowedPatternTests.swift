import Foundation
import Testing

@testable import JumpgateGateway

/// `allowedPattern` decides what reaches a shell command line: Jumpgate's matcher (Swift Regex, without
/// Foundation) must never accept what ICU's (NSRegularExpression, AWS's engine's family) refuses, and must
/// agree with it on ASCII values.
@Suite struct AllowedPatternTests {
    static let patterns = [
        BuiltInDocuments.portPattern,
        BuiltInDocuments.localPortPattern,
        "^[a-zA-Z0-9-:_\\.]{1,253}$",
        "^[^';|&\\n]*$",
        "^[^'\"`$;|&<>\\\\]{0,200}$",
        "[\\w-.]+",
        "^[\\w-]+$",
        "^[-\\w.]+$",
        "^[\\d-\\s]+$",
        "^[\\p{L}-]+$",
        "^[a-z]+(-[a-z]+)?$",
        "(?i)^orders|billing$",
        "^\\S+$",
        "^.{1,5}$",
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    ]

    /// ICU's verdict on the whole value, as the gateway asked it before (anchored with \A and \z).
    static func icu(_ value: String, _ pattern: String) -> Bool? {
        guard let regex = try? NSRegularExpression(pattern: "\\A(?:" + pattern + ")\\z") else { return nil }
        return regex.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil
    }

    @Test func everyPatternCompilesAsICUDoes() {
        for pattern in Self.patterns {
            #expect((AllowedPattern(pattern) != nil) == (Self.icu("", pattern) != nil), "\(pattern)")
            #expect(AllowedPattern(pattern) != nil, "\(pattern)")
        }
    }

    @Test func combiningMarksJoinersAndLineBreaksDoNotSlipThroughAClass() throws {
        let pattern = try #require(AllowedPattern("^[^';|&\\n]*$"))
        for value in ["a'\u{301}b", "x;\u{200D}rm", "a\r\nb", "ok\n", "é\u{301};"] {
            #expect(!pattern.matches(value), "\(value.debugDescription)")
            #expect(Self.icu(value, "^[^';|&\\n]*$") == false)
        }
        #expect(pattern.matches("plain-value_1.2"))
    }

    @Test func matchesAsICUDoesOnSeededValues() {
        let seed: UInt64 = 0x5EED_2026_1205
        print("AllowedPatternTests.matchesAsICUDoesOnSeededValues seed \(seed)")
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let alphabet: [String] = [
            "a", "Z", "0", "7", "9", "-", "_", ".", ":", " ", "\t", "\n", "\r\n", "'", "\"", ";", "|", "&", "$",
            "`", "\\", "<", "é", "e\u{301}", "\u{301}", "\u{200D}", "ß", "\u{1F600}", "6", "5", "3", "1",
        ]
        var compared = 0
        for pattern in Self.patterns {
            guard let ours = AllowedPattern(pattern) else { continue }
            for _ in 0..<400 {
                let length = Int(next() % 12)
                let value = (0..<length).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }.joined()
                guard let theirs = Self.icu(value, pattern) else { continue }
                if value.unicodeScalars.allSatisfy(\.isASCII) {
                    #expect(ours.matches(value) == theirs, "\(pattern) on \(value.debugDescription)")
                } else if ours.matches(value) {
                    // Never more permissive than ICU: it may refuse what ICU accepts (ICU's \w also takes
                    // combining marks and joiners), never the other way round.
                    #expect(theirs, "\(pattern) on \(value.debugDescription)")
                }
                compared += 1
            }
            for value in ["22", "65535", "65536", "0", "1-2", "a.b-c", "orders", "BILLING", "2026-12-05"] {
                #expect(ours.matches(value) == Self.icu(value, pattern), "\(pattern) on \(value)")
            }
        }
        #expect(compared > 4000)
    }

    @Test func hyphensNextToClassEscapesAreLiteral() {
        #expect(AllowedPattern.icuHyphens("[\\w-.]") == "[\\w\\-.]")
        #expect(AllowedPattern.icuHyphens("[-\\w.]") == "[-\\w.]")
        #expect(AllowedPattern.icuHyphens("[a-z]-\\w") == "[a-z]-\\w")
        #expect(AllowedPattern.icuHyphens("[\\p{L}-]") == "[\\p{L}\\-]")
        // Left for the regex parser: set difference, subtraction, a hyphen before an escape, quoted text.
        for pattern in ["[\\w--\\d]", "[\\p{L}-[a-z]]", "[.-\\w]", "\\Q[\\w-.\\E", "x\\"] {
            #expect(AllowedPattern.icuHyphens(pattern) == pattern, "\(pattern)")
        }
    }

    /// Patterns that mean something else than a literal hyphen: whatever they compile to, never more
    /// permissive than ICU.
    @Test func setOperationsAreNeverWidened() {
        let values = ["--help", "abc", "ABC", "a1", "123", "-", "x-y", "[a]", "é"]
        for pattern in ["^[\\w--\\d]+$", "^[\\p{L}-[a-z]]+$", "^[\\w&&[^\\d]]+$", "^\\Q[-\\E$"] {
            guard let ours = AllowedPattern(pattern) else { continue }
            for value in values where ours.matches(value) {
                #expect(Self.icu(value, pattern) == true, "\(pattern) accepts \(value.debugDescription)")
            }
        }
    }
}
