/// One action the agent asks the client to perform in its HandshakeRequest (spec §6.1).
public struct RequestedClientAction: Hashable, Sendable {
    public var actionType: String
    public var actionParameters: JSONValue

    public init(actionType: String, actionParameters: JSONValue) {
        self.actionType = actionType
        self.actionParameters = actionParameters
    }

    public static let sessionTypeAction = "SessionType"
    public static let kmsEncryptionAction = "KMSEncryption"
}

/// HandshakeRequest (PayloadType 5), agent to client.
public struct HandshakeRequestPayload: SSMJSONPayload, Hashable {
    public var agentVersion: String
    public var requestedClientActions: [RequestedClientAction]

    public init(agentVersion: String, requestedClientActions: [RequestedClientAction]) {
        self.agentVersion = agentVersion
        self.requestedClientActions = requestedClientActions
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "HandshakeRequest")
        self.agentVersion = try f.optionalString("AgentVersion")
        var actions: [RequestedClientAction] = []
        for element in try f.optionalArray("RequestedClientActions") {
            let a = try JSONFields(element, owner: "RequestedClientAction")
            actions.append(
                RequestedClientAction(
                    actionType: try a.string("ActionType"),
                    actionParameters: a.raw("ActionParameters")
                )
            )
        }
        self.requestedClientActions = actions
    }

    public var json: JSONValue {
        [
            "AgentVersion": .string(self.agentVersion),
            "RequestedClientActions": .array(
                self.requestedClientActions.map {
                    ["ActionType": .string($0.actionType), "ActionParameters": $0.actionParameters]
                }
            ),
        ]
    }
}

/// The status of a processed client action.
public struct ActionStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public static let success = ActionStatus(rawValue: 1)
    public static let failed = ActionStatus(rawValue: 2)
    public static let unsupported = ActionStatus(rawValue: 3)
}

/// What the client did with one requested action.
public struct ProcessedClientAction: Hashable, Sendable {
    public var actionType: String
    public var actionStatus: ActionStatus
    /// `null` for the official plugin's SessionType; a Jumpgate client puts its accepted extensions here.
    public var actionResult: JSONValue
    public var error: String

    public init(actionType: String, actionStatus: ActionStatus, actionResult: JSONValue = .null, error: String = "") {
        self.actionType = actionType
        self.actionStatus = actionStatus
        self.actionResult = actionResult
        self.error = error
    }
}

/// HandshakeResponse (PayloadType 6), client to agent.
public struct HandshakeResponsePayload: SSMJSONPayload, Hashable {
    public var clientVersion: String
    public var processedClientActions: [ProcessedClientAction]
    /// Go writes a nil slice as `null`; the official plugin sends `"Errors":null` when all went well.
    public var errors: [String]?

    public init(clientVersion: String, processedClientActions: [ProcessedClientAction], errors: [String]? = nil) {
        self.clientVersion = clientVersion
        self.processedClientActions = processedClientActions
        self.errors = errors
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "HandshakeResponse")
        self.clientVersion = try f.optionalString("ClientVersion")
        var actions: [ProcessedClientAction] = []
        for element in try f.optionalArray("ProcessedClientActions") {
            let a = try JSONFields(element, owner: "ProcessedClientAction")
            actions.append(
                ProcessedClientAction(
                    actionType: try a.string("ActionType"),
                    actionStatus: ActionStatus(rawValue: try a.optionalInt("ActionStatus")),
                    actionResult: a.raw("ActionResult"),
                    error: try a.optionalString("Error")
                )
            )
        }
        self.processedClientActions = actions
        if let errors = f.value["Errors"], !errors.isNull {
            guard let list = errors.arrayValue else {
                throw WireError(.invalidPayload, "HandshakeResponse: Errors is not an array")
            }
            self.errors = list.compactMap(\.stringValue)
        } else {
            self.errors = nil
        }
    }

    public var json: JSONValue {
        [
            "ClientVersion": .string(self.clientVersion),
            "ProcessedClientActions": .array(
                self.processedClientActions.map {
                    [
                        "ActionType": .string($0.actionType),
                        "ActionStatus": .integer($0.actionStatus.rawValue),
                        "ActionResult": $0.actionResult,
                        "Error": .string($0.error),
                    ]
                }
            ),
            "Errors": self.errors.map { .array($0.map { .string($0) }) } ?? .null,
        ]
    }
}

/// HandshakeComplete (PayloadType 7), agent to client.
public struct HandshakeCompletePayload: SSMJSONPayload, Hashable {
    /// A Go `time.Duration`: integer nanoseconds.
    public var handshakeTimeToComplete: Int64
    public var customerMessage: String

    public init(handshakeTimeToComplete: Int64, customerMessage: String = "") {
        self.handshakeTimeToComplete = handshakeTimeToComplete
        self.customerMessage = customerMessage
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "HandshakeComplete")
        self.handshakeTimeToComplete = try f.optionalInt("HandshakeTimeToComplete")
        self.customerMessage = try f.optionalString("CustomerMessage")
    }

    public var json: JSONValue {
        [
            "HandshakeTimeToComplete": .integer(self.handshakeTimeToComplete),
            "CustomerMessage": .string(self.customerMessage),
        ]
    }
}
