/// The envelope of `interactive_shell` and other MGS pushes (spec §8.2): `Content` is a JSON *string*
/// that itself holds JSON.
public struct MGSPayload: SSMJSONPayload, Hashable {
    public var content: String
    public var taskID: String
    public var topic: String
    public var schemaVersion: Int64

    public init(content: String, taskID: String, topic: String) {
        self.content = content
        self.taskID = taskID
        self.topic = topic
        self.schemaVersion = 1
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "MGSPayload")
        self.content = try f.string("Content")
        self.taskID = try f.optionalString("TaskId")
        self.topic = try f.optionalString("Topic")
        self.schemaVersion = try f.optionalInt("SchemaVersion")
    }

    public var json: JSONValue {
        [
            "Content": .string(self.content), "TaskId": .string(self.taskID), "Topic": .string(self.topic),
            "SchemaVersion": .integer(self.schemaVersion),
        ]
    }
}

/// The decoded `Content` of `interactive_shell`: which session to start, with which document.
public struct AgentTaskPayload: SSMJSONPayload, Hashable {
    public var documentName: String
    public var sessionID: String
    public var documentContent: JSONValue
    /// Resolved parameters, as plain strings (spec §8.2 relay advice).
    public var parameters: [(key: String, value: String)]
    public var runAsUser: String
    public var sessionOwner: String

    public init(
        documentName: String,
        sessionID: String,
        documentContent: JSONValue,
        parameters: [(key: String, value: String)],
        runAsUser: String = "",
        sessionOwner: String
    ) {
        self.documentName = documentName
        self.sessionID = sessionID
        self.documentContent = documentContent
        self.parameters = parameters
        self.runAsUser = runAsUser
        self.sessionOwner = sessionOwner
    }

    public static func == (lhs: AgentTaskPayload, rhs: AgentTaskPayload) -> Bool { lhs.json == rhs.json }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.json) }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "AgentTaskPayload")
        self.documentName = try f.optionalString("DocumentName")
        self.sessionID = try f.string("SessionId")
        self.documentContent = f.raw("DocumentContent")
        var parameters: [(key: String, value: String)] = []
        for (key, value) in f.raw("Parameters").objectValue ?? [] {
            switch value {
            case .string(let s): parameters.append((key, s))
            case .integer(let i): parameters.append((key, String(i)))
            case .array(let list) where list.count == 1 && list[0].stringValue != nil:
                parameters.append((key, list[0].stringValue!))
            default:
                throw WireError(.invalidPayload, "AgentTaskPayload: parameter \(key) is not a string")
            }
        }
        self.parameters = parameters
        self.runAsUser = try f.optionalString("RunAsUser")
        self.sessionOwner = try f.optionalString("SessionOwner")
    }

    public var json: JSONValue {
        [
            "DocumentName": .string(self.documentName),
            "SessionId": .string(self.sessionID),
            "DocumentContent": self.documentContent,
            "Parameters": .object(self.parameters.map { (key: $0.key, value: .string($0.value)) }),
            "RunAsUser": .string(self.runAsUser),
            "SessionOwner": .string(self.sessionOwner),
        ]
    }
}

/// `agent_task_complete` (agent to gateway, control channel): the session finished.
public struct AgentTaskCompletePayload: SSMJSONPayload, Hashable {
    public var taskID: String
    public var finalTaskStatus: String
    public var instanceID: String
    public var output: String
    public var retryNumber: Int64

    public init(taskID: String, finalTaskStatus: String, instanceID: String, output: String, retryNumber: Int64 = 0) {
        self.taskID = taskID
        self.finalTaskStatus = finalTaskStatus
        self.instanceID = instanceID
        self.output = output
        self.retryNumber = retryNumber
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "agent_task_complete")
        self.taskID = try f.string("TaskId")
        self.finalTaskStatus = try f.optionalString("FinalTaskStatus")
        self.instanceID = try f.optionalString("InstanceId")
        self.output = try f.optionalString("Output")
        self.retryNumber = try f.optionalInt("RetryNumber")
    }

    public var json: JSONValue {
        [
            "SchemaVersion": 1, "TaskId": .string(self.taskID), "Topic": "agent_task_complete",
            "FinalTaskStatus": .string(self.finalTaskStatus), "IsRoutingFailure": false, "AwsAccountId": "",
            "InstanceId": .string(self.instanceID), "Output": .string(self.output), "S3Bucket": "",
            "S3UrlSuffix": "", "CwlGroup": "", "CwlStream": "", "RetryNumber": .integer(self.retryNumber),
        ]
    }
}

