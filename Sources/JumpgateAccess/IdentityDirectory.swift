/// A refused change to the directory, with IAM's error type (`NoSuchEntity`, `EntityAlreadyExists`,
/// `LimitExceeded`, `DeleteConflict`, `ValidationError`, `MalformedPolicyDocument`).
public struct DirectoryError: Error, Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var message: String
    public init(_ type: String, _ message: String) {
        self.type = type
        self.message = message
    }
    public var description: String { "\(self.type): \(self.message)" }
}

public struct User: Hashable, Sendable {
    public var name: String
    /// IAM's unique id form (`AIDA` and 17 more), the value of `${aws:userid}`.
    public var id: String
    /// May do every action with no policy attached (the bootstrap administrator, and those it makes).
    public var isAdministrator: Bool
    public var createdEpoch: Int64
    /// Policy names attached to the user directly.
    public var policies: [String] = []

    public init(name: String, id: String, isAdministrator: Bool, createdEpoch: Int64, policies: [String] = []) {
        self.name = name
        self.id = id
        self.isAdministrator = isAdministrator
        self.createdEpoch = createdEpoch
        self.policies = policies
    }
}

public struct Group: Hashable, Sendable {
    public var name: String
    public var createdEpoch: Int64
    public var members: [String] = []
    public var policies: [String] = []

    public init(name: String, createdEpoch: Int64, members: [String] = [], policies: [String] = []) {
        self.name = name
        self.createdEpoch = createdEpoch
        self.members = members
        self.policies = policies
    }
}

public struct AccessKey: Hashable, Sendable {
    public var id: String
    public var secret: String
    public var user: String
    public var isActive: Bool
    public var createdEpoch: Int64
    /// When a request last verified with it (nil: never).
    public var lastUsedEpoch: Int64?

    public init(id: String, secret: String, user: String, isActive: Bool, createdEpoch: Int64, lastUsedEpoch: Int64?) {
        self.id = id
        self.secret = secret
        self.user = user
        self.isActive = isActive
        self.createdEpoch = createdEpoch
        self.lastUsedEpoch = lastUsedEpoch
    }
}

public struct StoredPolicy: Hashable, Sendable {
    public var name: String
    /// The document as it was put (shown by `policies get`), and parsed.
    public var text: String
    public var document: PolicyDocument
    public var createdEpoch: Int64
    public var updatedEpoch: Int64

    public init(name: String, text: String, createdEpoch: Int64, updatedEpoch: Int64) throws(PolicyError) {
        self.name = name
        self.text = text
        self.document = try PolicyDocument(parsing: text)
        self.createdEpoch = createdEpoch
        self.updatedEpoch = updatedEpoch
    }
}

/// Users, groups, access keys and policies, and the rules for changing them. Pure: the caller supplies
/// ids, secrets and the time, applies each change to its store, and decides who may ask for it.
public struct IdentityDirectory: Hashable, Sendable {
    public private(set) var users: [String: User] = [:]
    public private(set) var groups: [String: Group] = [:]
    public private(set) var keys: [String: AccessKey] = [:]
    public private(set) var policies: [String: StoredPolicy] = [:]

    /// IAM's limit: two keys per user, so one can be rotated while the other works.
    public static let maximumKeysPerUser = 2
    public static let maximumPoliciesPerPrincipal = 10
    public static let maximumPolicies = 1000
    public static let maximumUsers = 5000

    public init() {}

