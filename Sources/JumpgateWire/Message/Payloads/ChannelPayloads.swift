import NIOCore

/// `channel_closed` (gateway to client or agent): the session is over; `output` is the reason to print.
public struct ChannelClosedPayload: SSMJSONPayload, Hashable {
    public var messageID: String
    public var createdDate: String
    public var destinationID: String
    public var sessionID: String
    public var messageType: String
    public var schemaVersion: Int64
    public var output: String

    public init(
        messageID: MessageID = .random(),
        createdDate: String,
        destinationID: String,
        sessionID: String,
        output: String
    ) {
        self.messageID = messageID.description
        self.createdDate = createdDate
        self.destinationID = destinationID
        self.sessionID = sessionID
        self.messageType = MessageType.channelClosed.rawValue
        self.schemaVersion = 1
        self.output = output
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "channel_closed")
        self.messageID = try f.optionalString("MessageId")
        self.createdDate = try f.optionalString("CreatedDate")
        self.destinationID = try f.optionalString("DestinationId")
        self.sessionID = try f.optionalString("SessionId")
        self.messageType = try f.optionalString("MessageType")
        self.schemaVersion = try f.optionalInt("SchemaVersion")
        self.output = try f.optionalString("Output")
    }

    public var json: JSONValue {
        [
            "MessageId": .string(self.messageID), "CreatedDate": .string(self.createdDate),
            "DestinationId": .string(self.destinationID), "SessionId": .string(self.sessionID),
            "MessageType": .string(self.messageType), "SchemaVersion": .integer(self.schemaVersion),
            "Output": .string(self.output),
        ]
    }
}

/// `agent_session_state` (agent to gateway on the data channel).
public struct AgentSessionStatePayload: SSMJSONPayload, Hashable {
    public var schemaVersion: Int64
    public var sessionState: String
    public var sessionID: String

    public init(sessionState: String, sessionID: String) {
        self.schemaVersion = 1
        self.sessionState = sessionState
        self.sessionID = sessionID
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "agent_session_state")
        self.schemaVersion = try f.optionalInt("SchemaVersion")
        self.sessionState = try f.string("SessionState")
        self.sessionID = try f.optionalString("SessionId")
    }

    public var json: JSONValue {
        [
            "SchemaVersion": .integer(self.schemaVersion), "SessionState": .string(self.sessionState),
            "SessionId": .string(self.sessionID),
        ]
    }
}

/// The value of a Flag payload (PayloadType 10): a 4-byte big-endian integer, not JSON (spec §7.6).
public struct FlagPayload: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let disconnectToPort = FlagPayload(rawValue: 1)
    public static let terminateSession = FlagPayload(rawValue: 2)
    public static let connectToPortError = FlagPayload(rawValue: 3)

    public init(payload: ByteBuffer) throws(WireError) {
        guard payload.readableBytes == 4, let value = payload.getInteger(at: payload.readerIndex, as: UInt32.self)
        else {
            throw WireError(.invalidPayload, "Flag payload is \(payload.readableBytes) bytes, expected 4")
        }
        self.rawValue = value
    }

    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4)
        buffer.writeInteger(self.rawValue)
        return buffer
    }

    public var name: String {
        switch self.rawValue {
        case 1: return "DisconnectToPort"
        case 2: return "TerminateSession"
        case 3: return "ConnectToPortError"
        default: return "Unknown(\(self.rawValue))"
        }
    }

    public var description: String { self.name }
}

/// Jumpgate fast path: the highest contiguous sequence number received, as an 8-byte big-endian payload
/// of an `acknowledge` message with PayloadType ``PayloadType/jumpgateCumulativeAck``.
public struct CumulativeAckPayload: Hashable, Sendable {
    public var highestContiguousSequenceNumber: Int64

    public init(highestContiguousSequenceNumber: Int64) {
        self.highestContiguousSequenceNumber = highestContiguousSequenceNumber
    }

    public init(payload: ByteBuffer) throws(WireError) {
        guard payload.readableBytes == 8, let value = payload.getInteger(at: payload.readerIndex, as: Int64.self) else {
            throw WireError(.invalidPayload, "cumulative acknowledgement is \(payload.readableBytes) bytes, expected 8")
        }
        self.highestContiguousSequenceNumber = value
    }

    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 8)
        buffer.writeInteger(self.highestContiguousSequenceNumber)
        return buffer
    }
}

/// Jumpgate fast path (`connect-errors`): why the agent could not connect a stream, for the client to
/// show (the official protocol only says that it failed). `{"StreamId":3,"Reason":"..."}`.
public struct ConnectErrorPayload: Hashable, Sendable {
    public var streamID: UInt32
    public var reason: String
    /// Longer reasons are cut: the text is for a person, and the message must stay small.
    public static let maximumReasonLength = 512

    public init(streamID: UInt32, reason: String) {
        self.streamID = streamID
        self.reason = String(reason.prefix(Self.maximumReasonLength))
    }

    public init(payload: ByteBuffer) throws(WireError) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: payload.readableBytesView)
        } catch {
            throw WireError(.invalidPayload, "connect error payload is not JSON")
        }
        guard let id = json["StreamId"]?.int64Value, let stream = UInt32(exactly: id),
            let reason = json["Reason"]?.stringValue
        else { throw WireError(.invalidPayload, "connect error payload lacks StreamId or Reason") }
        self.init(streamID: stream, reason: reason)
    }

    public func encoded() -> ByteBuffer {
        let json: JSONValue = ["StreamId": .integer(Int64(self.streamID)), "Reason": .string(self.reason)]
        return ByteBuffer(bytes: json.serializedBytes())
    }
}
