import NIOCore

/// The JSON payload of an `acknowledge` message (spec §5.1). Receivers match only the sequence number.
public struct AcknowledgeContent: SSMJSONPayload, Hashable {
    public var acknowledgedMessageType: String
    public var acknowledgedMessageID: String
    public var acknowledgedSequenceNumber: Int64
    public var isSequentialMessage: Bool

    public init(
        acknowledgedMessageType: MessageType,
        acknowledgedMessageID: MessageID,
        acknowledgedSequenceNumber: Int64
    ) {
        self.acknowledgedMessageType = acknowledgedMessageType.rawValue
        self.acknowledgedMessageID = acknowledgedMessageID.description
        self.acknowledgedSequenceNumber = acknowledgedSequenceNumber
        self.isSequentialMessage = true
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "acknowledge")
        self.acknowledgedMessageType = try f.optionalString("AcknowledgedMessageType")
        self.acknowledgedMessageID = try f.optionalString("AcknowledgedMessageId")
        self.acknowledgedSequenceNumber = try f.int("AcknowledgedMessageSequenceNumber")
        self.isSequentialMessage = try f.optionalBool("IsSequentialMessage")
    }

    public var json: JSONValue {
        [
            "AcknowledgedMessageType": .string(self.acknowledgedMessageType),
            "AcknowledgedMessageId": .string(self.acknowledgedMessageID),
            "AcknowledgedMessageSequenceNumber": .integer(self.acknowledgedSequenceNumber),
            "IsSequentialMessage": .bool(self.isSequentialMessage),
        ]
    }
}

extension ByteBuffer {
    /// Writes the acknowledge JSON for a stream message directly, without building a ``JSONValue``:
    /// this runs once per data message on the official path. Byte-identical to ``AcknowledgeContent/json``.
    @discardableResult
    public mutating func writeAcknowledgeJSON(
        messageType: MessageType,
        messageID: MessageID,
        sequenceNumber: Int64
    ) -> Int {
        var written = self.writeStaticString("{\"AcknowledgedMessageType\":\"")
        written += self.writeString(messageType.rawValue)
        written += self.writeStaticString("\",\"AcknowledgedMessageId\":\"")
        written += self.writeString(messageID.description)
        written += self.writeStaticString("\",\"AcknowledgedMessageSequenceNumber\":")
        written += self.writeString(String(sequenceNumber))
        written += self.writeStaticString(",\"IsSequentialMessage\":true}")
        return written
    }
}
