/// Version strings Jumpgate reports. The protocol versions are 4-part numeric so the official peers'
/// version rules (spec §7.3) pick mux mode and turn smux keepalive off.
public enum JumpgateVersion {
    /// The product version.
    public static let product = "0.1.0"
    /// What the Jumpgate agent reports as AgentVersion: above 3.1.1511.0.
    public static let agentProtocolVersion = "3.3.1802.0"
    /// What the Jumpgate client and session-manager-plugin report, with that release's protocol behaviour:
    /// at least 1.2.764.0, awscli's recommended minimum (below it the AWS CLI warns "outdated"); it signs
    /// the data channel's upgrade (1.2.764.0) and resumes on ResumeSession's new StreamUrl (1.2.835.0).
    /// The official agent's rules (mux above 1.1.70, no smux keepalive above 1.2.331.0) hold for it.
    public static let clientProtocolVersion = "1.2.835.0"
}
