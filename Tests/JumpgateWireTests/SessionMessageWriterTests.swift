import JumpgateWire
import NIOCore
import Testing

@Suite("Session message writer")
struct SessionMessageWriterTests {
    static func payload(_ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    }

    @Test("stream messages decode to what was written, with the role's type, a valid digest and fresh ids")
    func streamMessages() throws {
        for role in [SessionMessageWriter.Role.client, .agent] {
            var writer = SessionMessageWriter(role: role)
            var ids = Set<MessageID>()
            for sequenceNumber in Int64(0)..<3 {
                let frame = writer.streamMessage(
                    sequenceNumber: sequenceNumber,
                    createdDate: 1_700_000_000_000,
                    payloadType: .output,
                    payloadLength: 300
                ) { $0.writeImmutableBuffer(Self.payload(300)) }
                let message = try SSMMessage(decoding: frame)
                #expect(message.messageType == (role == .agent ? .outputStreamData : .inputStreamData))
                #expect(message.sequenceNumber == sequenceNumber)
                #expect(message.createdDate == 1_700_000_000_000)
                #expect(message.payload == Self.payload(300))
                #expect(message.isDigestValid)
                // The official agent marks its first message SYN; nothing else carries flags.
                #expect(message.flags == (role == .agent && sequenceNumber == 0 ? SSMMessageFlags.syn : 0))
                ids.insert(message.messageID)
            }
            #expect(ids.count == 3, "message ids repeat")
        }
    }

    @Test("digest-free leaves the digest zero")
    func digestFree() throws {
        var writer = SessionMessageWriter(role: .client)
        writer.digestFree = true
        let frame = writer.streamMessage(sequenceNumber: 5, createdDate: 1, payloadType: .output, payloadLength: 4) {
            $0.writeInteger(UInt32(0xdead_beef))
        }
        let message = try SSMMessage(decoding: frame)
        #expect(message.payloadDigest == .zero)
        #expect(!message.isDigestValid)
        let ack = writer.acknowledgement(.cumulative(upTo: 9), createdDate: 1)
        #expect(try SSMMessage(decoding: #require(ack)).payloadDigest == .zero)
    }

    @Test("acknowledgements: none is no message; per message is the official JSON; cumulative is Jumpgate's")
    func acknowledgements() throws {
        var writer = SessionMessageWriter(role: .agent)
        let none = writer.acknowledgement(.none, createdDate: 1)
        #expect(none == nil)
        let id = MessageID(high: 0x1234, low: 0x8000_0000_0000_0001)
        let perMessageFrame = writer.acknowledgement(
            .acknowledge(.inputStreamData, id, sequenceNumber: 42),
            createdDate: 1
        )
        let perMessage = try SSMMessage(decoding: #require(perMessageFrame))
        #expect(perMessage.messageType == .acknowledge)
        #expect(perMessage.flags == SSMMessageFlags.acknowledge)
        #expect(perMessage.isDigestValid)
        let content = try AcknowledgeContent(payload: perMessage.payload)
        #expect(content.acknowledgedSequenceNumber == 42)
        #expect(content.acknowledgedMessageType == MessageType.inputStreamData.rawValue)
        let cumulativeFrame = writer.acknowledgement(.cumulative(upTo: 77), createdDate: 1)
        let cumulative = try SSMMessage(decoding: #require(cumulativeFrame))
        #expect(cumulative.payloadType == .jumpgateCumulativeAck)
        #expect(try CumulativeAckPayload(payload: cumulative.payload).highestContiguousSequenceNumber == 77)
    }

    @Test("the agent's session state says Connected for its session")
    func agentSessionState() throws {
        let message = try SSMMessage(decoding: SessionMessageWriter.agentSessionState(sessionID: "s-9", createdDate: 1))
        #expect(message.messageType == .agentSessionState)
        let state = try AgentSessionStatePayload(payload: message.payload)
        #expect(state.sessionState == "Connected" && state.sessionID == "s-9")
    }
}
