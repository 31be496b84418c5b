/// Small text operations the modules need without Foundation's (which would load Foundation, ICU and
/// their data into every process: about 9 MiB of the three processes' idle memory, docs/PERFORMANCE.md).
extension StringProtocol {
    /// The text without the whitespace (spaces, tabs, line breaks: `Character.isWhitespace`) at its ends.
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
    /// value exactly halfway rounds away from zero (`fixed(2.25, 1)` is "2.3"; printf rounds the binary
    /// value to even).
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
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
