import NIOCore

/// The agent's side of the data-channel handshake (spec §6): send HandshakeRequest, wait up to 15 s for
/// the HandshakeResponse, check it, then send HandshakeComplete.
public struct AgentHandshakeStateMachine: Sendable {
    public struct Configuration: Sendable {
        /// Four numeric parts above 3.1.1511.0, so the official plugin picks mux mode without keepalive.
        public var agentVersion: String
        public var sessionType: String
        /// The resolved document properties, in document order.
        public var properties: [(key: String, value: String)]
        /// What this agent offers; empty for `--no-extensions`.
        public var offeredExtensions: JumpgateExtensions
        public var timeout: TimeAmount

        public init(
            agentVersion: String,
            sessionType: String = "Port",
            properties: [(key: String, value: String)],
            offeredExtensions: JumpgateExtensions = .all,
            timeout: TimeAmount = .seconds(15)
        ) {
            self.agentVersion = agentVersion
            self.sessionType = sessionType
            self.properties = properties
            self.offeredExtensions = offeredExtensions
            self.timeout = timeout
        }
    }

    public enum Action: Sendable {
        case sendHandshakeRequest(HandshakeRequestPayload)
        case sendHandshakeComplete(HandshakeCompletePayload, NegotiatedSession)
        case fail(reason: String)
        case none
    }

    private enum State: Sendable {
        case idle
        case awaitingResponse(sentAt: NIODeadline)
        case complete
        case failed
    }

    public static let timeoutMessage =
        "Handshake timed out. Please ensure that you have the latest version of the session manager plugin."

    private var state: State = .idle
    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var isComplete: Bool {
        if case .complete = self.state { return true }
        return false
    }

    /// The session starts: send the request and start the timer.
    public mutating func start(now: NIODeadline) -> Action {
        guard case .idle = self.state else { return .none }
        self.state = .awaitingResponse(sentAt: now)
        var properties = self.configuration.properties.map { (key: $0.key, value: JSONValue.string($0.value)) }
        if !self.configuration.offeredExtensions.isEmpty {
            properties.append(
                (JumpgateExtensions.propertiesKey, .string(self.configuration.offeredExtensions.wireValue))
            )
        }
        let action = RequestedClientAction(
            actionType: RequestedClientAction.sessionTypeAction,
            actionParameters: [
                "SessionType": .string(self.configuration.sessionType), "Properties": .object(properties),
            ]
        )
        return .sendHandshakeRequest(
            HandshakeRequestPayload(agentVersion: self.configuration.agentVersion, requestedClientActions: [action])
        )
    }

    public mutating func responseReceived(_ response: HandshakeResponsePayload, now: NIODeadline) -> Action {
        guard case .awaitingResponse(let sentAt) = self.state else { return .none }
        guard
            let sessionType = response.processedClientActions.first(where: {
                $0.actionType == RequestedClientAction.sessionTypeAction
            })
        else {
            self.state = .failed
            return .fail(reason: "The client did not process the SessionType action.")
        }
        for action in response.processedClientActions where action.actionStatus != .success {
            self.state = .failed
            let detail = action.error.isEmpty ? "status \(action.actionStatus.rawValue)" : action.error
            return .fail(reason: "The client failed the \(action.actionType) action: \(detail)")
        }
        var accepted: JumpgateExtensions = []
        if let value = sessionType.actionResult[JumpgateExtensions.actionResultKey]?.stringValue {
            accepted = JumpgateExtensions(wireValue: value).intersection(self.configuration.offeredExtensions)
        }
        let properties = Dictionary(
            self.configuration.properties.map { ($0.key, $0.value) },
            uniquingKeysWith: { _, last in last }
        )
        let clientVersion = response.clientVersion
        let mode: PortSessionMode
        // An agent reporting a version from before mux support (--compat-version) behaves as one: basic.
        if properties["type"] == "LocalPortForwarding",
            SSMVersion.agentCompare(clientVersion, SSMVersion.muxSupportedFromClientVersion) >= 0,
            SSMVersion.pluginIsGreater(self.configuration.agentVersion, than: SSMVersion.muxSupportedAfterAgentVersion)
        {
            let keepAlive = SSMVersion.agentCompare(clientVersion, SSMVersion.keepAliveDisabledAfterClientVersion) <= 0
            mode = .mux(smuxVersion: accepted.contains(.smuxV2) ? 2 : 1, keepAlive: keepAlive)
        } else {
            mode = .basic
            accepted.remove(.smuxV2)
        }
        self.state = .complete
        let negotiated = NegotiatedSession(
            sessionType: self.configuration.sessionType,
            properties: properties,
            agentVersion: self.configuration.agentVersion,
            clientVersion: clientVersion,
            mode: mode,
            extensions: accepted
        )
        let elapsed = now - sentAt
        return .sendHandshakeComplete(
            HandshakeCompletePayload(handshakeTimeToComplete: max(0, elapsed.nanoseconds)),
            negotiated
        )
    }

    /// Call when the handshake timer may have expired.
    public mutating func timerFired(now: NIODeadline) -> Action {
        guard case .awaitingResponse(let sentAt) = self.state else { return .none }
        if now - sentAt >= self.configuration.timeout {
            self.state = .failed
            return .fail(reason: Self.timeoutMessage)
        }
        return .none
    }

    /// When the timer should next fire, if it is running.
    public var deadline: NIODeadline? {
        if case .awaitingResponse(let sentAt) = self.state { return sentAt + self.configuration.timeout }
        return nil
    }
}
