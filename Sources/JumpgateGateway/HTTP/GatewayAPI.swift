import FoundationEssentials
import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import NIOCore

/// The SSM JSON 1.1 operations, on top of ``GatewayState``. Input is validated here; every failure is an
/// ``APIError`` with AWS's error type.
struct GatewayAPI: Sendable {
    let state: GatewayState

    /// The session document StartSession uses when it names none, as in SSM: a shell.
    static let shellDocumentName = BuiltInDocuments.shell

    /// An operation's answer: at once, or once what it reports is on disk (a revocation, an activation).
    enum Answer {
        /// A read: nothing to write first.
        case read(JSONValue)
        /// Changes were submitted to the store: answered once they are written.
        case now(JSONValue)
        case later(EventLoopFuture<JSONValue>)
        /// A change already in force in memory (users, keys, policies, tags: a revocation takes effect at
        /// once), answered once written; if the write fails the answer says the change will not survive a
        /// restart.
        case applied(JSONValue)
    }

    /// Runs an SSM operation for an authenticated caller: authorised first (``authorize``), then done.
    func handle(
        operation: String,
        input: JSONValue,
        call: inout APICall,
        on eventLoop: any EventLoop
    ) throws(APIError) -> Answer {
        let action = "ssm:" + operation
        switch operation {
        case "StartSession": return .now(try self.startSession(input, call: &call))
        case "TerminateSession":
            let id = try Self.string(input, "SessionId", maxLength: 96)
            try self.authorizeSession(&call, action, sessionID: id)
            return .later(try self.terminateSession(id, user: call.user, on: eventLoop))
        case "ResumeSession":
            let id = try Self.string(input, "SessionId", maxLength: 96)
            try self.authorizeSession(&call, action, sessionID: id)
            return .now(try self.resumeSession(id, blindPath: input["JumpgateBlindPath"]))
        case "DescribeSessions":
            try self.authorizeListing(&call, action)
            return .read(try self.describeSessions(input, call: call))
        case "DescribeInstanceInformation":
            try self.authorizeListing(&call, action)
            return .read(self.describeInstanceInformation(call: call))
        case "CreateActivation":
            try self.authorize(&call, action, [RequestedResource([self.resources.activation("*")])])
            return .later(try self.createActivation(input, on: eventLoop))
        case "DescribeActivations":
            try self.authorizeListing(&call, action)
            return .read(self.describeActivations(call: call))
        case "DeleteActivation":
            let id = try Self.string(input, "ActivationId")
            try self.authorize(&call, action, [RequestedResource([self.resources.activation(id)])])
            return .later(try self.state.deleteActivation(id: id, on: eventLoop).map { [:] })
        case "DeregisterManagedInstance":
            let id = try Self.string(input, "InstanceId", maxLength: 64)
            call.target = id
            try self.authorize(&call, action, [self.instanceResource(id)])
            return .later(try self.deregister(id, user: call.user, on: eventLoop))
        case "AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource":
            return try self.tags(operation: operation, input, call: &call)
        case _ where Self.documentOperations.contains(operation):
            return try self.handleDocuments(operation: operation, input: input, call: &call)
        default:
            throw APIError(400, "UnknownOperationException", "Unknown operation \(operation).")
        }
    }

    /// A timestamp in seconds since 1970 as the AWS CLI sends one: an integer, or a number with a fraction
    /// (dropped). Nil for anything else, and for a number past Int64's range (`Int64(1e300)` would trap and
    /// take the gateway down with one request).
    static func epochSeconds(_ value: JSONValue) -> Int64? {
        switch value {
        case .integer(let seconds): return seconds
        case .double(let seconds): return Int64(exactly: seconds.rounded(.towardZero))
        default: return nil
        }
    }

    static func string(_ input: JSONValue, _ key: String, maxLength: Int = 1024) throws(APIError) -> String {
        guard let value = input[key]?.stringValue, !value.isEmpty else {
            throw APIError(
                400,
                "ValidationException",
                "1 validation error detected: Value at '\(key)' failed to satisfy constraint: Member must not be null"
            )
        }
        guard value.count <= maxLength else {
            throw APIError(
                400,
                "ValidationException",
                "Value at '\(key)' failed to satisfy constraint: Member must have length less than or equal to \(maxLength)"
            )
        }
        return value
    }

