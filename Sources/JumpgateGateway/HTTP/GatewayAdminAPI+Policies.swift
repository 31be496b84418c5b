import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import NIOCore

/// Policies (put, get, list, delete, attach, detach, simulate) and the audit trail (list, verify).
extension GatewayAPI {
    func handlePolicies(
        operation: String,
        input: JSONValue,
        call: inout APICall,
        on eventLoop: any EventLoop
    ) throws(APIError) -> Answer {
        let action = "jumpgate:" + operation
        let names = self.resources
        switch operation {
        case "PutPolicy":
            let name = try Self.string(input, "PolicyName", maxLength: 128)
            let document = try Self.string(input, "PolicyDocument", maxLength: PolicyDocument.maximumSize)
            try self.authorize(&call, action, [RequestedResource([names.policy(name)])])
            return .applied(["Policy": self.policyJSON(try self.state.putPolicy(name: name, document: document))])
        case "GetPolicy", "DeletePolicy":
            let name = try Self.string(input, "PolicyName", maxLength: 128)
            try self.authorize(&call, action, [RequestedResource([names.policy(name)])])
            if operation == "DeletePolicy" {
                try self.state.deletePolicy(name: name)
                return .applied([:])
            }
            let directory = self.state.directory
            let policy = try GatewayState.mapped { () throws(DirectoryError) in try directory.policy(name) }
            return .read(["Policy": self.policyJSON(policy)])
        case "ListPolicies":
            try self.authorizeListing(&call, action)
            let policies = self.state.directory.policies.values.sorted { $0.name < $1.name }.filter {
                self.allows(call, action, RequestedResource([names.policy($0.name)]))
            }
            return .read(["Policies": .array(policies.map(self.policyJSON))])
        case "AttachPolicy", "DetachPolicy":
            let policy = try Self.string(input, "PolicyName", maxLength: 128)
            let principal: IdentityDirectory.Principal
            let resource: String
            if let user = input["UserName"]?.stringValue, input["GroupName"] == nil {
                principal = .user(user)
                resource = names.user(user)
            } else if let group = input["GroupName"]?.stringValue, input["UserName"] == nil {
                principal = .group(group)
                resource = names.group(group)
            } else {
                throw APIError(400, "ValidationError", "Name either a UserName or a GroupName.")
            }
            // Allowed on both: the principal it changes and the policy it attaches.
            try self.authorize(
                &call,
                action,
                [RequestedResource([resource]), RequestedResource([names.policy(policy)])]
            )
            try self.state.attach(policy: policy, to: principal, attached: operation == "AttachPolicy")
            return .applied([:])
        case "SimulatePolicy":
            try self.authorize(&call, action, [RequestedResource([names.user(input["UserName"]?.stringValue ?? "")])])
            return .read(try self.simulate(input, call: call))
        case "ListAuditEvents":
            try self.authorize(&call, action, [RequestedResource(["*"])])
            return .later(try self.listAudit(input, on: eventLoop))
        case "GetSessionRecording":
            return .later(try self.getSessionRecording(input, call: &call, on: eventLoop))
        case "VerifyAudit":
            try self.authorize(&call, action, [RequestedResource(["*"])])
            return .later(self.verifyAudit(on: eventLoop))
        default:
            throw APIError(400, "UnknownOperationException", "Unknown operation \(operation).")
        }
    }

    func policyJSON(_ policy: StoredPolicy) -> JSONValue {
        [
            "PolicyName": .string(policy.name), "Arn": .string(self.resources.policy(policy.name)),
            "PolicyDocument": .string(policy.text), "CreateDate": .integer(policy.createdEpoch),
            "UpdateDate": .integer(policy.updatedEpoch),
            "AttachedTo": .array(self.state.directory.attachments(of: policy.name).map { .string($0) }),
        ]
    }

    /// The decision a user's policies give an action on a resource, with the statement that decided.
    func simulate(_ input: JSONValue, call: APICall) throws(APIError) -> JSONValue {
        let userName = try Self.string(input, "UserName", maxLength: 64)
        let actionName = try Self.string(input, "ActionName", maxLength: 128)
        let resource = try Self.string(input, "ResourceArn", maxLength: 2048)
        let subject = try self.state.caller(userName: userName)
        var context: [String: [String]] = [
            "aws:username": [subject.user.name], "aws:userid": [subject.user.id], "aws:SecureTransport": ["true"],
            "aws:CurrentTime": [AuditRecords.isoTime(call.now)], "aws:EpochTime": ["\(call.now)"],
            "aws:PrincipalType": ["User"], "aws:PrincipalArn": [self.resources.user(subject.user.name)],
        ]
        for entry in input["ContextEntries"]?.arrayValue ?? [] {
            guard let key = entry["ContextKeyName"]?.stringValue,
                let values = entry["ContextKeyValues"]?.arrayValue?.compactMap(\.stringValue)
            else {
                throw APIError(400, "ValidationError", "Each context entry needs ContextKeyName and ContextKeyValues.")
            }
            context[key] = key.lowercased() == "jumpgate:remotehost" ? values.map(HostName.normalized) : values
        }
        // The resource under every name the gateway knows it by (an instance's EC2 form, an AWS document
        // with or without the account), so the answer is the gateway's own.
        let decision = Authorizer.decide(
            subject,
            action: actionName,
            resources: [RequestedResource(self.resources.equivalents(of: resource))],
            context: context
        )
        var members: [(key: String, value: JSONValue)] = [
            ("EvalActionName", .string(actionName)), ("EvalResourceName", .string(resource)),
            ("EvalDecision", .string(decision.effect.rawValue)),
        ]
        if let policy = decision.policy { members.append(("MatchedPolicy", .string(policy))) }
        if let statement = decision.statement { members.append(("MatchedStatement", .string(statement))) }
        return .object(members)
    }
}
