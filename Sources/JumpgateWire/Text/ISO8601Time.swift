/// ISO 8601 times as people and AWS write them (RFC 3339), parsed strictly and without Foundation: a date
/// alone (`2026-12-31`, midnight UTC) or a date and time with a zone (`2026-12-31T18:00:00Z`, `...+02:00`,
/// `...+0200`, `...+02`), with `T` or a space (`t` and `z` in lower case too), seconds optional, and a
/// fraction after `.` or `,` (the second it falls in). Every field must be in range: no 25:00, 23:60, leap
/// seconds, February 30th or offsets past a day (FoundationEssentials' parser rolls those over to another
/// time), and no time without a zone (FoundationEssentials read that as the date's midnight).
public enum ISO8601Time {
    /// The epoch second, or nil when `text` is not such a time.
    public static func epochSeconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + count)] {
                guard Self.isDigit(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func byte(_ index: Int, in characters: String) -> Bool {
            index < bytes.count && characters.utf8.contains(bytes[index])
        }
        guard let year = digits(0, 4), byte(4, in: "-"), let month = digits(5, 2), byte(7, in: "-"),
            let day = digits(8, 2), (1...12).contains(month), (1...Self.days(inMonth: month, of: year)).contains(day)
        else { return nil }
        let midnight = SigV4.days(fromCivil: Int64(year), Int64(month), Int64(day)) * 86_400
        if bytes.count == 10 { return midnight }
        guard byte(10, in: "Tt "), let hour = digits(11, 2), byte(13, in: ":"), let minute = digits(14, 2),
            hour < 24, minute < 60
        else { return nil }
        var index = 16
        var second = 0
        if byte(16, in: ":") {
            guard let value = digits(17, 2), value < 60 else { return nil }
            second = value
            index = 19
            if byte(19, in: ".,") {
                index += 1
                let start = index
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
                guard index > start else { return nil }
            }
        }
        guard let offset = Self.zoneOffset(bytes[index...]) else { return nil }
        return midnight + Int64(hour * 3600 + minute * 60 + second - offset)
    }

    /// `Z`, `+HH:MM`, `+HHMM` or `+HH` (or with `-`), in seconds east of UTC; nil for anything else.
    static func zoneOffset(_ zone: ArraySlice<UInt8>) -> Int? {
        var zone = Array(zone)
        if zone == [UInt8(ascii: "Z")] || zone == [UInt8(ascii: "z")] { return 0 }
        guard let sign = zone.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { return nil }
        zone.removeFirst()
        if zone.count == 5, zone[2] == UInt8(ascii: ":") { zone.remove(at: 2) }
        guard zone.count == 2 || zone.count == 4, zone.allSatisfy(Self.isDigit) else { return nil }
        let number = zone.map { Int($0 - UInt8(ascii: "0")) }
        let hours = number[0] * 10 + number[1]
        let minutes = zone.count == 4 ? number[2] * 10 + number[3] : 0
        guard hours < 24, minutes < 60 else { return nil }
        return (sign == UInt8(ascii: "-") ? -1 : 1) * (hours * 3600 + minutes * 60)
    }

    /// The days in `month` (1-12) of `year`, in the proleptic Gregorian calendar.
    public static func days(inMonth month: Int, of year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}
