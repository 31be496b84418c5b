/// Version strings Jumpgate reports. The protocol versions are 4-part numeric so the official peers'
/// version rules (spec §7.3) pick mux mode and turn smux keepalive off.
public enum JumpgateVersion {
    /// The product version.
    public static let product = "0.1.0"
    /// What the Jumpgate agent reports as AgentVersion: above 3.1.1511.0.
    public static let agentProtocolVersion = "3.3.1802.0"
    /// What the Jumpgate client and session-manager-plugin report: above 1.2.650.0.
    public static let clientProtocolVersion = "1.2.707.0"
}
