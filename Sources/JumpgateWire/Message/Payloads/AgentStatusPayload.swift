import NIOCore

/// Gateway to a Jumpgate client (one that asked for it with `JumpgateFeatures: agent-status` in its
/// OpenDataChannelInput), message type ``MessageType/jumpgateAgentStatus``: the session's agent went
/// away or came back. Official clients never receive it. `{"Status":"Lost","Reason":"...","Seconds":120}`,
/// where `Seconds` is how long the gateway waits for the agent before it ends the session.
public struct AgentStatusPayload: Hashable, Sendable {
    public enum Status: String, Sendable {
        case lost = "Lost"
        case back = "Back"
    }

    public var status: Status
    public var reason: String
    public var seconds: Int64?

    public static let maximumReasonLength = 512

    public init(status: Status, reason: String, seconds: Int64? = nil) {
        self.status = status
        self.reason = String(reason.prefix(Self.maximumReasonLength))
        self.seconds = seconds
    }

    public init(payload: ByteBuffer) throws(WireError) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: payload.readableBytesView)
        } catch {
            throw WireError(.invalidPayload, "agent status payload is not JSON")
        }
        guard let text = json["Status"]?.stringValue, let status = Status(rawValue: text) else {
            throw WireError(.invalidPayload, "agent status payload lacks a known Status")
        }
        self.init(status: status, reason: json["Reason"]?.stringValue ?? "", seconds: json["Seconds"]?.int64Value)
    }

    public func encoded() -> ByteBuffer {
        var members: [(key: String, value: JSONValue)] = [
            ("Status", .string(self.status.rawValue)), ("Reason", .string(self.reason)),
        ]
        if let seconds = self.seconds { members.append(("Seconds", .integer(seconds))) }
        return ByteBuffer(bytes: JSONValue.object(members).serializedBytes())
    }
}
