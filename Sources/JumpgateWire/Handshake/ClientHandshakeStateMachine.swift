/// The client's side of the data-channel handshake (spec §6): acknowledge the HandshakeRequest, answer
/// it, and wait for HandshakeComplete before sending any tunnel data.
public struct ClientHandshakeStateMachine: Sendable {
    public struct Configuration: Sendable {
        /// Four numeric parts above 1.2.331.0 so the agent picks mux mode and disables keepalive.
        public var clientVersion: String
        /// What this client accepts when an agent offers it; empty for official behaviour.
        public var supportedExtensions: JumpgateExtensions

        public init(clientVersion: String, supportedExtensions: JumpgateExtensions = .all) {
            self.clientVersion = clientVersion
            self.supportedExtensions = supportedExtensions
        }
    }

    public enum Action: Sendable {
        /// Send this response (the caller has already acknowledged the request, as handshake messages are
        /// acknowledged before they are processed).
        case sendHandshakeResponse(HandshakeResponsePayload)
        /// The session may start; print `customerMessage` if it is not empty.
        case established(NegotiatedSession, customerMessage: String)
        case fail(reason: String)
        case none
    }

    private enum State: Sendable {
        case awaitingRequest
        case awaitingComplete(NegotiatedSession)
        case established
        case failed
    }

    /// The session types the official plugin accepts.
    public static let acceptedSessionTypes: Set<String> = [
        "Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Port",
    ]

    private var state: State = .awaitingRequest
    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var isEstablished: Bool {
        if case .established = self.state { return true }
        return false
    }

    public mutating func requestReceived(_ request: HandshakeRequestPayload) -> Action {
        guard case .awaitingRequest = self.state else { return .none }
        var processed: [ProcessedClientAction] = []
        var errors: [String] = []
        var negotiated: NegotiatedSession?
        for action in request.requestedClientActions {
            switch action.actionType {
            case RequestedClientAction.sessionTypeAction:
                let sessionType = action.actionParameters["SessionType"]?.stringValue ?? ""
                guard Self.acceptedSessionTypes.contains(sessionType) else {
                    let error = "Unsupported session type \(sessionType)"
                    processed.append(
                        ProcessedClientAction(actionType: action.actionType, actionStatus: .failed, error: error)
                    )
                    errors.append(error)
                    continue
                }
                var properties: [String: String] = [:]
                var offered: JumpgateExtensions = []
                for (key, value) in action.actionParameters["Properties"]?.objectValue ?? [] {
                    if key == JumpgateExtensions.propertiesKey, let wire = value.stringValue {
                        offered = JumpgateExtensions(wireValue: wire)
                    } else if let s = value.stringValue {
                        properties[key] = s
                    } else if let i = value.int64Value {
                        properties[key] = String(i)
                    }
                }
                let accepted = offered.intersection(self.configuration.supportedExtensions)
                let mode: PortSessionMode
                if properties["type"] == "LocalPortForwarding",
                    SSMVersion.pluginIsGreater(request.agentVersion, than: SSMVersion.muxSupportedAfterAgentVersion)
                {
                    let keepAlive = !SSMVersion.pluginIsGreater(
                        request.agentVersion,
                        than: SSMVersion.keepAliveDisabledAfterAgentVersion
                    )
                    mode = .mux(smuxVersion: accepted.contains(.smuxV2) ? 2 : 1, keepAlive: keepAlive)
                } else {
                    mode = .basic
                }
                let result: JSONValue =
                    accepted.isEmpty ? .null : [JumpgateExtensions.actionResultKey: .string(accepted.wireValue)]
                processed.append(
                    ProcessedClientAction(actionType: action.actionType, actionStatus: .success, actionResult: result)
                )
                var finalExtensions = accepted
                if mode == .basic { finalExtensions.remove(.smuxV2) }
                negotiated = NegotiatedSession(
                    sessionType: sessionType,
                    properties: properties,
                    agentVersion: request.agentVersion,
                    clientVersion: self.configuration.clientVersion,
                    mode: mode,
                    extensions: finalExtensions
                )
            case RequestedClientAction.kmsEncryptionAction:
                let error = "KMS encryption is not supported by this client"
                processed.append(
                    ProcessedClientAction(actionType: action.actionType, actionStatus: .failed, error: error)
                )
                errors.append(error)
            default:
                let error = "Unsupported action \(action.actionType)"
                processed.append(
                    ProcessedClientAction(actionType: action.actionType, actionStatus: .unsupported, error: error)
                )
                errors.append(error)
            }
        }
        let response = HandshakeResponsePayload(
            clientVersion: self.configuration.clientVersion,
            processedClientActions: processed,
            errors: errors.isEmpty ? nil : errors
        )
        if let negotiated, errors.isEmpty {
            self.state = .awaitingComplete(negotiated)
        } else {
            self.state = .failed
        }
        return .sendHandshakeResponse(response)
    }

    public mutating func completeReceived(_ complete: HandshakeCompletePayload) -> Action {
        switch self.state {
        case .awaitingComplete(let negotiated):
            self.state = .established
            return .established(negotiated, customerMessage: complete.customerMessage)
        case .awaitingRequest:
            self.state = .failed
            return .fail(reason: "unable to determine SessionType: HandshakeComplete arrived before HandshakeRequest")
        case .failed:
            return .fail(reason: "the handshake failed: the agent asked for something this client does not support")
        case .established:
            return .none
        }
    }
}