    func startSession(_ input: JSONValue, call: inout APICall) throws(APIError) -> JSONValue {
        let target = try Self.string(input, "Target", maxLength: 400)
        call.target = target
        let documentName = input["DocumentName"]?.stringValue ?? Self.shellDocumentName
        let document: DocumentCatalog.Found
        do {
            document = try self.state.document(documentName)
        } catch {
            throw APIError(
                400,
                "InvalidDocument",
                "Document \(documentName.prefix(128)) does not exist; the built-in ones are \(BuiltInDocuments.contents.keys.sorted().joined(separator: ", ")) (\(Self.shellDocumentName), a shell, is the default), and aws ssm list-documents lists the others."
            )
        }
        let resolved: SessionDocumentContent.Resolved
        do {
            resolved = try document.parsed.resolve(input["Parameters"]?.objectValue ?? [], documentName: documentName)
        } catch {
            throw APIError(400, error.type, error.message)
        }
        let sessionType = document.parsed.sessionType
        let properties = resolved.properties
        // What the agent gets is rebuilt from exactly what was checked and authorised below.
        var agentProperties: JSONValue = [:]
        var context: [String: [String]] = [
            "ssm:SessionDocumentAccessCheck": ["true"], "jumpgate:SessionType": [sessionType],
        ]
        switch sessionType {
        case "Port":
            guard let port = properties["portNumber"]?.stringValue.flatMap(Int.init), (1...65535).contains(port) else {
                throw APIError(400, "InvalidParameters", "portNumber must be a number from 1 to 65535.")
            }
            if let text = properties["localPortNumber"]?.stringValue {
                guard let local = Int(text), (0...65535).contains(local) else {
                    throw APIError(400, "InvalidParameters", "localPortNumber must be a number from 0 to 65535.")
                }
            }
            let host = properties["host"]?.stringValue
            if let host, !Self.isValidHost(host) {
                throw APIError(400, "InvalidParameters", "host '\(host)' is not a valid DNS name or IP address.")
            }
            // The destination is context: a policy can name the hosts and ports a session may reach.
            context["jumpgate:RemoteHost"] = [HostName.normalized(host ?? "localhost")]
            context["jumpgate:RemotePort"] = ["\(port)"]
            var members: [(key: String, value: JSONValue)] = [("portNumber", .string("\(port)"))]
            if let host { members.append(("host", .string(host))) }
            if let type = properties["type"]?.stringValue { members.append(("type", .string(type))) }
            if let local = properties["localPortNumber"]?.stringValue {
                members.append(("localPortNumber", .string(local)))
            }
            agentProperties = .object(members)
        case "InteractiveCommands", "NonInteractiveCommands":
            let commands = properties["linux"]?["commands"]
            let command =
                commands?.stringValue ?? commands?.arrayValue?.compactMap(\.stringValue).joined(separator: "\n") ?? ""
            guard !command.allSatisfy(\.isWhitespace), command.utf8.count <= 16_384, !command.utf8.contains(0) else {
                throw APIError(
                    400,
                    "InvalidParameters",
                    "command must be a non-empty command line of at most 16384 bytes without NUL characters."
                )
            }
            agentProperties = ["linux": ["commands": .string(command), "runAsElevated": false]]
        default:
            break
        }
        // Authorised against the target and the document (a shell is its own document, so a policy that
        // allows only the port-forwarding documents allows no shell).
        try self.authorize(
            &call,
            "ssm:StartSession",
            [self.instanceResource(target), RequestedResource(self.resources.document(documentName))],
            context: context
        )
        let reason = input["Reason"]?.stringValue ?? ""
        let (session, token) = try self.state.createSession(
            owner: call.user,
            target: target,
            documentName: documentName,
            parameters: resolved.values,
            reason: reason,
            documentLimits: self.state.documentCatalog.limits(for: document.parsed)
        )
        call.sessionID = session.id
        // Shells and commands are recorded by their agent (docs/SESSIONS.md, "Recordings").
        var recording: JSONValue?
        if sessionType != "Port", self.state.recordingSettings.enabled, self.state.store != nil {
            let record = self.state.startRecording(sessionID: session.id)
            recording = [
                "recordInput": .bool(self.state.documentCatalog.recordsInput(for: document.parsed)),
                "maxBytes": .integer(record.maximumBytes),
            ]
        }
        // What the account's preferences (or the document's own inputs) say of shells, as SSM sends it.
        var inputs: [(key: String, value: JSONValue)] = []
        if sessionType != "Port" {
            let (runAs, profile) = self.state.documentCatalog.shellSettings(for: document.parsed)
            if let runAs { inputs += [("runAsEnabled", true), ("runAsDefaultUser", .string(runAs))] }
            if let profile, sessionType == "Standard_Stream" {
                inputs.append(("shellProfile", ["linux": .string(profile)]))
            }
        }
        if let recording { inputs.append(("jumpgateRecording", recording)) }
        // The relay-blind path, for a Jumpgate client that asks for it (docs/BLIND-RELAY.md): port sessions
        // whose agent serves it, on a gateway that carries it.
        var blind: BlindOffer?
        if sessionType == "Port", input["JumpgateBlindPath"]?.boolValue == true {
            blind = self.state.offerBlindPath(sessionID: session.id, instanceID: target)
        }
        if let blind { inputs.append(("jumpgateBlindPath", blind.agentJSON)) }
        do {
            try self.pushStart(
                session,
                sessionType: sessionType,
                properties: agentProperties,
                description: document.parsed.description,
                inputs: .object(inputs)
            )
        } catch {
            self.state.dropRecording(sessionID: session.id)
            self.state.withdrawBlindPath(sessionID: session.id)
            throw error
        }
        var response: JSONValue = [
            "SessionId": .string(session.id), "TokenValue": .string(token),
            "StreamUrl": .string(self.streamURL(session.id)),
        ]
        // Jumpgate's own clients print these at start (AWS's CLI drops fields it does not know).
        if case .object(var members) = response {
            let limits = GatewayState.limits(
                of: session,
                idle: self.state.limits.idleTimeoutSeconds,
                maximumDuration: self.state.limits.maximumDurationSeconds
            )
            if limits.idle < .max { members.append(("JumpgateIdleTimeoutSeconds", .integer(limits.idle))) }
            // What the document resolved to: the client decides from it, not from the document's name.
            members.append(("JumpgateSessionType", .string(sessionType)))
            if let blind { members.append(("JumpgateBlindPath", blind.clientJSON)) }
            if sessionType == "Port" { members.append(("JumpgateProperties", agentProperties)) }
            if let recording {
                let what = recording["recordInput"]?.boolValue == true ? "output and input" : "output"
                members.append(("JumpgateRecorded", .string(what)))
            }
            if let maximum = limits.maximum {
                members.append(("JumpgateMaxSessionDurationSeconds", .integer(maximum)))
            }
            response = .object(members)
        }
        return response
    }

