import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import NIOCore

/// `audit list` and `audit verify` as API calls (ListAuditEvents, VerifyAudit).
extension GatewayAPI {
    func listAudit(_ input: JSONValue, on eventLoop: any EventLoop) throws(APIError) -> EventLoopFuture<JSONValue> {
        var filter = AuditFilter()
        filter.userName = input["UserName"]?.stringValue
        filter.target = input["Target"]?.stringValue
        filter.sessionID = input["SessionId"]?.stringValue
        filter.eventName = input["EventName"]?.stringValue
        for (key, keyPath) in [("StartTime", \AuditFilter.since), ("EndTime", \AuditFilter.until)] {
            switch input[key] {
            case .none, .some(.null): break
            case .some(let value):
                guard let seconds = Self.epochSeconds(value) else {
                    throw APIError(400, "ValidationException", "\(key) must be a timestamp (seconds since 1970).")
                }
                filter[keyPath: keyPath] = seconds
            }
        }
        let limit = input["MaxResults"]?.int64Value ?? 1000
        guard (1...10_000).contains(limit) else {
            throw APIError(400, "ValidationException", "MaxResults must be from 1 to 10000.")
        }
        filter.limit = Int(limit)
        guard let store = self.state.store, let audit = self.state.audit else {
            return eventLoop.makeSucceededFuture(["Events": []])
        }
        let wanted = filter
        return audit.drained(on: eventLoop).flatMap {
            eventLoop.makeFutureWithTask {
                let entries = try await store.auditEntries(wanted)
                return ["Events": .array(entries.compactMap { try? JSONValue(parsing: $0.record) })]
            }
        }
    }

    func verifyAudit(on eventLoop: any EventLoop) -> EventLoopFuture<JSONValue> {
        guard let store = self.state.store, let audit = self.state.audit else {
            return eventLoop.makeSucceededFuture(["Intact": true, "Records": 0])
        }
        let logPath = audit.logFile?.path
        return audit.drained(on: eventLoop).flatMap {
            eventLoop.makeFutureWithTask {
                let (anchor, entries) = try await store.auditChain()
                let log = try logPath.map { try AuditLogFile.read($0) }
                return AuditTrail.verification(anchor: anchor, entries: entries, log: log)
            }
        }
    }
}

extension AuditTrail {
    /// The answer (and `audit verify --data-dir`'s output): intact or the first problem.
    public static func verification(anchor: AuditAnchor, entries: [AuditEntry], log: [AuditLogLine]?) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("Records", .integer(Int64(entries.count))), ("FirstSequence", .integer(anchor.sequence &+ 1)),
            ("LastSequence", .integer(entries.last?.sequence ?? anchor.sequence)),
            ("Head", .string(entries.last?.hash ?? anchor.hash)), ("CheckedAgainstLogFile", .bool(log != nil)),
        ]
        if let problem = AuditChain.verify(entries, anchor: anchor, log: log) {
            members.insert(("Intact", false), at: 0)
            members.append(
                (
                    "Problem",
                    [
                        "Sequence": .integer(problem.sequence), "EventId": .string(problem.eventID),
                        "Reason": .string(problem.reason),
                    ]
                )
            )
        } else {
            members.insert(("Intact", true), at: 0)
        }
        return .object(members)
    }
}
