/// The `MessageType` header field: up to 32 ASCII characters, space-padded on the wire.
public struct MessageType: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Creates a message type. Returns nil if the name is empty, longer than 32 bytes or not printable ASCII.
    public init?(_ rawValue: String) {
        guard !rawValue.isEmpty, rawValue.utf8.count <= 32,
            rawValue.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else { return nil }
        self.rawValue = rawValue
    }

    private init(known rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { self.rawValue }

    public static let inputStreamData = MessageType(known: "input_stream_data")
    public static let outputStreamData = MessageType(known: "output_stream_data")
    public static let acknowledge = MessageType(known: "acknowledge")
    public static let channelClosed = MessageType(known: "channel_closed")
    public static let startPublication = MessageType(known: "start_publication")
    public static let pausePublication = MessageType(known: "pause_publication")
    public static let agentSessionState = MessageType(known: "agent_session_state")
    public static let interactiveShell = MessageType(known: "interactive_shell")
    public static let agentTaskComplete = MessageType(known: "agent_task_complete")
    public static let agentTaskAcknowledge = MessageType(known: "agent_task_acknowledge")
    public static let agentTaskReply = MessageType(known: "agent_task_reply")
    public static let agentJob = MessageType(known: "agent_job")
    public static let agentJobAcknowledge = MessageType(known: "agent_job_ack")
    public static let agentJobReply = MessageType(known: "agent_job_reply")
    public static let agentJobReplyAck = MessageType(known: "agent_job_reply_ack")
    public static let agentTelemetry = MessageType(known: "agent_telemetry")
    /// Jumpgate's own, gateway to Jumpgate clients only: see ``AgentStatusPayload``.
    public static let jumpgateAgentStatus = MessageType(known: "jumpgate_agent_status")

    /// The types the codec recognises without allocating a new string.
    static let known: [MessageType] = [
        .inputStreamData, .outputStreamData, .acknowledge, .channelClosed, .startPublication, .pausePublication,
        .agentSessionState, .interactiveShell, .agentTaskComplete, .agentTaskAcknowledge, .agentTaskReply,
        .agentJob, .agentJobAcknowledge, .agentJobReply, .agentJobReplyAck, .agentTelemetry, .jumpgateAgentStatus,
    ]

    /// Whether this type carries a stream sequence number (and so is acknowledged and retransmitted).
    public var isStreamData: Bool {
        self == .inputStreamData || self == .outputStreamData
    }
}
