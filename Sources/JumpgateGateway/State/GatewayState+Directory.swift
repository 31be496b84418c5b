import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers

/// Users, groups, keys, policies and instance tags: each change checked by ``IdentityDirectory``, applied
/// and submitted to the store under the lock (so the store sees changes in the order memory did); the
/// API answers once the store has it.
extension GatewayState {
    /// The bootstrap administrator's user name (DATA_DIR/admin.credentials, profile jumpgate-admin).
    public static let bootstrapAdministrator = "jumpgate-admin"

    /// Makes sure the bootstrap administrator exists, is an administrator and has its key.
    public func ensureBootstrapAdministrator(accessKeyID: String, secret: String) {
        let now = self.clock()
        self.storage.withLockedValue { storage in
            let name = Self.bootstrapAdministrator
            let before = storage.directory.users[name]
            storage.directory.ensureAdministrator(
                User(name: name, id: "AIDA" + Random.upperAlphanumeric(17), isAdministrator: true, createdEpoch: now)
            )
            if let user = storage.directory.users[name], user != before { self.store?.submit(.user(user)) }
            // The key in admin.credentials is made once: if an administrator deleted it, it stays deleted
            // (a revocation must survive a restart).
            guard before == nil || storage.directory.keys[accessKeyID] != nil else { return }
            let keyBefore = storage.directory.keys[accessKeyID]
            storage.directory.ensureKey(
                AccessKey(
                    id: accessKeyID,
                    secret: secret,
                    user: name,
                    isActive: true,
                    createdEpoch: now,
                    lastUsedEpoch: nil
                )
            )
            if let key = storage.directory.keys[accessKeyID], key != keyBefore { self.store?.submit(.accessKey(key)) }
        }
    }

