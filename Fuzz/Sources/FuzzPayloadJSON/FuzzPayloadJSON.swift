import FuzzSupport
import JumpgateWire
import NIOCore

/// The JSON parser and every JSON payload type on hostile text. Properties: what parses re-serialises to
/// text that parses to an equal value, and serialising that again gives the same text (a fixed point);
/// a payload that parses re-serialises to JSON that parses to an equal payload.
@_cdecl("FuzzPayloadJSON_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

func fuzzOne(_ input: FuzzInput) {
    let text = String(decoding: input.bytes, as: UTF8.self)
    guard let value = try? JSONValue(parsing: text) else { return }
    let serialized = value.serialized()
    let reparsed = try? JSONValue(parsing: serialized)
    fuzzCheck(reparsed != nil, "serialised JSON does not parse: \(serialized)")
    fuzzCheck(reparsed?.serialized() == serialized, "serialising is not a fixed point: \(serialized)")
    roundTrip(AcknowledgeContent.self, value)
    roundTrip(ChannelClosedPayload.self, value)
    roundTrip(AgentSessionStatePayload.self, value)
    roundTrip(MGSPayload.self, value)
    roundTrip(AgentTaskPayload.self, value)
    roundTrip(AgentTaskCompletePayload.self, value)
    roundTrip(AgentTaskAcknowledgePayload.self, value)
    roundTrip(OpenDataChannelInput.self, value)
    roundTrip(HandshakeRequestPayload.self, value)
    roundTrip(HandshakeResponsePayload.self, value)
    roundTrip(HandshakeCompletePayload.self, value)
}

func roundTrip<Payload: SSMJSONPayload & Equatable>(_ type: Payload.Type, _ value: JSONValue) {
    guard let payload = try? Payload(json: value) else { return }
    let text = payload.json.serialized()
    let again = try? Payload(json: try JSONValue(parsing: text))
    fuzzCheck(
        again == payload,
        "\(Payload.self) does not survive a round trip: \(payload) vs \(String(describing: again)) via \(text)"
    )
}
