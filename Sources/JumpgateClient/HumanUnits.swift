import JumpgateWire

/// Byte counts for people: `0 B`, `812 B`, `1.5 KiB`, `24.0 MiB`, `3.21 GiB`.
public enum ByteCount {
    public static func text(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard bytes >= 1024 else { return "\(bytes) B" }
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let digits = value < 10 ? 2 : value < 100 ? 1 : 0
        return DecimalText.fixed(value, digits) + " " + units[unit]
    }
}

/// Durations as people type them: `90s`, `20m`, `8h`, or plain seconds.
public enum DurationText {
    /// The number of seconds, or nil if `text` is not a duration (negative, or over 68 years).
    public static func seconds(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(text)
        var unit: Int64 = 1
        if let last = text.last, let multiplier = units[last] {
            digits = digits.dropLast()
            unit = multiplier
        }
        guard let value = Int64(digits), value >= 0, value <= Int64(Int32.max) else { return nil }
        return value * unit
    }
}
