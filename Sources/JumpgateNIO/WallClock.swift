import FoundationEssentials
import JumpgateWire

enum SigV4Timestamp {
    static func format(_ seconds: Int64) -> String { SigV4.timestamp(epochSeconds: seconds) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time for CreatedDate fields and protocol timestamps (the wire library takes time as input).
public enum WallClock {
    /// Milliseconds since the Unix epoch.
    public static func nowMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Seconds since the Unix epoch.
    public static func nowSeconds() -> Int64 {
        Int64(nowMilliseconds() / 1000)
    }

    /// The epoch second of an ISO 8601 time as people and AWS write it: `2026-12-31T18:00:00Z` (or with an
    /// offset, `+02:00`), with fractional seconds (`2026-12-31T18:00:00.250Z`, the second it falls in), or a
    /// date alone (`2026-12-31`, midnight UTC). Nil for anything else.
    public static func parseISO8601(_ text: String) -> Int64? {
        guard Self.iso8601FieldsInRange(text) else { return nil }
        let date =
            (try? Date.ISO8601FormatStyle().parse(text))
            ?? (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().year().month().day().parse(text))
        return date.map { Int64(($0.timeIntervalSince1970).rounded(.down)) }
    }

    /// Whether the calendar and clock fields of an ISO 8601 text are in range: FoundationEssentials' parser
    /// takes `2026-12-31T25:00:00Z` as the next day's 01:00 and `2026-02-30` as March 2nd, where a date a
    /// person mistyped should be refused. Only the fields are checked here; the parser checks the shape.
    static func iso8601FieldsInRange(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        func number(at start: Int, digits: Int) -> Int? {
            guard start >= 0, start + digits <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + digits)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(at: 0, digits: 4), let month = number(at: 5, digits: 2),
            let day = number(at: 8, digits: 2), (1...12).contains(month)
        else { return bytes.count < 10 }  // not a date at all: the parser refuses it
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return false }
        guard bytes.count > 10 else { return true }
        guard let hour = number(at: 11, digits: 2), let minute = number(at: 14, digits: 2),
            let second = number(at: 17, digits: 2), hour < 24, minute < 60, second < 60
        else { return false }
        // A numeric offset (`+02:00`) at the end: within a day.
        if let sign = bytes.lastIndex(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }), sign > 18 {
            guard let hours = number(at: sign + 1, digits: 2), let minutes = number(at: sign + 4, digits: 2),
                hours < 24, minutes < 60
            else { return false }
        }
        return true
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` with milliseconds (`.250`) for events and logs, now.
    public static func iso8601Now() -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    public static func iso8601(epochSeconds: Int64) -> String {
        let s = Array(SigV4Timestamp.format(epochSeconds))
        return
            "\(String(s[0..<4]))-\(String(s[4..<6]))-\(String(s[6..<8]))T\(String(s[9..<11])):\(String(s[11..<13])):\(String(s[13..<15]))Z"
    }
}
