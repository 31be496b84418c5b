import JumpgateAccess
import Testing

/// A malformed policy is refused when it is put, with a message naming the part that is wrong; host
/// names, wildcards and dates are read one way.
@Suite("PolicyDocument, HostName, WildcardPattern, IAMDate")
struct PolicyDocumentTests {
    static func refusal(_ text: String) -> String? {
        do {
            _ = try PolicyDocument(parsing: text)
            return nil
        } catch {
            return error.description
        }
    }

    /// A number condition value reads as JSON writes it: 520.0 is "520", so a policy means the same after
    /// its document goes through a JSON round trip (FuzzPolicy's round-trip property).
    @Test("a number in a condition reads as its JSON text: 520.0 and 520 are the same value")
    func numberConditionValues() throws {
        func values(_ number: String) throws -> [String] {
            let document = try PolicyDocument(
                parsing: #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*","#
                    + #""Condition":{"NumericEquals":{"ssm:x":"# + number + "}}}]}"
            )
            return document.statements.first?.conditions.first?.values ?? []
        }
        #expect(try values("520.000") == ["520"])
        #expect(try values("520") == ["520"])
        #expect(try values("0.5") == ["0.5"])
    }

    @Test("each malformed part is named")
    func malformed() {
        let cases: [(String, String)] = [
            ("not json", "not JSON"),
            ("[]", "must be a JSON object"),
            (#"{"Version": "2012-10-17"}"#, "no Statement"),
            (#"{"Version": "2020-01-01", "Statement": []}"#, "Version must be"),
            (#"{"Version": "2012-10-17", "Statement": []}"#, "Statement is empty"),
            (#"{"Version": "2012-10-17", "Statment": []}"#, "unknown top-level element 'Statment'"),
            (#"{"Statement": {"Effect": "Permit", "Action": "*", "Resource": "*"}}"#, "Statement[0].Effect must be"),
            (#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#, "Statement[0] has no Action"),
            (#"{"Statement": {"Effect": "Allow", "Action": "*"}}"#, "Statement[0] has no Resource"),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "StartSession", "Resource": "*"}}"#,
                "is not SERVICE:ACTION"
            ),
            (#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "mi-123"}}"#, "is not an ARN"),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "NotAction": "x:y", "Resource": "*"}}"#,
                "both Action and NotAction"
            ),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}}"#,
                "names no principal"
            ),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEqualz": {"a": "b"}}}}"#,
                "unknown condition operator 'StringEqualz'"
            ),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"jumpgate:RemotePort": "low"}}}}"#,
                "'low' is not a valid value for NumericLessThan"
            ),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}}}"#,
                "not a valid value for IpAddress"
            ),
            (
                #"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NullIfExists": {"a": "true"}}}}"#,
                "unknown condition operator"
            ),
            (
                #"{"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"}, {"Sid": "A", "Effect": "Deny", "Action": "*", "Resource": "*"}]}"#,
                "Sid 'A' is used twice"
            ),
            (#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#, "non-empty list"),
        ]
        for (text, expected) in cases {
            let message = Self.refusal(text)
            #expect(message?.contains(expected) == true, "\(text): \(message ?? "accepted")")
        }
        #expect(
            Self.refusal(String(repeating: " ", count: PolicyDocument.maximumSize + 1))?.contains("at most") == true
        )
    }

    @Test("host names in one form: case, trailing dot, address literals in every spelling")
    func hostNames() {
        for spelling in [
            "127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "::ffff:127.0.0.1", "[::ffff:7f00:1]",
            "127.0.0.1.",
        ] {
            #expect(HostName.normalized(spelling) == "127.0.0.1", "\(spelling)")
        }
        #expect(HostName.normalized("DB.Internal.") == "db.internal")
        #expect(HostName.normalized("2001:0DB8:0000:0000:0000:0000:0000:0001") == "2001:db8::1")
        #expect(HostName.normalized("[::1]") == "::1")
        #expect(HostName.normalized("1.2.3.4.5") == "1.2.3.4.5")  // not an address: a name
        #expect(HostName.addressBytes("256.1.1.1") == nil)
        #expect(HostName.addressBytes("10.1") == [10, 0, 0, 1])
    }

    @Test("wildcards: * across / and :, ? for one character, case as asked, no blow-up")
    func wildcards() {
        let arn = WildcardPattern("arn:aws:ssm:*:*:session/alice-*", caseSensitive: true)
        #expect(arn.matches("arn:aws:ssm:us-east-1:123456789012:session/alice-0a1b"))
        #expect(!arn.matches("arn:aws:ssm:us-east-1:123456789012:session/Alice-0a1b"))
        #expect(WildcardPattern("SSM:Describe*", caseSensitive: false).matches("ssm:DescribeSessions"))
        #expect(WildcardPattern("a?c", caseSensitive: true).matches("abc"))
        #expect(!WildcardPattern("a?c", caseSensitive: true).matches("ac"))
        #expect(WildcardPattern("*", caseSensitive: true).matches(""))
        let literal = WildcardPattern(segments: [("a-", false), ("*", true)], caseSensitive: true)
        #expect(literal.matches("a-*") && !literal.matches("a-b"))
        // A pattern made to backtrack: answers at once (linear), rather than in exponential time.
        let hostile = WildcardPattern(String(repeating: "*a", count: 30) + "b", caseSensitive: true)
        #expect(!hostile.matches(String(repeating: "a", count: 5000)))
    }

    @Test("dates: ISO 8601 forms and epoch seconds")
    func dates() {
        #expect(IAMDate.epochSeconds("1970-01-01T00:00:00Z") == 0)
        #expect(IAMDate.epochSeconds("2026-12-02") == 1_796_169_600)
        #expect(IAMDate.epochSeconds("2026-12-02T16:35:43Z") == 1_796_229_343)
        #expect(IAMDate.epochSeconds("2026-12-02T17:35:43+01:00") == 1_796_229_343)
        #expect(IAMDate.epochSeconds("2026-12-02T16:35:43.5Z") == 1_796_229_343.5)
        #expect(IAMDate.epochSeconds("1796229343") == 1_796_229_343)
        for bad in ["2026-13-01", "yesterday", "2026-12-02T25:00:00Z", "2026-12-02T16:35:43"] {
            #expect(IAMDate.epochSeconds(bad) == nil, "\(bad)")
        }
    }
}
