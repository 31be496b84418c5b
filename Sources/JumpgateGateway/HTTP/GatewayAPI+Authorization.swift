import FoundationEssentials
import JumpgateAccess
import JumpgateWire

/// Who is calling and from where, and what the audit record will say about the call.
struct APICall {
    let caller: Caller
    let accessKeyID: String
    let source: String
    let now: Int64
    /// The decision that let the call through, or refused it.
    var decision: Decision?
    var target = ""
    var sessionID = ""

    var user: String { self.caller.user.name }
}

/// Authorisation of every action: the decision is ``Authorizer``'s (pure); this builds its context.
extension GatewayAPI {
    var resources: ResourceNames { self.state.resources }

    /// The keys every request has: who, from where, when, over TLS.
    func baseContext(_ call: APICall) -> [String: [String]] {
        [
            "aws:username": [call.user], "aws:userid": [call.caller.user.id], "aws:SourceIp": [call.source],
            "aws:CurrentTime": [AuditRecords.isoTime(call.now)], "aws:EpochTime": ["\(call.now)"],
            // The gateway serves only TLS.
            "aws:SecureTransport": ["true"], "aws:PrincipalType": ["User"],
            "aws:PrincipalArn": [self.resources.user(call.user)],
        ]
    }

    /// A managed instance as a resource, with its tags as `ssm:resourceTag/KEY`.
    func instanceResource(_ id: String) -> RequestedResource {
        var context: [String: [String]] = [:]
        for (key, value) in self.state.instance(id: id)?.tags ?? [:] { context["ssm:resourceTag/" + key] = [value] }
        return RequestedResource(self.resources.instance(id), context: context)
    }

    /// Decides and records the decision; a refusal is AccessDeniedException naming the first resource.
    @discardableResult
    func authorize(
        _ call: inout APICall,
        _ action: String,
        _ resources: [RequestedResource],
        context extra: [String: [String]] = [:]
    ) throws(APIError) -> Decision {
        let context = self.baseContext(call).merging(extra) { _, new in new }
        let decision = Authorizer.decide(call.caller, action: action, resources: resources, context: context)
        call.decision = decision
        guard decision.isAllowed else {
            throw APIError(
                400,
                "AccessDeniedException",
                Authorizer.deniedMessage(
                    user: call.user,
                    account: self.resources.account,
                    action: action,
                    resource: decision.resource ?? resources.first?.names.first ?? "*",
                    decision: decision
                )
            )
        }
        return decision
    }

    /// For list calls: refused when no statement could ever allow the action; otherwise each item is
    /// shown if its own decision allows it.
    func authorizeListing(_ call: inout APICall, _ action: String) throws(APIError) {
        guard Authorizer.mayEverAllow(call.caller, action: action) else {
            let decision = Decision(effect: .implicitDeny, policy: nil, statement: nil)
            call.decision = decision
            throw APIError(
                400,
                "AccessDeniedException",
                Authorizer.deniedMessage(
                    user: call.user,
                    account: self.resources.account,
                    action: action,
                    resource: "*",
                    decision: decision
                )
            )
        }
        call.decision =
            call.caller.user.isAdministrator
            ? .administrator : Decision(effect: .allowed, policy: nil, statement: "per item")
    }

    func allows(_ call: APICall, _ action: String, _ resource: RequestedResource) -> Bool {
        Authorizer.decide(call.caller, action: action, resources: [resource], context: self.baseContext(call)).isAllowed
    }

    /// A session's owner may always resume and terminate it; anyone else needs a policy that allows it.
    func authorizeSession(_ call: inout APICall, _ action: String, sessionID: String) throws(APIError) {
        call.sessionID = sessionID
        if let session = self.state.session(id: sessionID) {
            call.target = session.target
            if session.owner == call.user {
                call.decision = .owner
                return
            }
        }
        try self.authorize(&call, action, [RequestedResource([self.resources.session(sessionID)])])
    }
}
