import JumpgateWire

/// Host names as policies compare them: lower case, no trailing dot, and an address literal in any
/// spelling (`127.1`, `2130706433`, `0x7f.0.0.1`, `::ffff:127.0.0.1`, `[::1]`) reduced to one form, so
/// `jumpgate:RemoteHost` cannot be dodged by writing the same address another way.
public enum HostName {
    public static func normalized(_ host: String) -> String {
        var text = host.lowercased()
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        while text.hasSuffix(".") { text.removeLast() }
        if let bytes = Self.addressBytes(text) { return Self.text(bytes) }
        return text
    }

    /// The address an address literal names (4 or 16 bytes; an IPv4-mapped IPv6 address gives its 4), or
    /// nil for anything else. IPv4 takes inet_aton's forms: 1 to 4 parts, each decimal, octal (0...) or
    /// hexadecimal (0x...), the last filling the remaining bytes.
    public static func addressBytes(_ text: String) -> [UInt8]? {
        var text = text
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if text.contains(":") {
            // A zone (`fe80::1%eth0`, `::1%lo`) names an interface, not another address.
            if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }
            guard let bytes = IPAddressBytes.parseIPv6(text) else { return nil }
            let mapped: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
            return Array(bytes.prefix(12)) == mapped ? Array(bytes.suffix(4)) : bytes
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else { return nil }
        var values: [UInt64] = []
        for part in parts {
            guard let value = Self.number(part) else { return nil }
            values.append(value)
        }
        let last = values.removeLast()
        guard values.allSatisfy({ $0 <= 255 }) else { return nil }
        let lastBytes = 4 - values.count
        guard last < (UInt64(1) << UInt64(8 * lastBytes)) else { return nil }
        let tail = (0..<lastBytes).reversed().map { UInt8((last >> UInt64(8 * $0)) & 0xFF) }
        return values.map { UInt8($0) } + tail
    }

    /// One part as inet_aton reads it (strtoul with base 0): `0x` then hex digits, `0` then octal
    /// digits, else decimal digits; any number of leading zeros, no sign; nil above 2^32 - 1.
    static func number(_ part: Substring) -> UInt64? {
        var digits = part
        var radix: UInt64 = 10
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
            radix = 16
            digits = digits.dropFirst(2)
        } else if digits.hasPrefix("0"), digits.count > 1 {
            radix = 8
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for character in digits {
            guard let digit = character.hexDigitValue, UInt64(digit) < radix else { return nil }
            value = value * radix + UInt64(digit)
            guard value <= UInt64(UInt32.max) else { return nil }
        }
        return value
    }

    /// Dotted quad, or RFC 5952 IPv6 (lower case, the longest run of two or more zero groups as `::`).
    public static func text(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        var (bestStart, bestLength, start) = (-1, 0, -1)
        for (index, group) in groups.enumerated() {
            if group == 0 {
                if start < 0 { start = index }
                if index - start + 1 > bestLength { (bestStart, bestLength) = (start, index - start + 1) }
            } else {
                start = -1
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestLength >= 2 else { return hex.joined(separator: ":") }
        let head = hex[..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
        return head + "::" + tail
    }
}

/// A CIDR block of `IpAddress` conditions (`10.0.0.0/8`, `2001:db8::/32`; a bare address is /32 or /128).
public struct CIDRBlock: Hashable, Sendable {
    public let bytes: [UInt8]
    public let prefix: Int

    public init?(_ text: String) {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), let bytes = IPAddressBytes.parse(String(pieces[0])) else { return nil }
        let bits = bytes.count * 8
        let prefix = pieces.count == 2 ? Int(pieces[1]) : bits
        guard let prefix, (0...bits).contains(prefix) else { return nil }
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it maps.
        let mapped: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
        if bytes.count == 16, prefix >= 96, Array(bytes.prefix(12)) == mapped {
            self.bytes = Array(bytes.suffix(4))
            self.prefix = prefix - 96
            return
        }
        self.bytes = bytes
        self.prefix = prefix
    }

    /// Whether the address (4 or 16 bytes; IPv4-mapped IPv6 counts as IPv4) is inside the block.
    public func contains(_ address: [UInt8]) -> Bool {
        var address = address
        let mapped: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
        if address.count == 16, self.bytes.count == 4, Array(address.prefix(12)) == mapped {
            address = Array(address.suffix(4))
        }
        guard address.count == self.bytes.count else { return false }
        var remaining = self.prefix
        for (a, b) in zip(address, self.bytes) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if a & mask != b & mask { return false }
            remaining -= 8
        }
        return true
    }
}
