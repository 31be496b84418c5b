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

    /// The epoch second of an ISO 8601 time as people and AWS write it (``ISO8601Time``): `2026-12-31T18:00:00Z`
    /// (or with an offset, `+02:00`), with fractional seconds, or a date alone (midnight UTC). Nil for
    /// anything else, and for fields out of range.
    public static func parseISO8601(_ text: String) -> Int64? {
        ISO8601Time.epochSeconds(text)
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
