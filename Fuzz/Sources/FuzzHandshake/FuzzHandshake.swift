import FuzzSupport
import JumpgateWire
import NIOCore

/// Both handshake state machines on hostile payloads. The input is up to three JSON texts separated by
/// NUL bytes: a HandshakeRequest for the client, a HandshakeResponse for the agent, a HandshakeComplete for
/// the client. Properties: neither machine traps; an agent that accepts a response has negotiated a
/// session; and a Jumpgate client and agent (the versions they announce), whatever extensions the agent
/// offers, complete the handshake and agree on the mode and extensions. (Each side decides smux keep-alive
/// from the other's version, as the official peers do; with Jumpgate's versions both turn it off.)
@_cdecl("FuzzHandshake_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

func fuzzOne(_ input: FuzzInput) {
    let parts = input.bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
    func payload<P: SSMJSONPayload>(_ index: Int, as type: P.Type) -> P? {
        guard index < parts.count, let json = try? JSONValue(parsing: parts[index]) else { return nil }
        return try? P(json: json)
    }
    let now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    // The client against a hostile request and completion.
    var client = ClientHandshakeStateMachine(configuration: .init(clientVersion: JumpgateVersion.clientProtocolVersion))
    if let request = payload(0, as: HandshakeRequestPayload.self) {
        if case .sendHandshakeResponse(let response) = client.requestReceived(request) {
            // The answer the client sends must itself parse as a response.
            let again = try? HandshakeResponsePayload(json: JSONValue(parsing: response.json.serialized()))
            fuzzCheck(again != nil, "the client's own response does not parse")
        }
        if let complete = payload(2, as: HandshakeCompletePayload.self) { _ = client.completeReceived(complete) }
    }

    // The agent against a hostile response, with an offer the input also chooses.
    let offer = JumpgateExtensions(rawValue: UInt32(input.bytes.first ?? 0) & JumpgateExtensions.all.rawValue)
    var agent = AgentHandshakeStateMachine(
        configuration: .init(
            agentVersion: JumpgateVersion.agentProtocolVersion,
            properties: [("portNumber", "5432"), ("type", "LocalPortForwarding")],
            offeredExtensions: offer
        )
    )
    guard case .sendHandshakeRequest(let request) = agent.start(now: now) else {
        return fuzzCheck(false, "the agent did not start with a request")
    }
    if let response = payload(1, as: HandshakeResponsePayload.self) {
        if case .sendHandshakeComplete(_, let negotiated) = agent.responseReceived(response, now: now) {
            fuzzCheck(agent.isComplete, "the agent negotiated \(negotiated) without completing")
        }
    }

    // The honest exchange with the same offer always completes, and both sides agree.
    var honestClient = ClientHandshakeStateMachine(
        configuration: .init(clientVersion: JumpgateVersion.clientProtocolVersion)
    )
    var honestAgent = AgentHandshakeStateMachine(configuration: agent.configuration)
    _ = honestAgent.start(now: now)
    guard case .sendHandshakeResponse(let response) = honestClient.requestReceived(request),
        case .sendHandshakeComplete(let complete, let agentSide) = honestAgent.responseReceived(response, now: now),
        case .established(let clientSide, _) = honestClient.completeReceived(complete)
    else { return fuzzCheck(false, "an honest handshake with offer \(offer) did not complete") }
    fuzzCheck(agentSide.mode == clientSide.mode, "the two sides disagree on the mode: \(agentSide) vs \(clientSide)")
    fuzzCheck(agentSide.extensions == clientSide.extensions, "the two sides disagree on the extensions")
}
