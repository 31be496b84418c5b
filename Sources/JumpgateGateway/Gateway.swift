import JumpgateWire
import Logging

/// The gateway (`jumpgate server`): SSM API, agent registration, control and data channels.
/// Built in the P1 Gateway issue; this module holds what exists so far.
public enum Gateway {
    /// Logger metadata keys, namespaced so they never collide with other libraries'.
    public enum MetadataKey {
        public static let sessionID = "jumpgate.session_id"
        public static let instanceID = "jumpgate.instance_id"
        public static let streamID = "jumpgate.stream_id"
    }
}
