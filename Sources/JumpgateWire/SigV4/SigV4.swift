import Crypto

/// AWS credentials: an access key id and its secret (and a session token for temporary credentials).
public struct AWSCredentials: Hashable, Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// Never prints the secret.
    public var description: String { "AWSCredentials(\(self.accessKeyID), secret redacted)" }
}

/// The parts of an HTTP request that Signature Version 4 covers.
public struct SigV4Request: Sendable {
    public var method: String
    /// The path as sent on the wire (still percent-encoded), e.g. `/` or `/v1/data-channel/s-1`.
    public var path: String
    /// The raw query string, without `?`.
    public var query: String
    /// Header names in any case; repeated names are allowed.
    public var headers: [(name: String, value: String)]
    /// Lowercase hex SHA-256 of the body.
    public var payloadHash: String

    public init(
        method: String,
        path: String,
        query: String = "",
        headers: [(name: String, value: String)],
        body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadHash = SigV4.hexSHA256(body)
    }

    public init(
        method: String,
        path: String,
        query: String = "",
        headers: [(name: String, value: String)],
        payloadHash: String
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadHash = payloadHash
    }

    public func headerValues(_ name: String) -> [String] {
        let lower = name.lowercased()
        return self.headers.filter { $0.name.lowercased() == lower }.map(\.value)
    }
}

/// Signature Version 4 (AWS4-HMAC-SHA256): signing and verification, header and presigned forms,
/// canonicalised the way botocore and the Go SDK do it.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// Headers never signed (botocore's list).
    static let unsignedHeaders: Set<String> = [
        "authorization", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    ]

    public static func hexSHA256<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        hex(SHA256.hash(data: Array(bytes)))
    }

    static func hex<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        Hex.encode(bytes)
    }

    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    static func signingKey(secret: String, date: String, region: String, service: String) -> [UInt8] {
        let kDate = hmac(Array("AWS4\(secret)".utf8), date)
        let kRegion = hmac(kDate, region)
        let kService = hmac(kRegion, service)
        return hmac(kService, "aws4_request")
    }

    /// Percent-encodes everything but the unreserved characters (and `/` when `keepSlash`).
    static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func percentDecode(_ s: Substring) -> String {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2,
                let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16)
            {
                out.append(value)
                bytes = bytes.dropFirst(2)
            } else if b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Removes `.` and `..` segments (RFC 3986 §5.2.4), as botocore does before encoding.
    static func removeDotSegments(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        var output: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        for segment in segments.dropFirst() {
            if segment == "." { continue }
            if segment == ".." {
                if !output.isEmpty { output.removeLast() }
                continue
            }
            output.append(segment)
        }
        var result = "/" + output.joined(separator: "/")
        if (path.hasSuffix("/.") || path.hasSuffix("/..")) && !result.hasSuffix("/") { result += "/" }
        return result
    }

    static func canonicalURI(_ path: String) -> String {
        uriEncode(removeDotSegments(path.isEmpty ? "/" : path), keepSlash: true)
    }

    /// Decoded (name, value) pairs of a raw query string.
    public static func queryItems(_ query: String) -> [(name: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            if let eq = pair.firstIndex(of: "=") {
                return (percentDecode(pair[..<eq]), percentDecode(pair[pair.index(after: eq)...]))
            }
            return (percentDecode(pair), "")
        }
    }

    static func canonicalQuery(_ items: [(name: String, value: String)]) -> String {
        items.map { (uriEncode($0.name, keepSlash: false), uriEncode($0.value, keepSlash: false)) }
            .sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    static func trimAll(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }

    /// The canonical headers block and the signed-headers list for `names` (lowercase).
    static func canonicalHeaders(_ request: SigV4Request, names: [String]) -> String {
        names.map { name in
            "\(name):" + request.headerValues(name).map(trimAll).joined(separator: ",")
        }.joined(separator: "\n")
    }

    static func canonicalRequest(
        _ request: SigV4Request,
        queryItems: [(name: String, value: String)],
        signedHeaders: [String],
        payloadHash: String
    ) -> String {
        [
            request.method.uppercased(),
            canonicalURI(request.path),
            canonicalQuery(queryItems),
            canonicalHeaders(request, names: signedHeaders) + "\n",
            signedHeaders.joined(separator: ";"),
            payloadHash,
        ].joined(separator: "\n")
    }

    static func stringToSign(timestamp: String, scope: String, canonicalRequest: String) -> String {
        [algorithm, timestamp, scope, hexSHA256(canonicalRequest.utf8)].joined(separator: "\n")
    }

    /// `YYYYMMDDTHHMMSSZ` for seconds since the epoch.
    public static func timestamp(epochSeconds: Int64) -> String {
        // Years 0000 to 9999 (the format's four digits): a date from elsewhere (a gateway's answer) outside
        // them is shown at the nearest end, where the arithmetic below would overflow near Int64's ends.
        let epochSeconds = min(max(epochSeconds, -62_167_219_200), 253_402_300_799)
        let days = epochSeconds >= 0 ? epochSeconds / 86400 : (epochSeconds - 86399) / 86400
        let secondsOfDay = epochSeconds - days * 86400
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return pad(y, 4) + pad(m, 2) + pad(d, 2) + "T" + pad(secondsOfDay / 3600, 2) + pad(secondsOfDay / 60 % 60, 2)
            + pad(secondsOfDay % 60, 2) + "Z"
    }

    /// Parses `YYYYMMDDTHHMMSSZ`.
    public static func epochSeconds(timestamp: String) -> Int64? {
        let bytes = Array(timestamp.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            guard bytes[range].allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return Int64(String(decoding: bytes[range], as: UTF8.self))
        }
        guard let y = number(0..<4), let m = number(4..<6), let d = number(6..<8), let hh = number(9..<11),
            let mm = number(11..<13), let ss = number(13..<15), (1...12).contains(m), (1...31).contains(d), hh < 24,
            mm < 60, ss < 61
        else { return nil }
        return days(fromCivil: y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil-date algorithms; also
    /// what policies' dates use).
    public static func days(fromCivil y: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y - 1 : y
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(fromDays z: Int64) -> (Int64, Int64, Int64) {
        let z = z + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Compares without an early exit, so timing does not reveal how much of a signature matched.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return difference == 0
    }
}
