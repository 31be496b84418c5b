/// Version strings as the official peers compare them (spec §7.3).
public enum SSMVersion {
    /// The numeric components of a version, or nil if any component is not a non-negative integer.
    public static func components(_ version: String) -> [UInt64]? {
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard !parts.isEmpty else { return nil }
        var result: [UInt64] = []
        for part in parts {
            guard !part.isEmpty, part.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = UInt64(part) else {
                return nil
            }
            result.append(value)
        }
        return result
    }

    /// The official plugin's rule: both versions must have the same number of numeric components,
    /// otherwise the feature counts as unsupported (false). True when `version` is strictly greater.
    public static func pluginIsGreater(_ version: String, than baseline: String) -> Bool {
        guard let a = components(version), let b = components(baseline), a.count == b.count else { return false }
        return a.lexicographicallyPrecedes(b) == false && a != b
    }

    /// The official agent's comparison: numeric components, a missing trailing component counts lower.
    /// Returns -1, 0 or 1; a version that is not numeric compares lower than any numeric one.
    public static func agentCompare(_ version: String, _ baseline: String) -> Int {
        guard let a = components(version) else { return components(baseline) == nil ? 0 : -1 }
        guard let b = components(baseline) else { return 1 }
        for (x, y) in zip(a, b) where x != y {
            return x < y ? -1 : 1
        }
        if a.count == b.count { return 0 }
        return a.count < b.count ? -1 : 1
    }

    // Thresholds from the official sources (spec §7.3).
    /// The plugin uses smux only with an agent above this version.
    public static let muxSupportedAfterAgentVersion = "3.0.196.0"
    /// The plugin turns smux keepalive off with an agent above this version.
    public static let keepAliveDisabledAfterAgentVersion = "3.1.1511.0"
    /// The agent uses smux with a client at or above this version.
    public static let muxSupportedFromClientVersion = "1.1.70"
    /// The agent turns smux keepalive off with a client above this version.
    public static let keepAliveDisabledAfterClientVersion = "1.2.331.0"
    /// awscli passes the StartSession response in an environment variable to plugins above this version.
    public static let environmentModeAfterPluginVersion = "1.2.497.0"
}
