import FuzzSupport
import JumpgateWire
import NIOCore

/// Both session state machines after an honest handshake (the extensions the input's first byte has the
/// agent offer), then hostile messages into either: what the gateway relays from a peer that lies.
/// FuzzSSMMessage and FuzzHandshake stop before this point; a cumulative acknowledgement of Int64.min
/// trapped here (docs/RELIABILITY.md).
///
/// After the first byte, the input is records of a 4-byte head, then their fields: head[0] bit 0 picks the
/// side (agent or client), bit 1 an 8-byte sequence number (else head[0] >> 4), bit 2 raw bytes instead of
/// a message (head[3] of them, to the decoder), bit 3 a timer firing 1 to 256 s later; head[1] the message
/// type, head[2] the payload type; head[3] the payload's length (at most what is left). The two honest
/// sides then exchange what they wrote. Properties: neither machine traps, and everything either writes
/// decodes as an SSM message.
@_cdecl("FuzzSession_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

let messageTypes: [MessageType] = [
    .inputStreamData, .outputStreamData, .acknowledge, .channelClosed, .startPublication, .pausePublication,
    .agentSessionState, .interactiveShell, .agentTaskComplete, .agentJob, .jumpgateAgentStatus,
]

let payloadTypes: [PayloadType] = [
    .none, .output, .error, .size, .parameter, .handshakeRequest, .handshakeResponse, .handshakeComplete,
    .flag, .stdErr, .exitCode, .jumpgateCumulativeAck, .jumpgateConnectError,
]

/// The two machines and what is in flight between them.
struct Pair {
    var agent: SessionStateMachine
    var client: SessionStateMachine
    var toAgent: [ByteBuffer] = []
    var toClient: [ByteBuffer] = []
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    init(offer: JumpgateExtensions) {
        self.agent = SessionStateMachine(
            sessionID: "s-1",
            role: .agent(
                .init(
                    agentVersion: JumpgateVersion.agentProtocolVersion,
                    sessionType: "Port",
                    properties: [("portNumber", "5432"), ("type", "LocalPortForwarding")],
                    offeredExtensions: offer
                )
            ),
            wallClockMilliseconds: { 1_700_000_000_000 }
        )
        self.client = SessionStateMachine(
            sessionID: "s-1",
            role: .client(.init(clientVersion: JumpgateVersion.clientProtocolVersion, supportedExtensions: .all)),
            wallClockMilliseconds: { 1_700_000_000_000 }
        )
    }

    /// Routes a side's writes to the other side, each checked to decode.
    mutating func take(_ actions: [SessionStateMachine.Action], fromAgent: Bool) {
        for case .write(let frame) in actions {
            fuzzCheck((try? SSMMessage(decoding: frame)) != nil, "a machine wrote a frame that does not decode")
            if fromAgent { self.toClient.append(frame) } else { self.toAgent.append(frame) }
        }
    }

    mutating func deliver(_ frame: ByteBuffer, toAgent: Bool) {
        var actions: [SessionStateMachine.Action] = []
        if toAgent {
            self.agent.frameReceived(frame, withholdsOutput: false, now: self.now, into: &actions)
        } else {
            self.client.frameReceived(frame, withholdsOutput: false, now: self.now, into: &actions)
        }
        self.take(actions, fromAgent: toAgent)
    }

    /// Delivers what is in flight both ways, a bounded number of rounds (an echo loop must not hang).
    mutating func pump() {
        for _ in 0..<16 where !self.toAgent.isEmpty || !self.toClient.isEmpty {
            let (forAgent, forClient) = (self.toAgent, self.toClient)
            (self.toAgent, self.toClient) = ([], [])
            for frame in forAgent { self.deliver(frame, toAgent: true) }
            for frame in forClient { self.deliver(frame, toAgent: false) }
        }
    }

    mutating func timer(after seconds: Int64) {
        self.now = self.now + .seconds(seconds)
        var actions: [SessionStateMachine.Action] = []
        self.agent.timerFired(now: self.now, mayResend: true, into: &actions)
        self.take(actions, fromAgent: true)
        actions = []
        self.client.timerFired(now: self.now, mayResend: true, into: &actions)
        self.take(actions, fromAgent: false)
    }
}

func fuzzOne(_ input: FuzzInput) {
    var bytes = input.bytes[...]
    let offer = JumpgateExtensions(rawValue: UInt32(bytes.popFirst() ?? 0) & JumpgateExtensions.all.rawValue)
    var pair = Pair(offer: offer)
    var actions: [SessionStateMachine.Action] = []
    pair.agent.dataChannelAttached(now: pair.now, into: &actions)
    pair.take(actions, fromAgent: true)
    actions = []
    pair.client.dataChannelAttached(now: pair.now, into: &actions)
    pair.take(actions, fromAgent: false)
    pair.pump()

    while bytes.count >= 4 {
        let head = Array(bytes.prefix(4))
        bytes = bytes.dropFirst(4)
        let toAgent = head[0] & 1 == 0
        var sequence = Int64(head[0] >> 4)
        if head[0] & 2 != 0, bytes.count >= 8 {
            sequence = bytes.prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) }
            bytes = bytes.dropFirst(8)
        }
        let count = min(Int(head[3]), bytes.count)
        let body = ByteBuffer(bytes: bytes.prefix(count))
        bytes = bytes.dropFirst(count)
        if head[0] & 4 != 0 {
            pair.deliver(body, toAgent: toAgent)
        } else {
            let message = SSMMessage(
                messageType: messageTypes[Int(head[1]) % messageTypes.count],
                createdDate: 1_700_000_000_000,
                sequenceNumber: sequence,
                payloadType: payloadTypes[Int(head[2]) % payloadTypes.count],
                payload: body
            )
            pair.deliver(message.encoded(), toAgent: toAgent)
        }
        if head[0] & 8 != 0 { pair.timer(after: Int64(head[2]) + 1) }
        pair.pump()
    }
}
