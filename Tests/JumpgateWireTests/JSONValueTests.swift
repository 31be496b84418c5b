import JumpgateWire
import PropertyBased
import Testing

@Suite("JSON")
struct JSONValueTests {
    @Test("serialises compactly, in order, with Go's HTML-safe escapes")
    func serialisation() {
        let value: JSONValue = ["b": 1, "a": [true, nil, "x<y>&z"], "c": .double(1.5), "d": "\u{2028}\n\"\\\u{01}é"]
        #expect(
            value.serialized() == #"{"b":1,"a":[true,null,"x\u003cy\u003e\u0026z"],"c":1.5,"d":"\u2028\n\"\\\u0001é"}"#
        )
    }

    @Test("parses strings, escapes, surrogate pairs and numbers")
    func parsing() throws {
        let value = try JSONValue(
            parsing:
                #" {"s":"a\u00e9\ud83d\ude00\/","i":-12,"big":9223372036854775807,"f":1e3,"n":null,"t":true,"arr":[]} "#
        )
        #expect(value["s"]?.stringValue == "aé😀/")
        #expect(value["i"]?.int64Value == -12)
        #expect(value["big"]?.int64Value == Int64.max)
        #expect(value["f"]?.int64Value == 1000)
        #expect(value["n"]?.isNull == true)
        #expect(value["t"]?.boolValue == true)
        #expect(value["arr"]?.arrayValue?.isEmpty == true)
    }

    @Test("keys match case-insensitively after an exact match, as Go does")
    func caseInsensitiveKeys() throws {
        let value = try JSONValue(parsing: #"{"sessionid":"lower","SessionId":"exact"}"#)
        #expect(value["SessionId"]?.stringValue == "exact")
        #expect(value["SESSIONID"]?.stringValue == "lower")
        #expect(value["missing"] == nil)
    }

    @Test(
        "rejects malformed JSON with a position",
        arguments: [
            "", "{", "[1,]", "{\"a\" 1}", "tru", "01", "1.", "\"\\x\"", "\"a", "{\"a\":1} x", "[\"\u{01}\"]", "-", "1e",
        ]
    )
    func malformed(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    /// Found by FuzzPayloadJSON: an exponent past Double's range parsed as infinity, which serialises as
    /// null, so a payload changed on its way through (Fuzz/Regressions/FuzzPayloadJSON/infinite-number).
    @Test("numbers beyond Double's range are refused, not turned into infinity", arguments: ["1e999", "-254e4775807"])
    func outOfRange(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: "{\"a\":[\(text)]}") }
        #expect((try? JSONValue(parsing: "1.7e308")) == .double(1.7e308))
    }

    /// Found by FuzzPayloadJSON (Fuzz/Regressions/FuzzPayloadJSON/integral-double): 520.0 serialises as
    /// 520, so a value holding the double differed from itself after a round trip.
    @Test("numbers compare and hash by value: 520 and 520.0 are one JSON number")
    func numbersCompareByValue() throws {
        let parsed = try JSONValue(parsing: #"{"a":520.000,"b":[1e2,-0.0]}"#)
        let again = try JSONValue(parsing: parsed.serialized())
        #expect(parsed == again)
        #expect(Set([parsed, again]).count == 1)
        #expect(JSONValue.double(520) == .integer(520) && JSONValue.integer(520) == .double(520))
        #expect(JSONValue.double(520.5) != .integer(520))
        #expect(JSONValue.double(9.3e18) != .integer(Int64.max))  // beyond Int64: never equal to one
        #expect(Set([JSONValue.double(7), .integer(7)]).count == 1)
    }

    @Test("nesting is bounded so hostile input cannot exhaust the stack")
    func depthLimit() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
        let fine = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        #expect((try? JSONValue(parsing: fine)) != nil)
    }

    @Test("property: strings round-trip through serialise and parse")
    func stringRoundTrip() async {
        await propertyCheck(count: 300, input: Gen.uint32(in: 0...0x10FFFF).array(of: 0...40)) { scalars in
            let text = String(String.UnicodeScalarView(scalars.compactMap(Unicode.Scalar.init)))
            let value: JSONValue = ["k": .string(text), "n": .integer(Int64(scalars.count))]
            let parsed = try JSONValue(parsing: value.serialized())
            #expect(parsed == value)
        }
    }

    @Test("property: escapes are the scalar-by-scalar reference's, for text dense in what needs escaping")
    func escapesMatchReference() async {
        // Escaped ASCII, control characters, U+2028/9 and their UTF-8 neighbours (E2 80 xx, E2 82 AC).
        let alphabet: [Unicode.Scalar] = [
            "a", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\u{0}", "\u{1f}", " ", "\u{7f}", "é", "\u{2028}",
            "\u{2029}", "\u{2026}", "\u{2027}", "\u{202a}", "€", "😀",
        ]
        await propertyCheck(count: 500, input: Gen.int(in: 0...(alphabet.count - 1)).array(of: 0...40)) { picks in
            let text = String(String.UnicodeScalarView(picks.map { alphabet[$0] }))
            let serialized = JSONValue.string(text).serialized()
            #expect(serialized == Self.referenceEscape(text))
            let parsed = try JSONValue(parsing: serialized)
            #expect(parsed == .string(text))
        }
    }

    /// Go's escaping, one scalar at a time (the serializer's former implementation, kept as the oracle).
    static func referenceEscape(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    @Test("random bytes never crash the parser")
    func garbage() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]",:0123456789-+.eEtruefalsn\u "#.utf8)
        for _ in 0..<3000 {
            let bytes = (0..<Int.random(in: 0..<60, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            _ = try? JSONValue(parsing: bytes)
        }
    }
}
