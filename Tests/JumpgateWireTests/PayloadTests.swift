import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

@Suite("Payload shapes")
struct PayloadTests {
    @Test("the spec's HandshakeRequest parses and re-serialises in Go's field order")
    func handshakeRequest() throws {
        let text =
            #"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"localPortNumber":"1213","portNumber":"80","type":"LocalPortForwarding"}}}]}"#
        let request = try HandshakeRequestPayload(payload: ByteBuffer(string: text))
        #expect(request.agentVersion == "3.3.987.0")
        #expect(request.requestedClientActions.first?.actionParameters["SessionType"]?.stringValue == "Port")
        #expect(request.json.serialized() == text)
    }

    @Test("the official plugin's HandshakeResponse round-trips, with Errors and ActionResult null")
    func handshakeResponse() throws {
        let text =
            #"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        let response = try HandshakeResponsePayload(payload: ByteBuffer(string: text))
        #expect(
            response.processedClientActions == [
                ProcessedClientAction(actionType: "SessionType", actionStatus: .success)
            ]
        )
        #expect(response.errors == nil)
        #expect(response.json.serialized() == text)
    }

    @Test("HandshakeComplete carries nanoseconds, as the golden vector shows")
    func handshakeComplete() throws {
        let message = try SSMMessage(decoding: GoldenVectors.handshakeComplete.buffer)
        let complete = try HandshakeCompletePayload(payload: message.payload)
        #expect(complete.handshakeTimeToComplete == 52_000_000)
        #expect(complete.customerMessage == "")
        #expect(Array(complete.encoded().readableBytesView) == GoldenVectors.handshakeComplete.payload)
    }

    @Test("flags are 4-byte big-endian integers")
    func flags() throws {
        let message = try SSMMessage(decoding: GoldenVectors.terminateFlag.buffer)
        #expect(try FlagPayload(payload: message.payload) == .terminateSession)
        #expect(Array(FlagPayload.connectToPortError.encoded().readableBytesView) == [0, 0, 0, 3])
        #expect(throws: WireError.self) { try FlagPayload(payload: ByteBuffer(bytes: [0, 2])) }
    }

    @Test("channel_closed, agent_session_state and control-channel shapes round-trip")
    func otherShapes() throws {
        let closed = ChannelClosedPayload(
            createdDate: "2026-11-29T00:00:00Z",
            destinationID: "mi-0123",
            sessionID: "s-1",
            output: "Idle timeout"
        )
        #expect(try ChannelClosedPayload(payload: closed.encoded()) == closed)
        #expect(closed.json.serialized().hasPrefix(#"{"MessageId":""#))
        let state = AgentSessionStatePayload(sessionState: "Connected", sessionID: "s-1")
        #expect(state.json.serialized() == #"{"SchemaVersion":1,"SessionState":"Connected","SessionId":"s-1"}"#)
        let task = AgentTaskPayload(
            documentName: "AWS-StartPortForwardingSession",
            sessionID: "s-1",
            documentContent: ["sessionType": "Port"],
            parameters: [("portNumber", "80")],
            sessionOwner: "arn:aws:iam::000000000000:user/dev"
        )
        let shell = MGSPayload(
            content: task.json.serialized(),
            taskID: "aws.ssm.s-1.mi-1",
            topic: "aws.ssm.sendCommand"
        )
        let parsed = try MGSPayload(payload: shell.encoded())
        #expect(try AgentTaskPayload(json: JSONValue(parsing: parsed.content)) == task)
        // Go decodes keys case-insensitively; the agent's own tests send lowercase ones.
        let lower = try AgentTaskPayload(
            json: JSONValue(parsing: #"{"sessionId":"s-2","parameters":{"portNumber":["22"]}}"#)
        )
        #expect(lower.sessionID == "s-2")
        #expect(lower.parameters.first?.value == "22")
        let complete = AgentTaskCompletePayload(
            taskID: "s-1",
            finalTaskStatus: "Success",
            instanceID: "mi-1",
            output: ""
        )
        #expect(try AgentTaskCompletePayload(payload: complete.encoded()) == complete)
        let ack = AgentTaskAcknowledgePayload(messageID: .random(), taskID: "s-1")
        #expect(try AgentTaskAcknowledgePayload(payload: ack.encoded()) == ack)
    }

    @Test("OpenDataChannelInput matches the plugin's field order; ClientVersion is optional")
    func openDataChannelInput() throws {
        let input = OpenDataChannelInput(
            requestID: MessageID("01234567-89ab-4cde-8f01-23456789abcd")!,
            tokenValue: "tok",
            clientID: "c",
            clientVersion: "1.2.707.0"
        )
        #expect(
            input.json.serialized()
                == #"{"MessageSchemaVersion":"1.0","RequestId":"01234567-89ab-4cde-8f01-23456789abcd","TokenValue":"tok","ClientId":"c","ClientVersion":"1.2.707.0"}"#
        )
        let old = try OpenDataChannelInput(
            payload: ByteBuffer(
                string: #"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c"}"#
            )
        )
        #expect(old.clientVersion == nil)
        #expect(throws: WireError.self) { try OpenDataChannelInput(payload: ByteBuffer(string: #"{"RequestId":"r"}"#)) }
        #expect(throws: WireError.self) { try OpenDataChannelInput(payload: ByteBuffer(string: #"{"TokenValue":5}"#)) }
    }

    @Test("mistyped fields are errors, never crashes")
    func mistyped() {
        #expect(throws: WireError.self) {
            try AcknowledgeContent(payload: ByteBuffer(string: #"{"AcknowledgedMessageSequenceNumber":"1"}"#))
        }
        #expect(throws: WireError.self) { try AcknowledgeContent(payload: ByteBuffer(string: "[]")) }
        #expect(throws: WireError.self) {
            try HandshakeRequestPayload(payload: ByteBuffer(string: #"{"RequestedClientActions":{}}"#))
        }
        #expect(throws: WireError.self) { try HandshakeResponsePayload(payload: ByteBuffer(string: "not json")) }
        #expect(throws: WireError.self) { try CumulativeAckPayload(payload: ByteBuffer(bytes: [1, 2, 3])) }
    }
}

@Suite("Jumpgate connect-error payload")
struct ConnectErrorPayloadTests {
    @Test("round-trips, cuts long reasons, and refuses malformed input")
    func roundTrip() throws {
        let payload = ConnectErrorPayload(streamID: 7, reason: "db:3306 is not in this agent's allow-list")
        #expect(
            String(buffer: payload.encoded()) == #"{"StreamId":7,"Reason":"db:3306 is not in this agent's allow-list"}"#
        )
        #expect(try ConnectErrorPayload(payload: payload.encoded()) == payload)
        #expect(ConnectErrorPayload(streamID: 1, reason: String(repeating: "x", count: 5000)).reason.count == 512)
        for bad in ["", "{}", #"{"StreamId":-1,"Reason":"x"}"#, #"{"StreamId":3}"#, "[1]"] {
            #expect(throws: WireError.self) { try ConnectErrorPayload(payload: ByteBuffer(string: bad)) }
        }
        #expect(JumpgateExtensions(wireValue: "connect-errors,half-close") == [.connectErrors, .halfClose])
    }
}
