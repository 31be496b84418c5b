/// IAM's wildcards: `*` matches any run of characters (`/` and `:` included), `?` exactly one.
/// Actions compare without regard to case, resources (ARNs) with it.
public struct WildcardPattern: Hashable, Sendable {
    public let text: String
    let caseSensitive: Bool
    /// The pattern as bytes, with `?` as -1 and `*` as -2 (runs of `*` collapsed).
    let tokens: [Int]

    static let one = -1
    static let any = -2

    public init(_ text: String, caseSensitive: Bool) {
        self.init(segments: [(text, false)], caseSensitive: caseSensitive)
    }

    /// A pattern from pieces, some of them literal (`*` and `?` in them match only themselves): what a
    /// policy variable or an escape such as `${*}` stands for.
    public init(segments: [(text: String, literal: Bool)], caseSensitive: Bool) {
        self.text = segments.map(\.text).joined()
        self.caseSensitive = caseSensitive
        var tokens: [Int] = []
        for (text, literal) in segments {
            for byte in Array((caseSensitive ? text : text.lowercased()).utf8) {
                switch byte {
                case UInt8(ascii: "*") where !literal: if tokens.last != Self.any { tokens.append(Self.any) }
                case UInt8(ascii: "?") where !literal: tokens.append(Self.one)
                default: tokens.append(Int(byte))
                }
            }
        }
        self.tokens = tokens
    }

    /// Whether `value` matches the whole pattern: iterative, backtracking only to the last `*`, so
    /// linear in practice and never exponential.
    public func matches(_ value: String) -> Bool {
        let subject = Array((self.caseSensitive ? value : value.lowercased()).utf8)
        let tokens = self.tokens
        var (t, s) = (0, 0)
        var star: Int?
        var resume = 0
        while s < subject.count {
            if t < tokens.count, tokens[t] == Self.any {
                star = t
                resume = s
                t += 1
            } else if t < tokens.count, tokens[t] == Self.one || tokens[t] == Int(subject[s]) {
                t += 1
                s += 1
            } else if let star {
                t = star + 1
                resume += 1
                s = resume
            } else {
                return false
            }
        }
        while t < tokens.count, tokens[t] == Self.any { t += 1 }
        return t == tokens.count
    }
}