    func terminateSession(
        _ id: String,
        user: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        guard let session = self.state.session(id: id) else {
            throw APIError(400, "DoesNotExistException", "Session \(id) does not exist.")
        }
        let (state, reason) = (self.state, "Session terminated by \(user).")
        // On disk first; then the peers are told (the record is already Terminated, so no second write).
        return state.terminateDurably(sessionID: id, reason: reason, on: eventLoop).map {
            Self.terminate(session, state: state, reason: reason)
            return ["SessionId": .string(id)]
        }
    }

    static func terminate(
        _ session: SessionRecord,
        state: GatewayState,
        reason: String,
        status: SessionStatus = .terminated
    ) {
        state.setStatus(sessionID: session.id, status, reason: reason)
        state.withdrawBlindPath(sessionID: session.id)
        state.relay(sessionID: session.id)?.terminate(reason: reason)
        if let control = state.controlChannel(instanceID: session.target) {
            let closed = ChannelClosedPayload(
                createdDate: SessionRelay.isoNow(),
                destinationID: session.target,
                sessionID: session.id,
                output: reason
            )
            let message = SSMMessage(
                messageType: .channelClosed,
                createdDate: SessionRelay.nowMilliseconds(),
                payload: closed.encoded()
            )
            let frame = message.encoded()
            control.writeAndFlush(WebSocketMessage.binary(frame), promise: nil)
        }
    }

    /// Removes an agent: its credentials stop working, its sessions end with a reason, its control channel closes.
    func deregister(
        _ id: String,
        user: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let state = self.state
        return try state.deregister(instanceID: id, on: eventLoop).map { control, sessions in
            let reason = "The managed instance \(id) was deregistered by \(user)."
            for session in sessions {
                state.setStatus(sessionID: session.id, .terminated, reason: reason)
                state.relay(sessionID: session.id)?.terminate(reason: reason)
            }
            control?.close(promise: nil)
            return [:]
        }
    }