    /// The caller behind a verified access key, recording the key's use.
    public func caller(accessKeyID: String) -> Caller? {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            guard let key = storage.directory.activeKey(accessKeyID), let user = storage.directory.users[key.user]
            else { return nil }
            if let changed = storage.directory.keyUsed(accessKeyID, at: now) { self.store?.submit(.accessKey(changed)) }
            return Caller(user: user, policies: storage.directory.effectivePolicies(of: user.name))
        }
    }

    /// The caller a user name stands for (policy simulation).
    public func caller(userName: String) throws(APIError) -> Caller {
        try self.withStorage { storage throws(APIError) in
            let user = try Self.mapped { () throws(DirectoryError) in try storage.directory.user(userName) }
            return Caller(user: user, policies: storage.directory.effectivePolicies(of: userName))
        }
    }

    /// A copy of the directory, for listings.
    public var directory: IdentityDirectory { self.storage.withLockedValue { $0.directory } }

    /// Runs a directory change under the lock; `changes` says what to write.
    func changeDirectory<T>(
        _ body: (inout IdentityDirectory) throws(DirectoryError) -> (T, [StoreChange])
    ) throws(APIError) -> T {
        try self.withStorage { storage throws(APIError) -> T in
            var directory = storage.directory
            let (result, changes) = try Self.mapped { () throws(DirectoryError) in try body(&directory) }
            storage.directory = directory
            for change in changes { self.store?.submit(change) }
            return result
        }
    }

    static func mapped<T>(_ body: () throws(DirectoryError) -> T) throws(APIError) -> T {
        do {
            return try body()
        } catch {
            let conflict: Set<String> = ["LimitExceeded", "DeleteConflict", "EntityAlreadyExists"]
            let status = conflict.contains(error.type) ? 409 : 400
            throw APIError(error.type == "NoSuchEntity" ? 404 : status, error.type, error.message)
        }
    }

    public func createUser(name: String, administrator: Bool) throws(APIError) -> User {
        let user = User(
            name: name,
            id: "AIDA" + Random.upperAlphanumeric(17),
            isAdministrator: administrator,
            createdEpoch: self.clock()
        )
        return try self.changeDirectory { directory throws(DirectoryError) in
            try directory.createUser(user)
            return (user, [.user(user)])
        }
    }

    public func deleteUser(name: String) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            let groups = directory.groups(of: name).map(\.name)
            let keys = try directory.deleteUser(name)
            let changed = groups.compactMap { directory.groups[$0] }.map { StoreChange.group($0) }
            return ((), changed + keys.map { .accessKeyDeleted(id: $0) } + [.userDeleted(name: name)])
        }
    }

    public func createGroup(name: String) throws(APIError) -> Group {
        let group = Group(name: name, createdEpoch: self.clock())
        return try self.changeDirectory { directory throws(DirectoryError) in
            try directory.createGroup(group)
            return (group, [.group(group)])
        }
    }

    public func deleteGroup(name: String) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            try directory.deleteGroup(name)
            return ((), [.groupDeleted(name: name)])
        }
    }

    public func setMembership(user: String, group: String, member: Bool) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            let changed =
                member ? try directory.addUser(user, toGroup: group) : try directory.removeUser(user, fromGroup: group)
            return ((), [.group(changed)])
        }
    }

    /// A new key for `user`: its secret is in the answer only (stored sealed).
    public func createKey(user: String) throws(APIError) -> AccessKey {
        let key = AccessKey(
            id: "AKJG" + Random.upperAlphanumeric(16),
            secret: Random.alphanumeric(40),
            user: user,
            isActive: true,
            createdEpoch: self.clock(),
            lastUsedEpoch: nil
        )
        return try self.changeDirectory { directory throws(DirectoryError) in
            try directory.addKey(key)
            return (key, [.accessKey(key)])
        }
    }

    public func setKey(id: String, user: String?, active: Bool) throws(APIError) -> AccessKey {
        try self.changeDirectory { directory throws(DirectoryError) in
            _ = try directory.key(id, of: user)
            let key = try directory.setKey(id, active: active)
            return (key, [.accessKey(key)])
        }
    }

    public func deleteKey(id: String, user: String?) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            _ = try directory.key(id, of: user)
            try directory.deleteKey(id)
            return ((), [.accessKeyDeleted(id: id)])
        }
    }

    public func putPolicy(name: String, document: String) throws(APIError) -> StoredPolicy {
        let now = self.clock()
        let policy: StoredPolicy
        do {
            policy = try StoredPolicy(name: name, text: document, createdEpoch: now, updatedEpoch: now)
        } catch {
            throw APIError(400, "MalformedPolicyDocument", "The policy document is not valid: \(error.description).")
        }
        if let problem = policy.document.unnamedVariableProblem {
            throw APIError(400, "MalformedPolicyDocument", "The policy document is not valid: \(problem).")
        }
        return try self.changeDirectory { directory throws(DirectoryError) in
            try directory.putPolicy(policy)
            let stored = try directory.policy(name)
            return (stored, [.policy(stored)])
        }
    }

    public func deletePolicy(name: String) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            try directory.deletePolicy(name)
            return ((), [.policyDeleted(name: name)])
        }
    }

    public func attach(
        policy: String,
        to principal: IdentityDirectory.Principal,
        attached: Bool
    ) throws(APIError) {
        try self.changeDirectory { directory throws(DirectoryError) in
            switch try directory.attach(policy, to: principal, attached: attached) {
            case .user(let user): return ((), [.user(user)])
            case .group(let group): return ((), [.group(group)])
            }
        }
    }

    // MARK: tags

    /// AWS's limits: 50 tags, keys up to 128 and values up to 256 characters, no `aws:` prefix.
    static func validate(tags: [String: String]) throws(APIError) {
        guard tags.count <= 50 else {
            throw APIError(400, "TooManyTagsError", "A resource has at most 50 tags.")
        }
        for (key, value) in tags {
            guard (1...128).contains(key.count), value.count <= 256, !key.lowercased().hasPrefix("aws:") else {
                throw APIError(
                    400,
                    "InvalidParameters",
                    "Tag '\(key.prefix(130))' is not valid: keys are 1 to 128 characters and do not start with aws:, "
                        + "values at most 256."
                )
            }
        }
    }

    /// Adds or removes tags on a managed instance (`Name` also renames it, as the instance's name is its
    /// Name tag).
    public func changeTags(
        instanceID: String,
        add: [String: String],
        remove: [String]
    ) throws(APIError) -> [String: String] {
        try self.withStorage { storage throws(APIError) in
            guard var instance = storage.instances[instanceID] else {
                throw APIError(400, "InvalidResourceId", "Managed instance \(instanceID) does not exist.")
            }
            var tags = instance.tags
            for key in remove { tags[key] = nil }
            tags.merge(add) { _, new in new }
            try Self.validate(tags: tags)
            instance.tags = tags
            if let name = add["Name"] { instance.name = name }
            storage.instances[instanceID] = instance
            self.store?.submit(.instance(instance))
            return tags
        }
    }

    public func instance(id: String) -> ManagedInstance? {
        self.storage.withLockedValue { $0.instances[id] }
    }
}

extension Random {
    /// Upper-case letters and digits, as AWS's key and user ids.
    static func upperAlphanumeric(_ count: Int) -> String {
        SystemRandom.string(count, from: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    }
}
