/// ISO 8601 times as people and AWS write them, parsed strictly and without Foundation: a date alone
/// (`2026-12-31`, midnight UTC) or a date and time with a zone (`2026-12-31T18:00:00Z`, `...+02:00`,
/// `...+0200`, `...+02`), optionally with fractional seconds (`18:00:00.250Z`: the second it falls in).
/// Every field must be in range: no 25:00, 23:60, leap seconds, February 30th or offsets past a day
/// (FoundationEssentials' parser rolls those over to another time), and no time without a zone or with a
/// space for the `T` (which it read as the date's midnight).
public enum ISO8601Time {
    /// The epoch second, or nil when `text` is not such a time.
    public static func epochSeconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + count)] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func byte(_ index: Int, is character: Unicode.Scalar) -> Bool {
            index < bytes.count && bytes[index] == UInt8(ascii: character)
        }
        guard let year = digits(0, 4), byte(4, is: "-"), let month = digits(5, 2), byte(7, is: "-"),
            let day = digits(8, 2), (1...12).contains(month), (1...Self.days(inMonth: month, of: year)).contains(day)
        else { return nil }
        let midnight = Self.daysSinceEpoch(year: year, month: month, day: day) * 86_400
        if bytes.count == 10 { return Int64(midnight) }
        guard byte(10, is: "T"), let hour = digits(11, 2), byte(13, is: ":"), let minute = digits(14, 2),
            byte(16, is: ":"), let second = digits(17, 2), hour < 24, minute < 60, second < 60
        else { return nil }
        var index = 19
        if byte(index, is: ".") {
            index += 1
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                index += 1
            }
            guard index > start else { return nil }
        }
        guard let offset = Self.zoneOffset(bytes[index...]) else { return nil }
        return Int64(midnight + hour * 3600 + minute * 60 + second - offset)
    }

    /// `Z`, `+HH:MM`, `+HHMM` or `+HH` (or with `-`), in seconds east of UTC; nil for anything else.
    static func zoneOffset(_ zone: ArraySlice<UInt8>) -> Int? {
        let zone = Array(zone)
        if zone == [UInt8(ascii: "Z")] { return 0 }
        guard let sign = zone.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { return nil }
        var text = Array(zone.dropFirst())
        if text.count == 5, text[2] == UInt8(ascii: ":") { text.remove(at: 2) }
        guard text.count == 2 || text.count == 4,
            text.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        let number = text.map { Int($0 - UInt8(ascii: "0")) }
        let hours = number[0] * 10 + number[1]
        let minutes = text.count == 4 ? number[2] * 10 + number[3] : 0
        guard hours < 24, minutes < 60 else { return nil }
        return (sign == UInt8(ascii: "-") ? -1 : 1) * (hours * 3600 + minutes * 60)
    }

    static func days(inMonth month: Int, of year: Int) -> Int {
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let shifted = month <= 2 ? year - 1 : year
        let era = (shifted >= 0 ? shifted : shifted - 399) / 400
        let yearOfEra = shifted - era * 400
        let dayOfYear = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