    /// ResumeSession. A Jumpgate client whose relay-blind pair broke asks for the path again
    /// (`JumpgateBlindPath: true`); the answer carries a new offer when the gateway makes or kept one
    /// (``BlindReoffer``).
    func resumeSession(_ id: String, blindPath: JSONValue? = nil) throws(APIError) -> JSONValue {
        let token = try self.state.resumeSession(id: id)
        var members: [(key: String, value: JSONValue)] = [
            ("SessionId", .string(id)), ("TokenValue", .string(token)), ("StreamUrl", .string(self.streamURL(id))),
        ]
        if blindPath?.boolValue == true, let target = self.state.session(id: id)?.target {
            let (half, _) = self.state.reofferBlindPath(
                sessionID: id,
                instanceID: target,
                side: .client,
                certificateSHA256: nil
            )
            if let json = half?.clientJSON { members.append(("JumpgateBlindPath", json)) }
        }
        return .object(members)
    }

    func createActivation(
        _ input: JSONValue,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let role = try Self.string(input, "IamRole", maxLength: 64)
        let limit = input["RegistrationLimit"]?.int64Value ?? 1
        guard (1...1000).contains(limit) else {
            throw APIError(400, "ValidationException", "RegistrationLimit must be from 1 to 1000.")
        }
        var expiration: Int64?
        switch input["ExpirationDate"] {
        case .none, .some(.null): break
        case .some(let value):
            guard let seconds = Self.epochSeconds(value) else {
                throw APIError(400, "ValidationException", "ExpirationDate must be a timestamp.")
            }
            expiration = seconds
        }
        // As AWS: an activation expires in the future, at most 30 days from now.
        if let expiration {
            let now = self.state.clock()
            guard expiration > now else {
                throw APIError(400, "ValidationException", "ExpirationDate must be in the future.")
            }
            // Five minutes of slack: a client that asked for exactly 30 days by its own clock.
            guard expiration <= now + 30 * 86400 + 300 else {
                throw APIError(400, "ValidationException", "ExpirationDate must be at most 30 days from now.")
            }
        }
        return self.state.createActivation(
            iamRole: role,
            description: input["Description"]?.stringValue ?? "",
            defaultInstanceName: input["DefaultInstanceName"]?.stringValue ?? "",
            registrationLimit: Int(limit),
            expirationEpoch: expiration,
            tags: try Self.tagList(input["Tags"]),
            on: eventLoop
        ).map { id, code in ["ActivationId": .string(id), "ActivationCode": .string(code)] }
    }

    func describeActivations(call: APICall) -> JSONValue {
        let now = self.state.clock()
        let visible = self.state.activations().filter {
            self.allows(call, "ssm:DescribeActivations", RequestedResource([self.resources.activation($0.id)]))
        }
        return [
            "ActivationList": .array(
                visible.map { a in
                    [
                        "ActivationId": .string(a.id), "Description": .string(a.description),
                        "DefaultInstanceName": .string(a.defaultInstanceName), "IamRole": .string(a.iamRole),
                        "RegistrationLimit": .integer(Int64(a.registrationLimit)),
                        "RegistrationsCount": .integer(Int64(a.registrationsCount)),
                        "ExpirationDate": .integer(a.expirationEpoch),
                        "Expired": .bool(a.expirationEpoch <= now), "CreatedDate": .integer(a.createdEpoch),
                    ]
                }
            )
        ]
    }

    func register(_ input: JSONValue, source: String) throws(APIError) -> JSONValue {
        let registration = GatewayState.Registration(
            activationID: try Self.string(input, "ActivationId", maxLength: 64),
            activationCode: try Self.string(input, "ActivationCode", maxLength: 250),
            name: input["Name"]?.stringValue ?? "",
            platformType: input["PlatformType"]?.stringValue ?? "Linux",
            platformName: input["PlatformName"]?.stringValue ?? "",
            platformVersion: input["PlatformVersion"]?.stringValue ?? "",
            agentVersion: input["AgentVersion"]?.stringValue ?? "",
            hostname: input["Hostname"]?.stringValue ?? "",
            ipAddress: input["IPAddress"]?.stringValue ?? "",
            tags: try Self.tagList(input["Tags"])
        )
        let instance = try self.state.register(registration, source: source)
        return [
            "InstanceId": .string(instance.id), "AccessKeyId": .string(instance.id),
            "SecretAccessKey": .string(instance.secret),
        ]
    }

    /// A DNS name (labels of letters, digits and hyphens) or an IP address, at most 253 characters.
    static func isValidHost(_ host: String) -> Bool {
        if IPAddressBytes.parse(host) != nil { return true }
        guard !host.isEmpty, host.utf8.count <= 253 else { return false }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }
}
