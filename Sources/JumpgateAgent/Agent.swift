import JumpgateWire
import Logging

/// The agent (`jumpgate agent`): registration, control channel, port sessions.
/// Built in the P1 Agent issue; this module holds what exists so far.
public enum Agent {
    /// The AgentVersion sent in HandshakeRequest and on the control channel.
    public static let version = JumpgateVersion.agentProtocolVersion
}
