import JumpgateWire

/// The dates of `Date...` conditions and `aws:CurrentTime`, as seconds since 1970 (UTC): the W3C profile of
/// ISO 8601 (`2026`, `2026-12`, `2026-12-02`, `2026-12-02T16:35Z`, `2026-12-02T16:35:43Z`, with fractions
/// of a second, or an offset such as `+01:00`), or epoch seconds (more than four digits).
public enum IAMDate {
    public static func epochSeconds(_ text: String) -> Double? {
        let scalars = Array(text.unicodeScalars)
        let isDigit = { (scalar: Unicode.Scalar) in ("0"..."9").contains(scalar) }
        if scalars.count > 4, scalars.allSatisfy(isDigit) { return Double(text) }
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= scalars.count else { return nil }
            var value = 0
            for scalar in scalars[range] {
                guard isDigit(scalar) else { return nil }
                value = value * 10 + Int(scalar.value - 48)
            }
            return value
        }
        func character(_ index: Int, _ expected: Unicode.Scalar) -> Bool {
            index < scalars.count && scalars[index] == expected
        }
        guard let year = digits(0..<4) else { return nil }
        var (month, day) = (1, 1)
        var index = 4
        if character(4, "-") {
            guard let m = digits(5..<7), (1...12).contains(m) else { return nil }
            month = m
            index = 7
            if character(7, "-") {
                guard let d = digits(8..<10), (1...ISO8601Time.days(inMonth: m, of: year)).contains(d) else {
                    return nil
                }
                day = d
                index = 10
            }
        }
        var seconds = Double(SigV4.days(fromCivil: Int64(year), Int64(month), Int64(day))) * 86400
        if index == scalars.count { return seconds }
        // A time needs a full date, hours and minutes, and a zone.
        guard index == 10, character(10, "T") || character(10, "t"), character(13, ":"),
            let hour = digits(11..<13), let minute = digits(14..<16), hour < 24, minute < 60
        else { return nil }
        seconds += Double(hour * 3600 + minute * 60)
        index = 16
        if character(16, ":") {
            guard let second = digits(17..<19), second <= 60 else { return nil }
            seconds += Double(second)
            index = 19
            if character(19, ".") {
                // The fraction as an integer count of its digits, divided once.
                var fraction = 0
                var count = 0
                index = 20
                while index < scalars.count, isDigit(scalars[index]), count < 9 {
                    fraction = fraction * 10 + Int(scalars[index].value - 48)
                    count += 1
                    index += 1
                }
                while index < scalars.count, isDigit(scalars[index]) { index += 1 }
                guard count > 0 else { return nil }
                var scale = 1.0
                for _ in 0..<count { scale *= 10 }
                seconds += Double(fraction) / scale
            }
        }
        let zone = Array(scalars[index...])
        if zone == ["Z"] || zone == ["z"] { return seconds }
        guard zone.count == 6, zone[0] == "+" || zone[0] == "-", zone[3] == ":",
            let hours = digits((index + 1)..<(index + 3)), let minutes = digits((index + 4)..<(index + 6)),
            hours < 24, minutes < 60
        else { return nil }
        let offset = Double(hours * 3600 + minutes * 60)
        return zone[0] == "+" ? seconds - offset : seconds + offset
    }

}
