/// What a session end refuses from its peer after the handshake's channel is open: a message that does not
/// decode or fails validation, a payload that does not parse, a message or payload type this end never
/// takes, a smux stream that breaks the protocol (which ends the session), and, on the relay-blind path, a
/// peer that paired as the session's client without its client secret (docs/BLIND-RELAY.md). The raw values are the
/// `type` labels of `jumpgate_agent_refusals_total` and the types in the agent's refusal summaries: a
/// closed set, so a peer cannot create label values.
public enum SessionRefusal: String, Sendable, CaseIterable, Hashable {
    case invalidMessage = "InvalidMessage"
    case invalidPayload = "InvalidPayload"
    case unexpectedMessage = "UnexpectedMessage"
    case smuxProtocolError = "SmuxProtocolError"
    case clientSecretMismatch = "ClientSecretMismatch"
}