    /// IAM's names: 1 to 64 of letters, digits and `+=,.@_-`. Jumpgate also refuses a leading `-` (names
    /// become session-id prefixes and command-line arguments).
    public static func validateName(_ name: String, _ what: String) throws(DirectoryError) {
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || "+=,.@_-".unicodeScalars.contains(scalar))
        }
        guard (1...64).contains(name.unicodeScalars.count), allowed, !name.hasPrefix("-") else {
            throw DirectoryError(
                "ValidationError",
                "The \(what) name '\(name.prefix(80))' is not valid: use 1 to 64 letters, digits and + = , . @ _ - "
                    + "(not starting with -)."
            )
        }
    }

    // MARK: users

    public mutating func createUser(_ user: User) throws(DirectoryError) {
        try Self.validateName(user.name, "user")
        guard self.users[user.name] == nil else {
            throw DirectoryError("EntityAlreadyExists", "User \(user.name) already exists.")
        }
        // Session ids are NAME-hex, and policies name one's own as session/${aws:username}-*: "dev" and
        // "dev-ops" would each match the other's sessions.
        if let clash = self.users.keys.first(where: { $0.hasPrefix(user.name + "-") || user.name.hasPrefix($0 + "-") })
        {
            throw DirectoryError(
                "EntityAlreadyExists",
                "User \(user.name) cannot exist beside \(clash): one name followed by '-' begins the other, so "
                    + "session/${aws:username}-* would match both users' sessions. Choose another name."
            )
        }
        guard self.users.count < Self.maximumUsers else {
            throw DirectoryError("LimitExceeded", "The gateway holds \(Self.maximumUsers) users, its limit.")
        }
        self.users[user.name] = user
    }

    public func user(_ name: String) throws(DirectoryError) -> User {
        guard let user = self.users[name] else {
            throw DirectoryError("NoSuchEntity", "User \(name) does not exist.")
        }
        return user
    }

    /// Deletes a user with its keys and group memberships; returns the ids of the keys removed. The last
    /// administrator cannot be deleted (nobody could then manage the gateway but by editing its files).
    public mutating func deleteUser(_ name: String) throws(DirectoryError) -> [String] {
        let user = try self.user(name)
        if user.isAdministrator, self.users.values.filter(\.isAdministrator).count == 1 {
            throw DirectoryError("DeleteConflict", "User \(name) is the only administrator; make another first.")
        }
        self.users[name] = nil
        for (groupName, var group) in self.groups where group.members.contains(name) {
            group.members.removeAll { $0 == name }
            self.groups[groupName] = group
        }
        let removed = self.keys.values.filter { $0.user == name }.map(\.id).sorted()
        for id in removed { self.keys[id] = nil }
        return removed
    }

    /// The groups a user belongs to, by name.
    public func groups(of user: String) -> [Group] {
        self.groups.values.filter { $0.members.contains(user) }.sorted { $0.name < $1.name }
    }

    // MARK: groups

    public mutating func createGroup(_ group: Group) throws(DirectoryError) {
        try Self.validateName(group.name, "group")
        guard self.groups[group.name] == nil else {
            throw DirectoryError("EntityAlreadyExists", "Group \(group.name) already exists.")
        }
        self.groups[group.name] = group
    }

    public func group(_ name: String) throws(DirectoryError) -> Group {
        guard let group = self.groups[name] else {
            throw DirectoryError("NoSuchEntity", "Group \(name) does not exist.")
        }
        return group
    }

    /// As IAM: only an empty group (no members, no policies) can be deleted, so a Deny a group carries is
    /// never dropped by the way.
    public mutating func deleteGroup(_ name: String) throws(DirectoryError) {
        let group = try self.group(name)
        guard group.members.isEmpty, group.policies.isEmpty else {
            throw DirectoryError(
                "DeleteConflict",
                "Group \(name) still has \(group.members.count) member(s) and \(group.policies.count) policy(ies); "
                    + "remove them first."
            )
        }
        self.groups[name] = nil
    }

    public mutating func addUser(_ user: String, toGroup name: String) throws(DirectoryError) -> Group {
        _ = try self.user(user)
        var group = try self.group(name)
        if !group.members.contains(user) { group.members.append(user) }
        self.groups[name] = group
        return group
    }

    public mutating func removeUser(_ user: String, fromGroup name: String) throws(DirectoryError) -> Group {
        var group = try self.group(name)
        guard group.members.contains(user) else {
            throw DirectoryError("NoSuchEntity", "User \(user) is not in group \(name).")
        }
        group.members.removeAll { $0 == user }
        self.groups[name] = group
        return group
    }

    // MARK: keys

    public mutating func addKey(_ key: AccessKey) throws(DirectoryError) {
        _ = try self.user(key.user)
        guard self.keys.values.filter({ $0.user == key.user }).count < Self.maximumKeysPerUser else {
            throw DirectoryError(
                "LimitExceeded",
                "User \(key.user) already has \(Self.maximumKeysPerUser) access keys; delete one first."
            )
        }
        guard self.keys[key.id] == nil else {
            throw DirectoryError("EntityAlreadyExists", "Access key \(key.id) already exists.")
        }
        self.keys[key.id] = key
    }

    /// The key, if it belongs to `user` (when given): another user's key id is answered as unknown.
    public func key(_ id: String, of user: String?) throws(DirectoryError) -> AccessKey {
        guard let key = self.keys[id], user == nil || key.user == user else {
            throw DirectoryError(
                "NoSuchEntity",
                "Access key \(id) does not exist\(user.map { " for user \($0)" } ?? "")."
            )
        }
        return key
    }

    public mutating func setKey(_ id: String, active: Bool) throws(DirectoryError) -> AccessKey {
        var key = try self.key(id, of: nil)
        key.isActive = active
        self.keys[id] = key
        return key
    }

    public mutating func deleteKey(_ id: String) throws(DirectoryError) {
        _ = try self.key(id, of: nil)
        self.keys[id] = nil
    }

    /// Records a verified use; returns the key when its stored last use is worth rewriting (the first use,
    /// or a minute after the last one written), so a busy key does not write at every request.
    public mutating func keyUsed(_ id: String, at now: Int64) -> AccessKey? {
        guard var key = self.keys[id] else { return nil }
        let previous = key.lastUsedEpoch
        key.lastUsedEpoch = now
        self.keys[id] = key
        if let previous, now - previous < 60 { return nil }
        return key
    }

    /// An active key's secret and user, for signature checks. Inactive and unknown keys alike: nil.
    public func activeKey(_ id: String) -> AccessKey? {
        guard let key = self.keys[id], key.isActive, self.users[key.user] != nil else { return nil }
        return key
    }

    // MARK: policies

    public mutating func putPolicy(_ policy: StoredPolicy) throws(DirectoryError) {
        try Self.validateName(policy.name, "policy")
        var policy = policy
        if let existing = self.policies[policy.name] {
            policy.createdEpoch = existing.createdEpoch
        } else if self.policies.count >= Self.maximumPolicies {
            throw DirectoryError("LimitExceeded", "The gateway holds \(Self.maximumPolicies) policies, its limit.")
        }
        self.policies[policy.name] = policy
    }

    public func policy(_ name: String) throws(DirectoryError) -> StoredPolicy {
        guard let policy = self.policies[name] else {
            throw DirectoryError("NoSuchEntity", "Policy \(name) does not exist.")
        }
        return policy
    }

    /// Who a policy is attached to: "user:NAME" and "group:NAME".
    public func attachments(of policy: String) -> [String] {
        let users = self.users.values.filter { $0.policies.contains(policy) }.map { "user:" + $0.name }
        let groups = self.groups.values.filter { $0.policies.contains(policy) }.map { "group:" + $0.name }
        return (users + groups).sorted()
    }

    public mutating func deletePolicy(_ name: String) throws(DirectoryError) {
        _ = try self.policy(name)
        let attached = self.attachments(of: name)
        guard attached.isEmpty else {
            throw DirectoryError(
                "DeleteConflict",
                "Policy \(name) is attached to \(attached.joined(separator: ", ")); detach it first."
            )
        }
        self.policies[name] = nil
    }

    /// A user or a group, as the target of an attachment.
    public enum Principal: Hashable, Sendable {
        case user(String)
        case group(String)
    }

    /// Attaches (or detaches) a policy; returns the changed user or group.
    public mutating func attach(
        _ policy: String,
        to principal: Principal,
        attached: Bool
    ) throws(DirectoryError) -> Either {
        _ = try self.policy(policy)
        func change(_ list: inout [String], name: String) throws(DirectoryError) {
            if attached {
                guard !list.contains(policy) else { return }
                guard list.count < Self.maximumPoliciesPerPrincipal else {
                    throw DirectoryError(
                        "LimitExceeded",
                        "\(name) has \(Self.maximumPoliciesPerPrincipal) policies attached, the limit."
                    )
                }
                list.append(policy)
            } else {
                guard list.contains(policy) else {
                    throw DirectoryError("NoSuchEntity", "Policy \(policy) is not attached to \(name).")
                }
                list.removeAll { $0 == policy }
            }
        }
        switch principal {
        case .user(let name):
            var user = try self.user(name)
            try change(&user.policies, name: "user \(name)")
            self.users[name] = user
            return .user(user)
        case .group(let name):
            var group = try self.group(name)
            try change(&group.policies, name: "group \(name)")
            self.groups[name] = group
            return .group(group)
        }
    }

    public enum Either: Hashable, Sendable {
        case user(User)
        case group(Group)
    }

    /// The policies that apply to a user: its own, then its groups', each once, in a stable order.
    public func effectivePolicies(of user: String) -> [NamedPolicy] {
        guard let record = self.users[user] else { return [] }
        var names = record.policies
        for group in self.groups(of: user) { names += group.policies }
        var seen = Set<String>()
        return names.compactMap { name in
            guard seen.insert(name).inserted, let policy = self.policies[name] else { return nil }
            return NamedPolicy(name: name, document: policy.document)
        }
    }

    // MARK: loading

    /// Puts stored entities back as they were (no checks: they were checked when made).
    public mutating func restore(users: [User], groups: [Group], keys: [AccessKey], policies: [StoredPolicy]) {
        for user in users { self.users[user.name] = user }
        for group in groups { self.groups[group.name] = group }
        for key in keys { self.keys[key.id] = key }
        for policy in policies { self.policies[policy.name] = policy }
    }

    /// Makes `user` an administrator (the bootstrap administrator at every start).
    public mutating func ensureAdministrator(_ user: User) {
        var user = self.users[user.name] ?? user
        user.isAdministrator = true
        self.users[user.name] = user
    }

    /// Installs a key as it is (the bootstrap administrator's, from admin.credentials).
    public mutating func ensureKey(_ key: AccessKey) {
        var key = key
        if let existing = self.keys[key.id] {
            // A key an administrator disabled stays disabled across restarts.
            key.isActive = existing.isActive
            key.lastUsedEpoch = existing.lastUsedEpoch
            key.createdEpoch = existing.createdEpoch
        }
        self.keys[key.id] = key
    }
}
