/// The agent's own forwarding policy: `--allow` and `--deny` patterns of the form `HOST:PORTS`, checked
/// against every resolved address of a destination (never just the host string), so a compromised
/// gateway cannot make the agent pivot.
///
/// HOST is an IPv4/IPv6 address (IPv6 in brackets), a CIDR block, a DNS name, a `*.suffix` wildcard or
/// `*`; PORTS is a port, a range `a-b` or `*`. Deny wins over allow. Link-local addresses
/// (169.254.0.0/16, fe80::/10) and the cloud metadata addresses are always refused, and loopback only
/// passes when a pattern names it explicitly (not through `*`).
public struct AllowList: Sendable, Hashable {
    public struct Pattern: Sendable, Hashable, CustomStringConvertible {
        enum Host: Sendable, Hashable {
            case any
            case network([UInt8], prefix: Int)
            case name(String)
            case suffix(String)
        }

        let host: Host
        let ports: ClosedRange<Int>
        public let description: String

        /// Parses `HOST:PORTS`.
        public init(_ text: String) throws(WireError) {
            self.description = text
            guard let colon = text.lastIndex(of: ":") else {
                throw WireError(
                    .invalidPayload,
                    "'\(text)' must be HOST:PORTS, for example 127.0.0.1:5432 or '*.vpc.internal:443'"
                )
            }
            var hostText = String(text[..<colon])
            let portText = text[text.index(after: colon)...]
            if portText == "*" {
                self.ports = 1...65535
            } else if let dash = portText.firstIndex(of: "-") {
                guard let low = Int(portText[..<dash]), let high = Int(portText[portText.index(after: dash)...]),
                    (1...65535).contains(low), (low...65535).contains(high)
                else {
                    throw WireError(.invalidPayload, "'\(text)': the port range must be a-b with 1 <= a <= b <= 65535")
                }
                self.ports = low...high
            } else {
                guard let port = Int(portText), (1...65535).contains(port) else {
                    throw WireError(.invalidPayload, "'\(text)': the port must be 1-65535, a range a-b, or *")
                }
                self.ports = port...port
            }
            if hostText.hasPrefix("["), hostText.hasSuffix("]") { hostText = String(hostText.dropFirst().dropLast()) }
            if hostText == "*" {
                self.host = .any
            } else if hostText.hasPrefix("*.") {
                self.host = .suffix(String(hostText.dropFirst(1)).lowercased())
            } else if let slash = hostText.firstIndex(of: "/") {
                guard let bytes = IPAddressBytes.parse(String(hostText[..<slash])),
                    let prefix = Int(hostText[hostText.index(after: slash)...]),
                    (0...(bytes.count * 8)).contains(prefix)
                else { throw WireError(.invalidPayload, "'\(text)': '\(hostText)' is not a valid CIDR block") }
                self.host = .network(bytes, prefix: prefix)
            } else if let bytes = IPAddressBytes.parse(hostText) {
                self.host = .network(bytes, prefix: bytes.count * 8)
            } else {
                guard !hostText.isEmpty, !hostText.contains("*") else {
                    throw WireError(
                        .invalidPayload,
                        "'\(text)': '\(hostText)' is not an address, CIDR block, name or *.suffix"
                    )
                }
                self.host = .name(hostText.lowercased())
            }
        }

        func matches(name: String, address: [UInt8], port: Int) -> Bool {
            guard self.ports.contains(port) else { return false }
            switch self.host {
            case .any: return true
            case .name(let n): return name.lowercased() == n
            case .suffix(let s): return name.lowercased().hasSuffix(s)
            case .network(let network, let prefix):
                return AllowList.contains(network: network, prefix: prefix, address: address)
            }
        }

        /// Whether this pattern names loopback explicitly (an address or block inside it, or localhost).
        func namesLoopback(address: [UInt8], name: String) -> Bool {
            switch self.host {
            case .network(let network, let prefix):
                return AllowList.contains(network: network, prefix: prefix, address: address)
            case .name(let n): return n == "localhost" || n == name.lowercased()
            default: return false
            }
        }
    }

    public var allow: [Pattern]
    public var deny: [Pattern]

    public init(allow: [String], deny: [String] = []) throws(WireError) {
        var parsedAllow: [Pattern] = []
        for text in allow { parsedAllow.append(try Pattern(text)) }
        var parsedDeny: [Pattern] = []
        for text in deny { parsedDeny.append(try Pattern(text)) }
        self.allow = parsedAllow
        self.deny = parsedDeny
    }

    /// Addresses refused whatever the patterns say: link-local and the metadata services (spec §8.3).
    static let alwaysDenied: [([UInt8], Int)] = [
        ([169, 254, 0, 0], 16), ([0xFE, 0x80] + Array(repeating: 0, count: 14), 10),
        (IPAddressBytes.parse("fd00:ec2::254")!, 128), (IPAddressBytes.parse("fd00:ec2::253")!, 128),
        (IPAddressBytes.parse("fd00:ec2::123")!, 128), (IPAddressBytes.parse("fd00:ec2::240")!, 128),
    ]

    /// The decision for connecting to `address` (the resolved bytes, 4 or 16) for the destination `name`.
    /// Returns nil when allowed, else the reason.
    public func refusal(name: String, address: [UInt8], port: Int) -> String? {
        let address = Self.unmapped(address)
        let shown = Self.format(address)
        for (network, prefix) in Self.alwaysDenied
        where Self.contains(network: network, prefix: prefix, address: address) {
            return "Forwarding to IP address \(shown) is forbidden (link-local or metadata address)."
        }
        if let rule = self.deny.first(where: { $0.matches(name: name, address: address, port: port) }) {
            return "\(name):\(port) (\(shown)) is denied by --deny \(rule)."
        }
        let matching = self.allow.filter { $0.matches(name: name, address: address, port: port) }
        guard !matching.isEmpty else {
            return "\(name):\(port) (\(shown)) is not in this agent's allow-list."
        }
        if Self.isLoopback(address), !matching.contains(where: { $0.namesLoopback(address: address, name: name) }) {
            return "\(name):\(port) is a loopback address; allow it explicitly (for example --allow 127.0.0.1:\(port))."
        }
        return nil
    }

    static func contains(network: [UInt8], prefix: Int, address: [UInt8]) -> Bool {
        let address = unmapped(address)
        let network = unmapped(network)
        let prefix = network.count == 4 && prefix > 32 ? prefix - 96 : prefix
        guard network.count == address.count else { return false }
        var remaining = prefix
        for i in 0..<network.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if network[i] & mask != address[i] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d.
    static func unmapped(_ address: [UInt8]) -> [UInt8] {
        if address.count == 16, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF {
            return Array(address[12..<16])
        }
        return address
    }

    static func isLoopback(_ address: [UInt8]) -> Bool {
        (address.count == 4 && address[0] == 127) || address == Array(repeating: 0, count: 15) + [1]
    }

    static func format(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map {
            String(UInt16(address[$0]) << 8 | UInt16(address[$0 + 1]), radix: 16)
        }.joined(separator: ":")
    }
}
