/// Whether a session whose relay-blind pair broke gets the path again (docs/BLIND-RELAY.md, "Breaks"):
/// each side that was on the pair asks as it resumes (the client in ResumeSession, the agent in its
/// data-channel token request), the sides at their own times. The first to ask gets a new offer and the
/// other side's half is kept for it until the pairing window ends; the second collects that half. Pure:
/// the gateway passes in what it knows and carries out the decision.
public enum BlindReoffer {
    public enum Decision: Sendable, Equatable {
        /// The other side asked first: this side takes the half kept for it.
        case collect
        /// A new offer: this side's half now, the other side's kept until it asks or the window ends. A
        /// pair still open is stale (this side left it) and closes.
        case offer
        /// The WebSocket path this time.
        case decline(Reason)
    }

    public enum Reason: String, Sendable, Equatable, CaseIterable, CustomStringConvertible {
        case relayOff
        case sessionEnded
        case notPort
        case partnerOnWebSocket
        case agentUnreachable
        case noCertificate

        public var description: String {
            switch self {
            case .relayOff: "the gateway carries no relay-blind path (--no-blind-relay)"
            case .sessionEnded: "the session has ended"
            case .notPort: "the session is not a port session"
            case .partnerOnWebSocket: "the other side is already back, on the WebSocket path"
            case .agentUnreachable:
                "the agent is not connected to the gateway (its client hears of it, and of the session's end, on the WebSocket path)"
            case .noCertificate: "the agent's certificate is not known to the gateway"
            }
        }
    }

    /// - Parameters:
    ///   - relayOn: the gateway carries the relay-blind path.
    ///   - sessionOpen: the session has not ended.
    ///   - portSession: the session's document is a port session's (the only kind offered the path).
    ///   - partnerOnWebSocket: the other side is attached on the WebSocket path (a pairing would wait for
    ///     nobody, a kept half included).
    ///   - halfKept: the other side asked first and this side's half is still in its window.
    ///   - agentReachable: the asking side is the agent, or the agent's control channel is connected. A
    ///     client that asks while the agent is gone would wait in its pairing, where it hears nothing:
    ///     neither that the agent is lost nor, at the loss timeout, that the session ended. On the
    ///     WebSocket path it hears both.
    ///   - certificateKnown: the agent's certificate hash is known (from its control channel, its own
    ///     request, or the pin the client kept from the session's start).
    public static func decide(
        relayOn: Bool,
        sessionOpen: Bool,
        portSession: Bool,
        partnerOnWebSocket: Bool,
        halfKept: Bool,
        agentReachable: Bool,
        certificateKnown: Bool
    ) -> Decision {
        guard relayOn else { return .decline(.relayOff) }
        guard sessionOpen else { return .decline(.sessionEnded) }
        guard portSession else { return .decline(.notPort) }
        guard !partnerOnWebSocket else { return .decline(.partnerOnWebSocket) }
        if halfKept { return .collect }
        guard agentReachable else { return .decline(.agentUnreachable) }
        guard certificateKnown else { return .decline(.noCertificate) }
        return .offer
    }
}
