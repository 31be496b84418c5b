/// A session document parameter's `allowedPattern`, compiled with Swift's `Regex` so that it matches as
/// AWS's (ICU's) engine does, without Foundation's `NSRegularExpression`:
/// - code points, not characters: `[^;]` must refuse a `;` followed by a combining mark or a joiner, and
///   `"\r\n"` is two code points (the value goes into a shell command: a class that refuses a character
///   has to refuse it in any company);
/// - the whole value, with `\A` and `\z` (ICU's `$` also matches before a final line break);
/// - ICU's reading of a `-` next to a class escape inside brackets (`[\w-.]`: a literal `-`), which Swift's
///   parser rejects as a range.
/// On ASCII values it agrees with ICU (`AllowedPatternTests`, on seeded values). Beyond ASCII it may refuse
/// what ICU accepts, never the reverse: ICU's `\w` also takes combining marks and joiners, Swift's does not.
struct AllowedPattern {
    let regex: Regex<AnyRegexOutput>

    /// Nil when the pattern does not compile.
    init?(_ pattern: String) {
        let anchored = "\\A(?:" + Self.icuHyphens(pattern) + ")\\z"
        guard let regex = try? Regex(anchored) else { return nil }
        self.regex = regex.matchingSemantics(.unicodeScalar)
    }

    func matches(_ value: String) -> Bool {
        (try? self.regex.wholeMatch(in: value)) != nil
    }

    /// `pattern` with each `-` inside brackets that touches a class escape (`\w`, `\d`, `\s`, their
    /// capitals, `\p{...}`, `\P{...}`) escaped, which is what ICU makes of it.
    static func icuHyphens(_ pattern: String) -> String {
        let characters = Array(pattern)
        var result = ""
        var index = 0
        var inClass = false
        var previousWasClassEscape = false
        while index < characters.count {
            let character = characters[index]
            if character == "\\", index + 1 < characters.count {
                let next = characters[index + 1]
                var escape = String([character, next])
                index += 2
                if next == "p" || next == "P", index < characters.count, characters[index] == "{",
                    let close = characters[index...].firstIndex(of: "}")
                {
                    escape += String(characters[index...close])
                    index = close + 1
                }
                result += escape
                previousWasClassEscape = inClass && "wWdDsSpP".contains(next)
                continue
            }
            if inClass, character == "-" {
                let nextIsClassEscape =
                    index + 2 < characters.count && characters[index + 1] == "\\"
                    && "wWdDsSpP".contains(characters[index + 2])
                result += previousWasClassEscape || nextIsClassEscape ? "\\-" : "-"
            } else {
                result.append(character)
                if character == "[", !inClass {
                    inClass = true
                } else if character == "]", inClass {
                    inClass = false
                }
            }
            previousWasClassEscape = false
            index += 1
        }
        return result
    }
}
