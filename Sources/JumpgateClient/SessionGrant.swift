import JumpgateWire

/// The response of StartSession or ResumeSession.
public struct SessionGrant: Sendable {
    public var sessionID: String
    public var tokenValue: String
    public var streamURL: String
    /// Jumpgate gateways say when they end sessions by themselves (absent from AWS's responses).
    public var idleTimeoutSeconds: Int64?
    public var maximumDurationSeconds: Int64?
    /// Jumpgate gateways also say what the session document resolved to: its session type and the
    /// properties the agent got (host, portNumber, localPortNumber, type), so the client does not guess
    /// from the document's name.
    public var sessionType: String?
    public var properties: [String: String] = [:]
    /// What of the session its agent records ("output", "output and input"); nil: not recorded.
    public var recorded: String?
    /// The relay-blind path the gateway offered (StartSession's `JumpgateBlindPath`, asked for with the
    /// request's `JumpgateBlindPath: true`; docs/BLIND-RELAY.md); nil: the WebSocket path only.
    public var blindPath: BlindPathOffer?

    /// What the client needs for the relay-blind path: its pairing token, the secret it shows the agent
    /// inside TLS, and the agent certificate's hash it pins.
    public struct BlindPathOffer: Sendable, Equatable {
        public var pairingToken: String
        public var clientSecret: String
        public var agentCertificateSHA256: String

        init?(json: JSONValue?) {
            guard let token = json?["PairingToken"]?.stringValue, token.count == PairingLine.tokenLength,
                let secret = json?["ClientSecret"]?.stringValue, secret.count == PairingLine.tokenLength,
                let hash = json?["AgentCertificateSHA256"]?.stringValue, hash.count == 64,
                hash.allSatisfy(\.isHexDigit)
            else { return nil }
            self.pairingToken = token
            self.clientSecret = secret
            self.agentCertificateSHA256 = hash.lowercased()
        }
    }

    /// Whether the client's standard output carries the session's stream and nothing else (a
    /// non-interactive command, or a Port document without LocalPortForwarding): its own lines go to
    /// standard error. Nil when the gateway did not say.
    public var outputIsTheStream: Bool? {
        guard let type = self.sessionType else { return nil }
        switch type {
        case "NonInteractiveCommands": return true
        case "Port": return self.properties["type"] != "LocalPortForwarding"
        default: return false
        }
    }

    public init(sessionID: String, tokenValue: String, streamURL: String) {
        self.sessionID = sessionID
        self.tokenValue = tokenValue
        self.streamURL = streamURL
    }

    /// The line a person sees at start about the gateway's limits, or nil when it announced none.
    public var limitsNotice: String? {
        var parts: [String] = []
        if let idle = self.idleTimeoutSeconds {
            parts.append(
                "the gateway ends this session after \(Self.duration(idle)) without traffic "
                    + "(tools that keep idle pooled connections, such as GUI database clients, should enable keep-alive)"
            )
        }
        if let maximum = self.maximumDurationSeconds {
            parts.append("sessions last at most \(Self.duration(maximum))")
        }
        if let recorded = self.recorded { parts.append("this session is recorded (its \(recorded))") }
        return parts.isEmpty ? nil : "Note: " + parts.joined(separator: "; ") + "."
    }

    static func duration(_ seconds: Int64) -> String {
        if seconds % 60 == 0 { return "\(seconds / 60) minute\(seconds == 60 ? "" : "s")" }
        return "\(seconds) seconds"
    }

    public init(json: JSONValue) throws {
        guard let id = json["SessionId"]?.stringValue, let token = json["TokenValue"]?.stringValue,
            let url = json["StreamUrl"]?.stringValue,
            !id.isEmpty, !token.isEmpty, !url.isEmpty
        else { throw ClientError("The StartSession response lacks SessionId, TokenValue or StreamUrl.") }
        self.init(sessionID: id, tokenValue: token, streamURL: url)
        self.idleTimeoutSeconds = json["JumpgateIdleTimeoutSeconds"]?.int64Value
        self.maximumDurationSeconds = json["JumpgateMaxSessionDurationSeconds"]?.int64Value
        self.sessionType = json["JumpgateSessionType"]?.stringValue
        self.recorded = json["JumpgateRecorded"]?.stringValue
        self.blindPath = BlindPathOffer(json: json["JumpgateBlindPath"])
        for (key, value) in json["JumpgateProperties"]?.objectValue ?? [] {
            if let text = value.stringValue { self.properties[key] = text }
        }
    }
}
