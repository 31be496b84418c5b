import JumpgateWire

/// The dates of `Date...` conditions and `aws:CurrentTime`: ISO 8601 (`2026-12-02`, `2026-12-02T16:35:43Z`,
/// with fractions of a second or a `+01:00` offset) or epoch seconds, as seconds since 1970 (UTC).
public enum IAMDate {
    public static func epochSeconds(_ text: String) -> Double? {
        if let seconds = Double(text), text.allSatisfy({ $0.isNumber || $0 == "." }) { return seconds }
        let bytes = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = digits(0..<4), bytes.count >= 10, bytes[4] == UInt8(ascii: "-"),
            bytes[7] == UInt8(ascii: "-"), let month = digits(5..<7), let day = digits(8..<10),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var seconds = Double(SigV4.days(fromCivil: Int64(year), Int64(month), Int64(day))) * 86400
        if bytes.count == 10 { return seconds }
        guard bytes.count >= 19, bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"), let hour = digits(11..<13),
            let minute = digits(14..<16), let second = digits(17..<19), hour < 24, minute < 60, second <= 60
        else { return nil }
        seconds += Double(hour * 3600 + minute * 60 + second)
        var index = 19
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                seconds += Double(bytes[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
        }
        let zone = Array(bytes[index...])
        if zone == Array("Z".utf8) || zone == Array("z".utf8) { return seconds }
        guard zone.count == 6, zone[0] == UInt8(ascii: "+") || zone[0] == UInt8(ascii: "-"),
            zone[3] == UInt8(ascii: ":"), let hours = digits((index + 1)..<(index + 3)),
            let minutes = digits((index + 4)..<(index + 6))
        else { return nil }
        let offset = Double(hours * 3600 + minutes * 60)
        return zone[0] == UInt8(ascii: "+") ? seconds - offset : seconds + offset
    }
}
