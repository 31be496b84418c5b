/// IAM's wildcards: `*` matches any run of characters (`/` and `:` included), `?` exactly one (one Unicode
/// scalar). Actions compare without regard to case, resources and condition values with it.
public struct WildcardPattern: Hashable, Sendable {
    public let text: String
    let caseSensitive: Bool
    /// The pattern as Unicode scalar values, with `?` as -1 and `*` as -2 (runs of `*` collapsed).
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
            for scalar in (caseSensitive ? text : text.lowercased()).unicodeScalars {
                switch scalar {
                case "*" where !literal: if tokens.last != Self.any { tokens.append(Self.any) }
                case "?" where !literal: tokens.append(Self.one)
                default: tokens.append(Int(scalar.value))
                }
            }
        }
        self.tokens = tokens
    }

    /// Whether `value` matches the whole pattern: iterative, backtracking only to the last `*`, so at
    /// worst O(pattern × value) steps, never exponential.
    public func matches(_ value: String) -> Bool {
        let subject = (self.caseSensitive ? value : value.lowercased()).unicodeScalars.map { Int($0.value) }
        let tokens = self.tokens
        var (t, s) = (0, 0)
        var star: Int?
        var resume = 0
        while s < subject.count {
            if t < tokens.count, tokens[t] == Self.any {
                star = t
                resume = s
                t += 1
            } else if t < tokens.count, tokens[t] == Self.one || tokens[t] == subject[s] {
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

/// ARNs matched as IAM matches them (ArnLike, ArnEquals, and Resource): the six colon-separated
/// components (arn:partition:service:region:account:resource, the last one keeping its own colons) are
/// matched one by one, so a `*` stays inside its component; only a `*` that ends a pattern with fewer
/// components runs on over the rest (`arn:aws:ssm:*` covers every ssm ARN). A `*` pattern matches all.
struct ARNPattern {
    /// The pattern's components, each as wildcard pieces.
    let components: [[(text: String, literal: Bool)]]
    let isEverything: Bool

    init(segments: [(text: String, literal: Bool)]) {
        self.isEverything = segments.count == 1 && segments[0].text == "*" && !segments[0].literal
        var components: [[(text: String, literal: Bool)]] = [[]]
        for (text, literal) in segments {
            var piece = ""
            for character in text {
                if character == ":", components.count < 6 {
                    components[components.count - 1].append((piece, literal))
                    components.append([])
                    piece = ""
                } else {
                    piece.append(character)
                }
            }
            components[components.count - 1].append((piece, literal))
        }
        self.components = components
    }

    func matches(_ value: String) -> Bool {
        if self.isEverything { return true }
        let parts = value.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false).map(String.init)
        let count = self.components.count
        if count == 6 {
            guard parts.count == 6 else { return false }
            return zip(self.components, parts).allSatisfy {
                WildcardPattern(segments: $0, caseSensitive: true).matches($1)
            }
        }
        // Fewer components: the last must end with a wildcard `*`, which takes the rest of the ARN.
        guard let last = self.components.last?.last(where: { !$0.text.isEmpty }), !last.literal,
            last.text.hasSuffix("*"), parts.count >= count
        else { return false }
        for index in 0..<(count - 1)
        where !WildcardPattern(segments: self.components[index], caseSensitive: true).matches(parts[index]) {
            return false
        }
        let rest = parts[(count - 1)...].joined(separator: ":")
        return WildcardPattern(segments: self.components[count - 1], caseSensitive: true).matches(rest)
    }
}
