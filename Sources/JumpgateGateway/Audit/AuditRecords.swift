import FoundationEssentials
import Glibc
import JumpgateAccess
import JumpgateNIO
import JumpgateWire

/// CloudTrail-shaped records for what the gateway audits: API calls (allowed or refused), sessions'
/// ends, and the per-source summary of unauthenticated refusals.
public enum AuditRecords {
    /// What CloudTrail writes in place of a secret.
    static let hidden = "HIDDEN_DUE_TO_SECURITY_REASONS"
    static let secretKeys: Set<String> = [
        "secretaccesskey", "tokenvalue", "activationcode", "sessiontoken", "password", "secret",
        // StartSession's relay-blind offer (docs/BLIND-RELAY.md): whoever read them in time could pair.
        "pairingtoken", "clientsecret",
    ]

    /// `value` with every member that holds a secret replaced, at any depth.
    public static func redacted(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            return .object(
                members.map { key, member in
                    Self.secretKeys.contains(key.lowercased())
                        ? (key, .string(Self.hidden)) : (key, Self.redacted(member))
                }
            )
        case .array(let items): return .array(items.map(Self.redacted))
        default: return value
        }
    }

    /// `2026-12-02T16:35:43Z` (UTC), without a formatter object per call (every record has one or two).
    static func isoTime(_ epoch: Int64) -> String {
        var seconds = time_t(epoch)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let year = String(parts.tm_year + 1900)
        return
            "\(year)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    /// A random version-4 UUID, lowercase. (Foundation's `UUID()` opened, read and closed /dev/urandom
    /// for each one: three system calls per audit record, four records per forwarded connection.)
    static func eventID() -> String { SystemRandom.id().description }

    /// Who made a call, as CloudTrail's `userIdentity`.
    static func identity(user: User?, accessKeyID: String?, resources: ResourceNames) -> JSONValue {
        guard let user else {
            var members: [(key: String, value: JSONValue)] = [("type", "Unknown")]
            if let accessKeyID { members.append(("accessKeyId", .string(accessKeyID))) }
            return .object(members)
        }
        var members: [(key: String, value: JSONValue)] = [
            ("type", "IAMUser"), ("principalId", .string(user.id)), ("arn", .string(resources.user(user.name))),
            ("accountId", .string(resources.account)),
        ]
        if let accessKeyID { members.append(("accessKeyId", .string(accessKeyID))) }
        members.append(("userName", .string(user.name)))
        return .object(members)
    }

    /// An API call: allowed (with its response) or refused (with its error), and the decision.
    public struct Call: Sendable {
        public var eventName: String
        public var eventSource: String
        public var time: Int64
        public var sourceIP: String
        public var userAgent: String
        public var user: User?
        public var accessKeyID: String?
        public var requestParameters: JSONValue?
        public var responseElements: JSONValue?
        public var error: APIError?
        public var requestID: String
        public var readOnly: Bool
        public var decision: Decision?
        public var target: String = ""
        public var sessionID: String = ""
    }

    public static func call(_ call: Call, resources: ResourceNames) -> (JSONValue, AuditIndex) {
        var members: [(key: String, value: JSONValue)] = [
            ("eventVersion", "1.08"),
            ("userIdentity", Self.identity(user: call.user, accessKeyID: call.accessKeyID, resources: resources)),
            ("eventTime", .string(Self.isoTime(call.time))), ("eventSource", .string(call.eventSource)),
            ("eventName", .string(call.eventName)), ("awsRegion", .string(resources.region)),
            ("sourceIPAddress", .string(call.sourceIP)), ("userAgent", .string(call.userAgent)),
            ("requestParameters", call.requestParameters.map(Self.redacted) ?? .null),
            ("responseElements", call.error == nil ? call.responseElements.map(Self.redacted) ?? .null : .null),
        ]
        if let error = call.error {
            members.append(("errorCode", .string(error.type)))
            members.append(("errorMessage", .string(error.message)))
        }
        members += [
            ("requestID", .string(call.requestID)), ("eventID", .string(Self.eventID())),
            ("readOnly", .bool(call.readOnly)), ("eventType", "AwsApiCall"), ("managementEvent", true),
            ("recipientAccountId", .string(resources.account)),
        ]
        if let decision = call.decision {
            var detail: [(key: String, value: JSONValue)] = [("effect", .string(decision.effect.rawValue))]
            if let policy = decision.policy { detail.append(("policy", .string(policy))) }
            if let statement = decision.statement { detail.append(("statement", .string(statement))) }
            if let resource = decision.resource { detail.append(("resource", .string(resource))) }
            members.append(("additionalEventData", ["decision": .object(detail)]))
        }
        let index = AuditIndex(
            eventName: call.eventName,
            userName: call.user?.name ?? "",
            target: call.target,
            sessionID: call.sessionID
        )
        return (.object(members), index)
    }

    /// A service event (a session's end, a summary): CloudTrail's AwsServiceEvent with its details.
    public static func serviceEvent(
        name: String,
        time: Int64,
        user: User?,
        sourceIP: String = "jumpgate",
        details: JSONValue,
        resources: ResourceNames,
        error: (type: String, message: String)? = nil,
        target: String = "",
        sessionID: String = ""
    ) -> (JSONValue, AuditIndex) {
        var members: [(key: String, value: JSONValue)] = [
            ("eventVersion", "1.08"),
            ("userIdentity", Self.identity(user: user, accessKeyID: nil, resources: resources)),
            ("eventTime", .string(Self.isoTime(time))), ("eventSource", "jumpgate.gateway"),
            ("eventName", .string(name)), ("awsRegion", .string(resources.region)),
            ("sourceIPAddress", .string(sourceIP)), ("userAgent", "jumpgate"), ("requestParameters", .null),
            ("responseElements", .null),
        ]
        if let error {
            members.append(("errorCode", .string(error.type)))
            members.append(("errorMessage", .string(error.message)))
        }
        members += [
            ("requestID", .string(Self.eventID())), ("eventID", .string(Self.eventID())), ("readOnly", true),
            ("eventType", "AwsServiceEvent"), ("managementEvent", true),
            ("recipientAccountId", .string(resources.account)), ("serviceEventDetails", details),
        ]
        let index = AuditIndex(eventName: name, userName: user?.name ?? "", target: target, sessionID: sessionID)
        return (.object(members), index)
    }
}
