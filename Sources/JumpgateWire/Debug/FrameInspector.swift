import NIOCore

/// Turns messages into the JSON that `jumpgate debug decode-frame` prints and back
/// (`encode-frame`), with the spec's field names. It lets people read captures, and lets the codec
/// be checked from outside the process.
public enum FrameInspector {
    /// Describes one message. Throws only if the header does not decode; a payload that does not parse
    /// for its type gives `"Decoded": null` and a `DecodeError`.
    public static func describe(_ frame: ByteBuffer) throws(WireError) -> JSONValue {
        let message = try SSMMessage(decoding: frame)
        var members: [(key: String, value: JSONValue)] = [
            ("HeaderLength", .integer(Int64(SSMMessage.headerLength))),
            ("MessageType", .string(message.messageType.rawValue)),
            ("SchemaVersion", .integer(Int64(message.schemaVersion))),
            ("CreatedDate", .integer(Int64(bitPattern: message.createdDate))),
            ("SequenceNumber", .integer(message.sequenceNumber)),
            ("Flags", .integer(Int64(bitPattern: message.flags))),
            ("MessageId", .string(message.messageID.description)),
            ("PayloadDigest", .string(message.payloadDigest.hex)),
            ("DigestValid", .bool(message.isDigestValid)),
            ("PayloadType", .integer(Int64(message.payloadType.rawValue))),
            ("PayloadLength", .integer(Int64(message.payloadLength))),
            ("Payload", .string(Base64.encode(message.payload.readableBytesView))),
        ]
        switch self.decodePayload(message) {
        case .success(let decoded):
            members.append(("Decoded", decoded))
        case .failure(let error):
            members.append(("Decoded", .null))
            members.append(("DecodeError", .string(error.reason)))
        }
        return .object(members)
    }

    /// The payload as JSON where its type is known; `.null` for raw stream bytes and empty payloads.
    static func decodePayload(_ message: SSMMessage) -> Result<JSONValue, WireError> {
        do throws(WireError) {
            let payload = message.payload
            switch (message.messageType, message.payloadType) {
            case (.acknowledge, .jumpgateCumulativeAck):
                let ack = try CumulativeAckPayload(payload: payload)
                return .success(["HighestContiguousSequenceNumber": .integer(ack.highestContiguousSequenceNumber)])
            case (.acknowledge, _):
                return .success(try AcknowledgeContent(payload: payload).json)
            case (_, .flag):
                let flag = try FlagPayload(payload: payload)
                return .success(["Flag": .integer(Int64(flag.rawValue)), "Name": .string(flag.name)])
            case (_, .handshakeRequest):
                return .success(try HandshakeRequestPayload(payload: payload).json)
            case (_, .handshakeResponse):
                return .success(try HandshakeResponsePayload(payload: payload).json)
            case (_, .handshakeComplete):
                return .success(try HandshakeCompletePayload(payload: payload).json)
            case (.channelClosed, _):
                return .success(try ChannelClosedPayload(payload: payload).json)
            case (.agentSessionState, _):
                return .success(try AgentSessionStatePayload(payload: payload).json)
            case (.agentTaskComplete, _):
                return .success(try AgentTaskCompletePayload(payload: payload).json)
            case (.agentTaskAcknowledge, _):
                return .success(try AgentTaskAcknowledgePayload(payload: payload).json)
            case (.interactiveShell, _):
                let envelope = try MGSPayload(payload: payload)
                var json = envelope.json
                if case .object(var members) = json, let content = try? JSONValue(parsing: envelope.content) {
                    members.append(("DecodedContent", content))
                    json = .object(members)
                }
                return .success(json)
            default:
                return .success(.null)
            }
        } catch {
            return .failure(error)
        }
    }

    /// Builds a message from the JSON ``describe(_:)`` prints. `Decoded` and `DigestValid` are ignored;
    /// `PayloadDigest` and `PayloadLength` are computed when absent (given, they are written as given,
    /// so deliberately broken frames can be made).
    public static func build(from json: JSONValue) throws(WireError) -> ByteBuffer {
        guard case .object = json else {
            throw WireError(.invalidPayload, "the frame description must be a JSON object")
        }
        func integer(_ key: String, default value: Int64?) throws(WireError) -> Int64 {
            guard let field = json[key], !field.isNull else {
                guard let value else { throw WireError(.invalidPayload, "\(key) is required") }
                return value
            }
            guard let i = field.int64Value else { throw WireError(.invalidPayload, "\(key) must be an integer") }
            return i
        }
        func unsigned<T: FixedWidthInteger>(_ key: String, default value: Int64?, as: T.Type) throws(WireError) -> T {
            let raw = try integer(key, default: value)
            guard let converted = T(exactly: raw) ?? (T.bitWidth == 64 ? T(truncatingIfNeeded: raw) : nil) else {
                throw WireError(.invalidPayload, "\(key) \(raw) does not fit in \(T.bitWidth) bits")
            }
            return converted
        }
        guard let typeName = json["MessageType"]?.stringValue, let messageType = MessageType(typeName) else {
            throw WireError(.invalidPayload, "MessageType must be 1 to 32 printable ASCII characters")
        }
        let headerLength: UInt32 = try unsigned(
            "HeaderLength",
            default: Int64(SSMMessage.headerLength),
            as: UInt32.self
        )
        var payload = ByteBuffer()
        if let text = json["Payload"]?.stringValue {
            guard let bytes = Base64.decode(text) else {
                throw WireError(.invalidPayload, "Payload is not valid base64")
            }
            payload.writeBytes(bytes)
        }
        let messageID: MessageID
        if let text = json["MessageId"]?.stringValue {
            guard let id = MessageID(text) else {
                throw WireError(.invalidPayload, "MessageId '\(text)' is not a UUID")
            }
            messageID = id
        } else {
            messageID = .random()
        }
        var digest = PayloadDigest.sha256(of: payload)
        if let text = json["PayloadDigest"]?.stringValue {
            guard let given = PayloadDigest(hex: text) else {
                throw WireError(.invalidPayload, "PayloadDigest must be 64 hex digits")
            }
            digest = given
        }
        let createdDate = try unsigned("CreatedDate", default: nil, as: UInt64.self)
        var out = ByteBuffer()
        out.writeSSMMessageHeader(
            messageType: messageType,
            schemaVersion: try unsigned("SchemaVersion", default: 1, as: UInt32.self),
            createdDate: createdDate,
            sequenceNumber: try integer("SequenceNumber", default: 0),
            flags: try unsigned("Flags", default: 0, as: UInt64.self),
            messageID: messageID,
            payloadDigest: digest,
            payloadType: PayloadType(rawValue: try unsigned("PayloadType", default: 0, as: UInt32.self)),
            payloadLength: try unsigned("PayloadLength", default: Int64(payload.readableBytes), as: UInt32.self)
        )
        out.setInteger(headerLength, at: out.readerIndex)
        out.writeBuffer(&payload)
        return out
    }
}
