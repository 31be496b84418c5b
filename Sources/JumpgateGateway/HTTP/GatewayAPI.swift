import Foundation
import JumpgateNIO
import JumpgateWire
import NIOCore

/// The SSM JSON 1.1 operations, on top of ``GatewayState``. Input is validated here; every failure is an
/// ``APIError`` with AWS's error type.
struct GatewayAPI: Sendable {
    let state: GatewayState

    static let documents: [String: (parameters: [String], required: [String], defaults: [String: String])] = [
        "AWS-StartPortForwardingSession": (
            ["portNumber", "localPortNumber"], ["portNumber"], ["localPortNumber": "0"]
        ),
        "AWS-StartPortForwardingSessionToRemoteHost": (
            ["host", "portNumber", "localPortNumber"], ["host", "portNumber"], ["localPortNumber": "0"]
        ),
    ]

    /// An operation's answer: at once, or once what it reports is on disk (a revocation, an activation).
    enum Answer {
        /// A read: nothing to write first.
        case read(JSONValue)
        /// Changes were submitted to the store: answered once they are written.
        case now(JSONValue)
        case later(EventLoopFuture<JSONValue>)
    }

    func handle(
        operation: String,
        input: JSONValue,
        user: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> Answer {
        switch operation {
        case "StartSession": return .now(try self.startSession(input, user: user))
        case "TerminateSession": return .later(try self.terminateSession(input, user: user, on: eventLoop))
        case "ResumeSession": return .now(try self.resumeSession(input, user: user))
        case "DescribeSessions": return .read(try self.describeSessions(input))
        case "DescribeInstanceInformation": return .read(self.describeInstanceInformation())
        case "CreateActivation": return .later(try self.createActivation(input, on: eventLoop))
        case "DescribeActivations": return .read(self.describeActivations())
        case "DeleteActivation":
            let id = try Self.string(input, "ActivationId")
            return .later(try self.state.deleteActivation(id: id, on: eventLoop).map { [:] })
        case "DeregisterManagedInstance": return .later(try self.deregister(input, user: user, on: eventLoop))
        default:
            throw APIError(400, "UnknownOperationException", "Unknown operation \(operation).")
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

    func startSession(_ input: JSONValue, user: String) throws(APIError) -> JSONValue {
        let target = try Self.string(input, "Target", maxLength: 400)
        let documentName = input["DocumentName"]?.stringValue ?? "SSM-SessionManagerRunShell"
        guard let document = Self.documents[documentName] else {
            throw APIError(
                400,
                "InvalidDocument",
                "Document \(documentName) is not supported; use AWS-StartPortForwardingSession or AWS-StartPortForwardingSessionToRemoteHost."
            )
        }
        var values: [String: String] = document.defaults
        for (key, value) in input["Parameters"]?.objectValue ?? [] {
            guard document.parameters.contains(key) else {
                throw APIError(400, "InvalidParameters", "Parameter \(key) is not defined in \(documentName).")
            }
            guard let list = value.arrayValue, list.count == 1, let text = list[0].stringValue else {
                throw APIError(400, "InvalidParameters", "Parameter \(key) must be a list with one string.")
            }
            values[key] = text
        }
        for key in document.required where values[key] == nil {
            throw APIError(400, "InvalidParameters", "Parameter \(key) is required by \(documentName).")
        }
        guard let port = values["portNumber"].flatMap(Int.init), (1...65535).contains(port) else {
            throw APIError(400, "InvalidParameters", "portNumber must be a number from 1 to 65535.")
        }
        guard let local = values["localPortNumber"].flatMap(Int.init), (0...65535).contains(local) else {
            throw APIError(400, "InvalidParameters", "localPortNumber must be a number from 0 to 65535.")
        }
        if let host = values["host"], !Self.isValidHost(host) {
            throw APIError(400, "InvalidParameters", "host '\(host)' is not a valid DNS name or IP address.")
        }
        let reason = input["Reason"]?.stringValue ?? ""
        let parameters = document.parameters.compactMap { key in values[key].map { (key: key, value: $0) } }
        let (session, token) = try self.state.createSession(
            owner: user,
            target: target,
            documentName: documentName,
            parameters: parameters,
            reason: reason
        )
        try self.pushStart(session)
        var response: JSONValue = [
            "SessionId": .string(session.id), "TokenValue": .string(token),
            "StreamUrl": .string(self.streamURL(session.id)),
        ]
        // Jumpgate's own clients print these at start (AWS's CLI drops fields it does not know).
        if case .object(var members) = response {
            if self.state.limits.idleTimeoutSeconds < .max {
                members.append(("JumpgateIdleTimeoutSeconds", .integer(self.state.limits.idleTimeoutSeconds)))
            }
            if let maximum = self.state.limits.maximumDurationSeconds {
                members.append(("JumpgateMaxSessionDurationSeconds", .integer(maximum)))
            }
            response = .object(members)
        }
        return response
    }

    func streamURL(_ sessionID: String) -> String {
        "\(self.state.streamBase)/v1/data-channel/\(sessionID)?role=publish_subscribe"
    }

    /// Sends `interactive_shell` with the resolved document to the target's control channel.
    func pushStart(_ session: SessionRecord) throws(APIError) {
        guard let channel = self.state.controlChannel(instanceID: session.target) else {
            self.state.setStatus(sessionID: session.id, .failed, reason: "the target disconnected")
            throw APIError(400, "TargetNotConnected", "\(session.target) is not connected.")
        }
        var properties: [(key: String, value: JSONValue)] = []
        for (key, value) in session.parameters { properties.append((key, .string(value))) }
        properties.append(("type", "LocalPortForwarding"))
        let content: JSONValue = [
            "schemaVersion": "1.0", "description": "Port forwarding through Jumpgate", "sessionType": "Port",
            "properties": .object(properties),
        ]
        let task = AgentTaskPayload(
            documentName: session.documentName,
            sessionID: session.id,
            documentContent: content,
            parameters: session.parameters,
            sessionOwner: session.owner
        )
        let payload = MGSPayload(content: task.json.serialized(), taskID: session.id, topic: "aws.ssm.StartSession")
        let message = SSMMessage(
            messageType: .interactiveShell,
            createdDate: SessionRelay.nowMilliseconds(),
            payload: payload.encoded()
        )
        let frame = message.encoded()
        channel.writeAndFlush(WebSocketMessage.binary(frame), promise: nil)
    }

    func terminateSession(
        _ input: JSONValue,
        user: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let id = try Self.string(input, "SessionId", maxLength: 96)
        guard let session = self.state.session(id: id), session.owner == user else {
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
        _ input: JSONValue,
        user: String,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let id = try Self.string(input, "InstanceId", maxLength: 64)
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

    func resumeSession(_ input: JSONValue, user: String) throws(APIError) -> JSONValue {
        let id = try Self.string(input, "SessionId", maxLength: 96)
        let token = try self.state.resumeSession(id: id, owner: user)
        return ["SessionId": .string(id), "TokenValue": .string(token), "StreamUrl": .string(self.streamURL(id))]
    }

    func describeSessions(_ input: JSONValue) throws(APIError) -> JSONValue {
        let wanted = try Self.string(input, "State")
        guard wanted == "Active" || wanted == "History" else {
            throw APIError(400, "ValidationException", "State must be Active or History.")
        }
        // AWS's filters: InvokedAfter, InvokedBefore (ISO 8601), Target, Owner, Status, SessionId.
        var predicates: [(SessionRecord) -> Bool] = []
        for filter in input["Filters"]?.arrayValue ?? [] {
            guard let key = filter["key"]?.stringValue, let value = filter["value"]?.stringValue else {
                throw APIError(400, "ValidationException", "Each filter needs a key and a value.")
            }
            switch key {
            case "InvokedAfter", "InvokedBefore":
                guard let date = ISO8601DateFormatter().date(from: value) else {
                    throw APIError(
                        400,
                        "InvalidFilterValue",
                        "\(key) must be an ISO 8601 date such as 2026-11-29T00:00:00Z."
                    )
                }
                let epoch = Int64(date.timeIntervalSince1970)
                predicates.append(key == "InvokedAfter" ? { $0.startEpoch >= epoch } : { $0.startEpoch <= epoch })
            case "Target": predicates.append { $0.target == value }
            case "Owner": predicates.append { $0.owner == value }
            case "Status": predicates.append { $0.status.rawValue == value }
            case "SessionId": predicates.append { $0.id == value }
            default:
                throw APIError(
                    400,
                    "InvalidFilterKey",
                    "Unknown filter key \(key): use InvokedAfter, InvokedBefore, Target, Owner, Status or SessionId."
                )
            }
        }
        let maxResults = Int(input["MaxResults"]?.int64Value ?? 200)
        guard (1...200).contains(maxResults) else {
            throw APIError(400, "ValidationException", "MaxResults must be from 1 to 200.")
        }
        let offset: Int
        if let token = input["NextToken"]?.stringValue {
            guard let parsed = Int(token), parsed >= 0 else {
                throw APIError(400, "InvalidNextToken", "The NextToken is not valid.")
            }
            offset = parsed
        } else {
            offset = 0
        }
        let sessions = self.state.sessions().filter { session in
            let ended = session.status.isEnded
            return (wanted == "History" ? ended : !ended) && predicates.allSatisfy { $0(session) }
        }
        let page = sessions.dropFirst(offset).prefix(maxResults)
        var result: [(key: String, value: JSONValue)] = [
            (
                "Sessions",
                .array(
                    page.map { session in
                        var members: [(key: String, value: JSONValue)] = [
                            ("SessionId", .string(session.id)), ("Target", .string(session.target)),
                            ("Status", .string(session.status.rawValue)), ("StartDate", .integer(session.startEpoch)),
                            ("DocumentName", .string(session.documentName)), ("Owner", .string(session.owner)),
                            ("Reason", .string(session.reason)),
                        ]
                        if let end = session.endEpoch { members.append(("EndDate", .integer(end))) }
                        if let destination = Self.destination(of: session) {
                            members.append(("JumpgateDestination", .string(destination)))
                        }
                        // Jumpgate's own fields (AWS's CLI and SDKs ignore them): the traffic so far.
                        let (toAgent, toClient) = self.state.relayedBytes(of: session)
                        members.append(("JumpgateBytesToTarget", .integer(toAgent)))
                        members.append(("JumpgateBytesFromTarget", .integer(toClient)))
                        // AWS reserves Details; Jumpgate puts why the session ended there.
                        if !session.closeReason.isEmpty { members.append(("Details", .string(session.closeReason))) }
                        return .object(members)
                    }
                )
            )
        ]
        if offset + page.count < sessions.count { result.append(("NextToken", .string("\(offset + page.count)"))) }
        return .object(result)
    }

    func describeInstanceInformation() -> JSONValue {
        [
            "InstanceInformationList": .array(
                self.state.instances().map { instance in
                    [
                        "InstanceId": .string(instance.id), "PingStatus": instance.online ? "Online" : "ConnectionLost",
                        "LastPingDateTime": .integer(instance.lastPingEpoch),
                        "AgentVersion": .string(instance.agentVersion),
                        "IsLatestVersion": false, "PlatformType": .string(instance.platformType),
                        "PlatformName": .string(instance.platformName),
                        "PlatformVersion": .string(instance.platformVersion),
                        "ActivationId": .string(instance.activationID),
                        "RegistrationDate": .integer(instance.registeredEpoch),
                        "ResourceType": "ManagedInstance", "Name": .string(instance.name),
                        "IPAddress": .string(instance.ipAddress),
                        "ComputerName": .string(instance.hostname),
                    ]
                }
            )
        ]
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
        case .some(.double(let seconds)): expiration = Int64(seconds)
        case .some(.integer(let seconds)): expiration = seconds
        default: throw APIError(400, "ValidationException", "ExpirationDate must be a timestamp.")
        }
        // As AWS: an activation expires in the future, at most 30 days from now.
        if let expiration {
            let now = self.state.clock()
            guard expiration > now else {
                throw APIError(400, "ValidationException", "ExpirationDate must be in the future.")
            }
            guard expiration <= now + 30 * 86400 else {
                throw APIError(400, "ValidationException", "ExpirationDate must be at most 30 days from now.")
            }
        }
        return self.state.createActivation(
            iamRole: role,
            description: input["Description"]?.stringValue ?? "",
            defaultInstanceName: input["DefaultInstanceName"]?.stringValue ?? "",
            registrationLimit: Int(limit),
            expirationEpoch: expiration,
            on: eventLoop
        ).map { id, code in ["ActivationId": .string(id), "ActivationCode": .string(code)] }
    }

    func describeActivations() -> JSONValue {
        let now = self.state.clock()
        return [
            "ActivationList": .array(
                self.state.activations().map { a in
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
            ipAddress: input["IPAddress"]?.stringValue ?? ""
        )
        let instance = try self.state.register(registration, source: source)
        return [
            "InstanceId": .string(instance.id), "AccessKeyId": .string(instance.id),
            "SecretAccessKey": .string(instance.secret),
        ]
    }

    /// `host:port` a port session reaches (the agent's host itself for AWS-StartPortForwardingSession),
    /// brackets around an IPv6 host; nil for documents without a port.
    static func destination(of session: SessionRecord) -> String? {
        let values = Dictionary(session.parameters.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        guard let port = values["portNumber"] else { return nil }
        let host = values["host"] ?? "localhost"
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
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
