import FoundationEssentials
import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import NIOCore

/// The read-only listings: DescribeSessions and DescribeInstanceInformation.
extension GatewayAPI {
    func describeSessions(_ input: JSONValue, call: APICall) throws(APIError) -> JSONValue {
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
                guard let epoch = WallClock.parseISO8601(value) else {
                    throw APIError(
                        400,
                        "InvalidFilterValue",
                        "\(key) must be an ISO 8601 time with its zone, such as 2026-11-29T00:00:00Z, or a date (2026-11-29)."
                    )
                }
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
                && self.allows(call, "ssm:DescribeSessions", RequestedResource([self.resources.session(session.id)]))
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
                        if let recording = self.recordingJSON(session.id) {
                            members.append(("JumpgateRecording", recording))
                        }
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

    func describeInstanceInformation(call: APICall) -> JSONValue {
        let visible = self.state.instances().filter {
            self.allows(call, "ssm:DescribeInstanceInformation", self.instanceResource($0.id))
        }
        return [
            "InstanceInformationList": .array(
                visible.map { instance in
                    var members: [(key: String, value: JSONValue)] = [
                        ("InstanceId", .string(instance.id)),
                        ("PingStatus", instance.online ? "Online" : "ConnectionLost"),
                    ]
                    // Absent (as in AWS's answers) for an agent that never connected, not 1970.
                    if instance.lastPingEpoch > 0 {
                        members.append(("LastPingDateTime", .integer(instance.lastPingEpoch)))
                    }
                    members += [
                        ("AgentVersion", .string(instance.agentVersion)), ("IsLatestVersion", false),
                        ("PlatformType", .string(instance.platformType)),
                        ("PlatformName", .string(instance.platformName)),
                        ("PlatformVersion", .string(instance.platformVersion)),
                        ("ActivationId", .string(instance.activationID)),
                        ("RegistrationDate", .integer(instance.registeredEpoch)), ("ResourceType", "ManagedInstance"),
                        ("Name", .string(instance.name)), ("IPAddress", .string(instance.ipAddress)),
                        ("ComputerName", .string(instance.hostname)),
                    ]
                    return .object(members)
                }
            )
        ]
    }

    /// `host:port` a port session reaches (the agent's host itself for AWS-StartPortForwardingSession),
    /// brackets around an IPv6 host; nil for documents without a port.
    static func destination(of session: SessionRecord) -> String? {
        let values = Dictionary(session.parameters.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        guard let port = values["portNumber"] else { return nil }
        return HostPort.text(values["host"] ?? "localhost", port)
    }
}
