import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import NIOCore

/// The administrative operations (`X-Amz-Target: JumpgateAdmin.<Operation>`, JSON 1.1, SigV4 as the SSM
/// API): users, groups, access keys, policies, policy simulation and the audit trail. Each is the action
/// `jumpgate:<Operation>` on the user, group or policy it names.
extension GatewayAPI {
    static let adminPrefix = "JumpgateAdmin."

    /// The operations that change nothing (CloudTrail's readOnly).
    static let readOnlyOperations: Set<String> = [
        "ListUsers", "ListGroups", "ListAccessKeys", "ListPolicies", "GetPolicy", "SimulatePolicy",
        "ListAuditEvents", "VerifyAudit", "DescribeSessions", "DescribeInstanceInformation", "DescribeActivations",
        "ListTagsForResource", "GetSessionRecording",
    ]

    func handleAdmin(
        operation: String,
        input: JSONValue,
        call: inout APICall,
        on eventLoop: any EventLoop
    ) throws(APIError) -> Answer {
        let action = "jumpgate:" + operation
        let names = self.resources
        switch operation {
        case "CreateUser":
            let name = try Self.string(input, "UserName", maxLength: 64)
            let administrator = input["Administrator"]?.boolValue ?? false
            try self.authorize(&call, action, [RequestedResource([names.user(name)])])
            // Only an administrator makes administrators: no policy can grant it.
            guard !administrator || call.caller.user.isAdministrator else {
                call.decision = Self.administratorsOnly
                throw APIError(400, "AccessDeniedException", "Only an administrator can create an administrator.")
            }
            return .applied(["User": self.userJSON(try self.state.createUser(name: name, administrator: administrator))]
            )
        case "DeleteUser":
            let name = try Self.string(input, "UserName", maxLength: 64)
            try self.authorize(&call, action, [RequestedResource([names.user(name)])])
            try self.protectAdministrator(name, call: &call)
            try self.state.deleteUser(name: name)
            return .applied([:])
        case "ListUsers":
            try self.authorizeListing(&call, action)
            let directory = self.state.directory
            let users = directory.users.values.sorted { $0.name < $1.name }.filter {
                self.allows(call, action, RequestedResource([names.user($0.name)]))
            }
            return .read(["Users": .array(users.map { self.userJSON($0, directory: directory) })])
        case "CreateGroup", "DeleteGroup":
            let name = try Self.string(input, "GroupName", maxLength: 64)
            try self.authorize(&call, action, [RequestedResource([names.group(name)])])
            if operation == "CreateGroup" {
                let group = try self.state.createGroup(name: name)
                return .applied([
                    "Group": ["GroupName": .string(group.name), "CreateDate": .integer(group.createdEpoch)]
                ])
            }
            try self.state.deleteGroup(name: name)
            return .applied([:])
        case "ListGroups":
            try self.authorizeListing(&call, action)
            let groups = self.state.directory.groups.values.sorted { $0.name < $1.name }.filter {
                self.allows(call, action, RequestedResource([names.group($0.name)]))
            }
            return .read(["Groups": .array(groups.map(Self.groupJSON))])
        case "AddUserToGroup", "RemoveUserFromGroup":
            let group = try Self.string(input, "GroupName", maxLength: 64)
            let user = try Self.string(input, "UserName", maxLength: 64)
            try self.authorize(&call, action, [RequestedResource([names.group(group)])])
            try self.state.setMembership(user: user, group: group, member: operation == "AddUserToGroup")
            return .applied([:])
        case "CreateAccessKey":
            let user = input["UserName"]?.stringValue ?? call.user
            try self.authorize(&call, action, [RequestedResource([names.user(user)])])
            try self.protectAdministrator(user, call: &call)
            let key = try self.state.createKey(user: user)
            var json = self.keyJSON(key)
            if case .object(var members) = json {
                members.append(("SecretAccessKey", .string(key.secret)))
                json = .object(members)
            }
            return .applied(["AccessKey": json])
        case "ListAccessKeys":
            let user = input["UserName"]?.stringValue ?? call.user
            try self.authorize(&call, action, [RequestedResource([names.user(user)])])
            let directory = self.state.directory
            _ = try GatewayState.mapped { () throws(DirectoryError) in try directory.user(user) }
            let keys = directory.keys.values.filter { $0.user == user }.sorted { $0.createdEpoch < $1.createdEpoch }
            return .read(["AccessKeyMetadata": .array(keys.map(self.keyJSON))])
        case "UpdateAccessKey", "DeleteAccessKey":
            let id = try Self.string(input, "AccessKeyId", maxLength: 128)
            // The key's owner is the resource: a policy can let users manage their own keys only.
            let owner = input["UserName"]?.stringValue ?? self.state.directory.keys[id]?.user ?? call.user
            try self.authorize(&call, action, [RequestedResource([names.user(owner)])])
            try self.protectAdministrator(owner, call: &call)
            if operation == "DeleteAccessKey" {
                try self.state.deleteKey(id: id, user: owner)
                return .applied([:])
            }
            let status = try Self.string(input, "Status", maxLength: 16)
            guard status == "Active" || status == "Inactive" else {
                throw APIError(400, "ValidationError", "Status must be Active or Inactive.")
            }
            return .applied([
                "AccessKey": self.keyJSON(try self.state.setKey(id: id, user: owner, active: status == "Active"))
            ])
        default:
            return try self.handlePolicies(operation: operation, input: input, call: &call, on: eventLoop)
        }
    }

    /// A non-administrator cannot delete an administrator or make, change or delete its keys, whatever
    /// its policies say (that would make it one).
    func protectAdministrator(_ name: String, call: inout APICall) throws(APIError) {
        if self.state.directory.users[name]?.isAdministrator == true, !call.caller.user.isAdministrator {
            call.decision = Self.administratorsOnly
            throw APIError(
                400,
                "AccessDeniedException",
                "Only an administrator can delete an administrator or manage its access keys."
            )
        }
    }

    /// The decision recorded when an administrator-only rule refused a call its policies allowed.
    static let administratorsOnly = Decision(effect: .explicitDeny, policy: nil, statement: "administrators only")

    func userJSON(_ user: User) -> JSONValue { self.userJSON(user, directory: self.state.directory) }

    func userJSON(_ user: User, directory: IdentityDirectory) -> JSONValue {
        [
            "UserName": .string(user.name), "UserId": .string(user.id),
            "Arn": .string(self.resources.user(user.name)), "Administrator": .bool(user.isAdministrator),
            "CreateDate": .integer(user.createdEpoch),
            "Groups": .array(directory.groups(of: user.name).map { .string($0.name) }),
            "AttachedPolicies": .array(user.policies.map { .string($0) }),
            "AccessKeys": .integer(Int64(directory.keys.values.filter { $0.user == user.name }.count)),
        ]
    }

    static func groupJSON(_ group: Group) -> JSONValue {
        [
            "GroupName": .string(group.name), "CreateDate": .integer(group.createdEpoch),
            "Members": .array(group.members.sorted().map { .string($0) }),
            "AttachedPolicies": .array(group.policies.map { .string($0) }),
        ]
    }

    func keyJSON(_ key: AccessKey) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("UserName", .string(key.user)), ("AccessKeyId", .string(key.id)),
            ("Status", .string(key.isActive ? "Active" : "Inactive")), ("CreateDate", .integer(key.createdEpoch)),
        ]
        if let used = key.lastUsedEpoch { members.append(("LastUsedDate", .integer(used))) }
        return .object(members)
    }
}
