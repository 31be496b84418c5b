/// Small text operations the modules need without Foundation's (which would load Foundation, ICU and
/// their data into every process: about 9 MiB of the three processes' idle memory, docs/PERFORMANCE.md).
extension StringProtocol {
    /// The text without the whitespace at its ends: spaces, tabs and line breaks (`Character.isWhitespace`,
    /// Foundation's `.whitespacesAndNewlines`; a `\r` left by a CRLF line goes too).
    public func trimmingWhitespace() -> String {
        guard let first = self.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let last = self.lastIndex(where: { !$0.isWhitespace })!
        return String(self[first...last])
    }
}

extension String {
    /// The text cut or padded with spaces to exactly `length` characters (`NSString.padding(toLength:withPad:
    /// startingAt:)` with a space).
    public func padded(toLength length: Int) -> String {
        let count = self.count
        return count >= length ? String(self.prefix(length)) : self + String(repeating: " ", count: length - count)
    }
}

public enum DecimalText {
    /// `value` with `digits` decimals, as `String(format: "%.Nf")` writes it in the C locale, except that a
    /// value that looks halfway (`value` times 10^digits ends in .5 in floating point) rounds away from
    /// zero: `fixed(2.25, 1)` and `fixed(0.15, 1)` are "2.3" and "0.2", where printf, which rounds the exact
    /// binary value, says "2.2" and "0.1". For durations and sizes shown to people.
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        let digits = min(max(digits, 0), 18)
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        // Beyond Int64 (a duration of 10^18 s), or not finite: Swift's own form, rather than a trap.
        guard value.isFinite, (abs(value) * scale).rounded() < 9.0e18 else { return "\(value)" }
        let scaled = Int64((abs(value) * scale).rounded())
        let sign = value < 0 ? "-" : ""
        guard digits > 0 else { return sign + "\(scaled)" }
        let whole = scaled / Int64(scale)
        return sign + "\(whole)." + Self.zeroPadded(scaled % Int64(scale), width: digits)
    }

    /// `value` in decimal with leading zeros up to `width` characters (a minus sign counts), as `%0Nd`
    /// writes it.
    public static func zeroPadded(_ value: some BinaryInteger, width: Int) -> String {
        let sign = value < 0 ? "-" : ""
        let digits = String(value.magnitude)
        return sign + String(repeating: "0", count: max(0, width - sign.count - digits.count)) + digits
    }
}
