import JumpgateAccess
import JumpgateWire
import NIOHTTP1

/// What an API request's audit record needs, gathered while it is handled.
struct PendingAudit {
    let operation: String
    let eventSource: String
    let userAgent: String
    let source: String
    let requestID: String
    var user: User?
    var accessKeyID: String?
    var input: JSONValue?
    var call: APICall?
    var target = ""

    init(head: HTTPRequestHead, source: String, requestID: String) {
        let target = head.headers.first(name: "X-Amz-Target") ?? ""
        self.operation = GatewayHTTPHandler.operation(head)
        self.eventSource = target.hasPrefix(GatewayAPI.adminPrefix) ? "jumpgate.admin" : "ssm.amazonaws.com"
        self.userAgent = String((head.headers.first(name: "User-Agent") ?? "").prefix(256))
        self.source = source
        self.requestID = requestID
    }
}

extension GatewayHTTPHandler {
    /// Appends an API call's record. Requests that never authenticated are not recorded one by one (they
    /// reach the trail as one summary per source per minute, so nobody can grow it with them); a failed
    /// registration likewise.
    func record(_ pending: PendingAudit, outcome: Result<JSONValue, APIError>) {
        guard let audit = self.state.audit, !pending.operation.isEmpty else { return }
        let registration = pending.operation == "RegisterManagedInstance" && pending.user == nil
        if pending.accessKeyID == nil {
            guard registration, case .success = outcome else { return }
        }
        var response: JSONValue?
        var failure: APIError?
        switch outcome {
        case .success(let value): response = value
        case .failure(let error): failure = error
        }
        let now = self.state.clock()
        let call = AuditRecords.Call(
            eventName: pending.operation,
            eventSource: pending.eventSource,
            time: now,
            sourceIP: pending.source,
            userAgent: pending.userAgent,
            user: pending.user,
            accessKeyID: pending.accessKeyID,
            requestParameters: pending.input,
            // As CloudTrail: read-only calls record no response (a listing of the trail would grow it).
            responseElements: GatewayAPI.readOnlyOperations.contains(pending.operation) ? nil : response,
            error: failure,
            requestID: pending.requestID,
            readOnly: GatewayAPI.readOnlyOperations.contains(pending.operation),
            decision: pending.call?.decision,
            target: pending.call?.target ?? (registration ? response?["InstanceId"]?.stringValue ?? "" : ""),
            sessionID: pending.call?.sessionID ?? ""
        )
        let (record, index) = AuditRecords.call(call, resources: self.state.resources)
        audit.append(record, time: now, index: index)
    }
}
