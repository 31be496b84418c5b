import CoreMetrics
import JumpgateAccess
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The connections inside port sessions, and the sessions an agent refused, as their agents report them
/// (`POST /v1/connection-records/<instance-id>`, signed by the instance): each becomes an audit record of
/// its session, under the session's owner. The gateway never reads tunnel bytes for them. Answered once the
/// records are in the store, so the agent may forget them.
extension GatewayState {
    static let connectionEvents: Set<String> = [
        "ConnectionOpened", "ConnectionRefused", "ConnectionClosed", "ConnectionRecordsDropped", "SessionRefused",
    ]
    /// Record ids seen lately: a batch resent after a lost answer is not recorded twice.
    static let rememberedRecordIDs = 100_000

    /// Validates and records a batch; returns how many were recorded and how many were refused.
    func recordConnections(
        instanceID: String,
        source: String,
        records: [JSONValue]
    ) -> (accepted: Int, refused: Int) {
        guard let audit = self.audit else { return (0, records.count) }
        var (accepted, refused) = (0, 0)
        // Under the lock only what needs it (the dedup set, the sessions, the owners); the records are
        // built and hashed after it, so a large batch never holds up the relays.
        var pending: [(event: String, details: JSONValue, dropped: Bool, sessionID: String, owner: User?)] = []
        self.storage.withLockedValue { storage in
            for record in records {
                guard let details = Self.validConnectionRecord(record),
                    let id = details["id"]?.stringValue, let event = details["event"]?.stringValue
                else {
                    refused += 1
                    continue
                }
                if storage.recentRecordIDs.contains(id) {
                    accepted += 1  // already recorded: a resend after a lost answer
                    continue
                }
                // A dropped-records note belongs to the agent, not to a session it might name.
                let dropped = event == "ConnectionRecordsDropped"
                let sessionID = dropped ? "" : details["sessionId"]?.stringValue ?? ""
                let session = storage.sessions[sessionID]
                guard dropped || session?.target == instanceID else {
                    refused += 1
                    continue
                }
                storage.remember(id)
                pending.append(
                    (event, details, dropped, sessionID, session.flatMap { storage.directory.users[$0.owner] })
                )
                accepted += 1
            }
        }
        // The record's time is the gateway's (when it arrived): an agent's clock must not decide where a
        // record sits for retention. The agent's own time is kept beside it.
        let time = self.clock()
        for (event, details, dropped, sessionID, owner) in pending {
            var members = details.objectValue ?? []
            members.removeAll { $0.key == "event" || $0.key == "time" || (dropped && $0.key == "sessionId") }
            members.append(("agentTime", .string(AuditRecords.isoTime((details["time"]?.int64Value ?? 0) / 1000))))
            members.append(("instanceId", .string(instanceID)))
            let (entry, index) = AuditRecords.serviceEvent(
                name: event,
                time: time,
                user: owner,
                sourceIP: source,
                details: .object(members),
                resources: self.resources,
                target: instanceID,
                sessionID: sessionID
            )
            audit.append(entry, time: time, index: index)
        }
        return (accepted, refused)
    }

    /// The rules an agent refuses a session by (`SessionRefused`'s `refusedBy`; the agent's
    /// `SessionAdmission.Refusal.refusedBy`, and `shell-account` for its run-as rules).
    static let sessionRefusalRules: Set<String> = ["allow-shell", "session-type", "document", "shell-account"]

    /// The record if it is one an agent may send: known members only, strings bounded, counts numbers. A
    /// `SessionRefused` has the members of a session's refusal only, and names a known rule and a reason.
    static func validConnectionRecord(_ record: JSONValue) -> JSONValue? {
        guard let members = record.objectValue, members.count <= 16,
            let event = record["event"]?.stringValue, Self.connectionEvents.contains(event),
            let id = record["id"]?.stringValue, (1...64).contains(id.count), record["time"]?.int64Value != nil
        else { return nil }
        let refusal = event == "SessionRefused"
        if refusal {
            guard let rule = record["refusedBy"]?.stringValue, Self.sessionRefusalRules.contains(rule),
                record["reason"]?.stringValue != nil, record["sessionId"]?.stringValue?.isEmpty == false
            else { return nil }
        }
        let strings: Set<String> =
            refusal
            ? ["id", "event", "sessionId", "reason", "refusedBy"]
            : ["id", "event", "sessionId", "destination", "address", "reason", "refusedBy"]
        let numbers: Set<String> =
            refusal ? ["time"] : ["time", "streamId", "bytesToTarget", "bytesFromTarget", "durationMs", "count"]
        for (key, value) in members {
            if strings.contains(key) {
                guard let text = value.stringValue, text.utf8.count <= 1024 else { return nil }
            } else if numbers.contains(key) {
                guard let number = value.int64Value, number >= 0 else { return nil }
            } else {
                return nil
            }
        }
        return record
    }
}

extension GatewayHTTPHandler {
    /// Checks that the request is signed by the instance `instanceID` (an agent reporting for itself).
    func verifyInstance(
        _ instanceID: String,
        head: HTTPRequestHead,
        path: String,
        query: String,
        body: [UInt8]
    ) throws(APIError) {
        let identity = try self.verify(head: head, path: path, query: query, service: "ssmmessages", body: body)
        guard identity.accessKeyID == instanceID else {
            throw APIError(403, "AccessDeniedException", "\(identity.accessKeyID) cannot report for \(instanceID).")
        }
    }

    /// POST /v1/connection-records/<instance-id>: `{"Records": [...]}` signed by that instance.
    func connectionRecords(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        path: String,
        query: String
    ) throws(APIError) {
        let body = Array(self.body.readableBytesView)
        let instanceID = String(path.dropFirst("/v1/connection-records/".count))
        try self.verifyInstance(instanceID, head: head, path: path, query: query, body: body)
        guard let parsed = try? JSONValue(parsing: body), let records = parsed["Records"]?.arrayValue,
            records.count <= 1000
        else {
            throw APIError(
                400,
                "ValidationException",
                "The body must be {\"Records\": [...]} with at most 1000 records."
            )
        }
        // The agent's refusal report rides along; a malformed one is ignored (and logged), never a reason
        // to refuse the records, which the agent would then resend forever.
        switch AgentRefusalReport.parse(parsed, now: self.state.clock()) {
        case .none:
            break
        case .some(.some(let report)):
            self.state.recordAgentRefusals(report, instanceID: instanceID, source: self.source)
        case .some(.none):
            self.logger.warning(
                "ignored a malformed refusal report",
                metadata: ["jumpgate.instance_id": "\(instanceID)", "source": "\(self.source)"]
            )
        }
        let (accepted, refused) = self.state.recordConnections(
            instanceID: instanceID,
            source: self.source,
            records: records
        )
        self.state.metrics.connectionRecordUploads.increment()
        let answer: JSONValue = ["Accepted": .integer(Int64(accepted)), "Refused": .integer(Int64(refused))]
        let drained = self.state.audit?.drained(on: context.eventLoop) ?? context.eventLoop.makeSucceededVoidFuture()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        drained.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success:
                handler.sendJSON(context: context, head: head, status: 200, answer)
            case .failure:
                handler.sendError(
                    context: context,
                    head: head,
                    APIError(
                        503,
                        "ServiceUnavailable",
                        "The audit trail cannot be written now; keep the records and retry."
                    )
                )
            }
        }
    }
}
