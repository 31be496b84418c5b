/// Why a JSON text could not be parsed.
public struct JSONParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String

    public var description: String { "invalid JSON at byte \(self.offset): \(self.reason)" }
}

extension JSONValue {
    /// The deepest nesting accepted, so hostile input cannot exhaust the stack.
    public static let maximumDepth = 64

    /// Parses one JSON text (RFC 8259). Leading and trailing whitespace is allowed; anything else
    /// after the value is an error.
    public init<Bytes: Collection<UInt8>>(parsing bytes: Bytes) throws(JSONParseError) {
        let array = Array(bytes)
        var parser = JSONParser(bytes: array)
        self = try parser.parseDocument()
    }

    public init(parsing text: String) throws(JSONParseError) {
        try self.init(parsing: Array(text.utf8))
    }
}

struct JSONParser {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        self.skipWhitespace()
        let value = try self.parseValue(depth: 0)
        self.skipWhitespace()
        guard self.index == self.bytes.count else {
            throw self.error("unexpected trailing characters")
        }
        return value
    }

    private func error(_ reason: String) -> JSONParseError {
        JSONParseError(offset: self.index, reason: reason)
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < JSONValue.maximumDepth else { throw self.error("nesting deeper than \(JSONValue.maximumDepth)") }
        guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return try self.parseObject(depth: depth)
        case UInt8(ascii: "["): return try self.parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"):
            try self.expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try self.expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try self.expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try self.parseNumber()
        default:
            throw self.error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error("unexpected end of input") }
        let matches = literal.withUTF8Buffer { literalBytes in
            literalBytes.elementsEqual(self.bytes[self.index..<(self.index + count)])
        }
        guard matches else { throw self.error("invalid literal") }
        self.index += count
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        self.index += 1
        var members: [(key: String, value: JSONValue)] = []
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                throw self.error("expected a string key")
            }
            let key = try self.parseString()
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else {
                throw self.error("expected ':'")
            }
            self.index += 1
            self.skipWhitespace()
            let value = try self.parseValue(depth: depth + 1)
            members.append((key: key, value: value))
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
                continue
            }
            if self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            }
            throw self.error("expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        self.index += 1
        var elements: [JSONValue] = []
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            return .array(elements)
        }
        while true {
            self.skipWhitespace()
            elements.append(try self.parseValue(depth: depth + 1))
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
                continue
            }
            if self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(elements)
            }
            throw self.error("expected ',' or ']'")
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = self.bytes[self.index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw self.error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            self.index += 1
        }
        return value
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        self.index += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = self.index
        func flushRun(_ end: Int) {
            if end > runStart {
                scalars.append(contentsOf: String(decoding: self.bytes[runStart..<end], as: UTF8.self).unicodeScalars)
            }
        }
        while true {
            guard self.index < self.bytes.count else { throw self.error("unterminated string") }
            let c = self.bytes[self.index]
            if c == UInt8(ascii: "\"") {
                flushRun(self.index)
                self.index += 1
                return String(scalars)
            }
            if c < 0x20 {
                throw self.error("control character in string")
            }
            if c == UInt8(ascii: "\\") {
                flushRun(self.index)
                self.index += 1
                guard self.index < self.bytes.count else { throw self.error("unterminated escape") }
                let e = self.bytes[self.index]
                self.index += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    let first = try self.parseHex4()
                    if (0xD800...0xDBFF).contains(first) {
                        // A high surrogate must be followed by an escaped low surrogate; Go replaces a
                        // lone surrogate with U+FFFD, and so do we.
                        if self.index + 6 <= self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        {
                            let save = self.index
                            self.index += 2
                            let second = try self.parseHex4()
                            if (0xDC00...0xDFFF).contains(second) {
                                let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                                scalars.append(Unicode.Scalar(combined) ?? "\u{FFFD}")
                            } else {
                                scalars.append("\u{FFFD}")
                                self.index = save
                            }
                        } else {
                            scalars.append("\u{FFFD}")
                        }
                    } else {
                        scalars.append(Unicode.Scalar(first) ?? "\u{FFFD}")
                    }
                default:
                    throw self.error("invalid escape")
                }
                runStart = self.index
                continue
            }
            self.index += 1
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = self.index
        var isInteger = true
        if self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count else { throw self.error("truncated number") }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
        } else if (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(self.bytes[self.index]) {
            while self.index < self.bytes.count,
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index])
            {
                self.index += 1
            }
        } else {
            throw self.error("invalid number")
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            isInteger = false
            self.index += 1
            let digitsStart = self.index
            while self.index < self.bytes.count,
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index])
            {
                self.index += 1
            }
            guard self.index > digitsStart else { throw self.error("invalid fraction") }
        }
        if self.index < self.bytes.count,
            self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E")
        {
            isInteger = false
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            let digitsStart = self.index
            while self.index < self.bytes.count,
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index])
            {
                self.index += 1
            }
            guard self.index > digitsStart else { throw self.error("invalid exponent") }
        }
        let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        if isInteger, let i = Int64(text) {
            return .integer(i)
        }
        // Double("1e999") is infinity, which JSON cannot write back: refused, as Go's encoding/json does
        // (found by FuzzPayloadJSON: a payload changed when re-serialised, infinity becoming null).
        guard let d = Double(text), d.isFinite else { throw self.error("number out of range") }
        return .double(d)
    }
}