/// `agent_task_acknowledge` (gateway to agent): acknowledges an `agent_task_complete` by its message id.
public struct AgentTaskAcknowledgePayload: SSMJSONPayload, Hashable {
    public var messageID: String
    public var taskID: String

    public init(messageID: MessageID, taskID: String) {
        self.messageID = messageID.description
        self.taskID = taskID
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "agent_task_acknowledge")
        self.messageID = try f.string("MessageId")
        self.taskID = try f.optionalString("TaskId")
    }

    public var json: JSONValue {
        [
            "SchemaVersion": 1, "MessageId": .string(self.messageID), "TaskId": .string(self.taskID),
            "Topic": "agent_task_complete",
        ]
    }
}

/// The text frame that opens a data channel (spec §3): the client's carries `ClientId`/`ClientVersion`,
/// the agent's `ClientInstanceId`.
public struct OpenDataChannelInput: SSMJSONPayload, Hashable {
    public var messageSchemaVersion: String
    public var requestID: String
    public var tokenValue: String
    public var clientInstanceID: String?
    public var clientID: String
    public var clientVersion: String?
    /// Jumpgate clients: what the gateway may tell them beyond the official protocol (comma-separated;
    /// `agent-status`: ``AgentStatusPayload`` messages). Official clients send no such key.
    public var jumpgateFeatures: String?

    public static let agentStatusFeature = "agent-status"

    public init(
        requestID: MessageID = .random(),
        tokenValue: String,
        clientInstanceID: String? = nil,
        clientID: String,
        clientVersion: String? = nil,
        jumpgateFeatures: String? = nil
    ) {
        self.jumpgateFeatures = jumpgateFeatures
        self.messageSchemaVersion = "1.0"
        self.requestID = requestID.description
        self.tokenValue = tokenValue
        self.clientInstanceID = clientInstanceID
        self.clientID = clientID
        self.clientVersion = clientVersion
    }

    public init(json: JSONValue) throws(WireError) {
        let f = try JSONFields(json, owner: "OpenDataChannelInput")
        self.messageSchemaVersion = try f.optionalString("MessageSchemaVersion")
        self.requestID = try f.optionalString("RequestId")
        self.tokenValue = try f.string("TokenValue")
        let instance = try f.optionalString("ClientInstanceId")
        self.clientInstanceID = instance.isEmpty ? nil : instance
        self.clientID = try f.optionalString("ClientId")
        let version = try f.optionalString("ClientVersion")
        self.clientVersion = version.isEmpty ? nil : version
        let features = try f.optionalString("JumpgateFeatures")
        self.jumpgateFeatures = features.isEmpty ? nil : features
    }

    /// Whether the client named `feature` in ``jumpgateFeatures``.
    public func wants(_ feature: String) -> Bool {
        self.jumpgateFeatures?.split(separator: ",").contains { $0.filter { $0 != " " } == feature } ?? false
    }

    public var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("MessageSchemaVersion", .string(self.messageSchemaVersion)),
            ("RequestId", .string(self.requestID)),
            ("TokenValue", .string(self.tokenValue)),
        ]
        if let instance = self.clientInstanceID { members.append(("ClientInstanceId", .string(instance))) }
        members.append(("ClientId", .string(self.clientID)))
        if let version = self.clientVersion { members.append(("ClientVersion", .string(version))) }
        if let features = self.jumpgateFeatures { members.append(("JumpgateFeatures", .string(features))) }
        return .object(members)
    }
}
