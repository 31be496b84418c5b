/// A session document parameter's `allowedPattern`, compiled with Swift's `Regex` so that it matches as
/// AWS's (ICU's) engine does, without Foundation's `NSRegularExpression`:
/// - code points, not characters: `[^;]` must refuse a `;` followed by a combining mark or a joiner, and
///   `"\r\n"` is two code points (the value goes into a shell command: a class that refuses a character
///   has to refuse it in any company);
/// - the whole value (`wholeMatch`: ICU's `$` also matches before a final line break, which must not let
///   one through);
/// - ICU's reading of a `-` right after a class escape inside brackets (`[\w-.]`: a literal `-`), which
///   Swift's parser rejects as a range. Nothing else is rewritten: `--` (set difference), `\p{..}-[...]`
///   (subtraction), and a `-` before a class escape (an error in ICU) stay as they are.
/// On ASCII values it agrees with ICU (`AllowedPatternTests`, on seeded values). Beyond ASCII it may refuse
/// what ICU accepts, never the reverse: ICU's `\w` also takes combining marks and joiners, Swift's does not.
struct AllowedPattern {
    let regex: Regex<AnyRegexOutput>

    /// Nil when the pattern does not compile.
    init?(_ pattern: String) {
        guard let regex = try? Regex(Self.icuHyphens(pattern)) else { return nil }
        self.regex = regex.matchingSemantics(.unicodeScalar)
    }

    func matches(_ value: String) -> Bool {
        (try? self.regex.wholeMatch(in: value)) != nil
    }

    /// `pattern` with each `-` that follows a class escape (`\w`, `\d`, `\s`, their capitals, `\p{...}`,
    /// `\P{...}`) inside brackets escaped, when what comes next is neither `-` nor `[`: the literal hyphen
    /// ICU makes of it. Quoted text (`\Q...\E`) is copied as it is.
    static func icuHyphens(_ pattern: String) -> String {
        let scalars = Array(pattern.unicodeScalars)
        var result = String.UnicodeScalarView()
        var index = 0
        var classDepth = 0
        var afterClassEscape = false
        while index < scalars.count {
            let scalar = scalars[index]
            if scalar == "\\", index + 1 < scalars.count {
                let next = scalars[index + 1]
                var end = index + 2
                if next == "Q" {
                    // Quoted: everything up to \E (or the end) is literal.
                    end = scalars.count
                    var search = index + 2
                    while search + 1 < scalars.count {
                        if scalars[search] == "\\", scalars[search + 1] == "E" {
                            end = search + 2
                            break
                        }
                        search += 1
                    }
                } else if next == "p" || next == "P", end < scalars.count, scalars[end] == "{" {
                    while end < scalars.count, scalars[end] != "}" { end += 1 }
                    end = min(end + 1, scalars.count)
                }
                result.append(contentsOf: scalars[index..<end])
                afterClassEscape = classDepth > 0 && "wWdDsSpP".unicodeScalars.contains(next)
                index = end
                continue
            }
            if classDepth > 0, scalar == "-", afterClassEscape {
                let next = index + 1 < scalars.count ? scalars[index + 1] : nil
                if next != "-", next != "[" {
                    result.append(contentsOf: "\\-".unicodeScalars)
                    afterClassEscape = false
                    index += 1
                    continue
                }
            }
            result.append(scalar)
            if scalar == "[" {
                classDepth += 1
            } else if scalar == "]", classDepth > 0 {
                classDepth -= 1
            }
            afterClassEscape = false
            index += 1
        }
        return String(result)
    }
}
