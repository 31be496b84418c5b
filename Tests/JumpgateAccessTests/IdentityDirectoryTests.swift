import JumpgateAccess
import Testing

/// The directory's rules, each refusal with IAM's error type.
@Suite("IdentityDirectory")
struct IdentityDirectoryTests {
    static func user(_ name: String, administrator: Bool = false) -> User {
        User(name: name, id: "AIDA" + name, isAdministrator: administrator, createdEpoch: 0)
    }

    static func key(_ id: String, _ user: String, active: Bool = true) -> AccessKey {
        AccessKey(id: id, secret: "s-" + id, user: user, isActive: active, createdEpoch: 0, lastUsedEpoch: nil)
    }

    static func policy(_ name: String) throws -> StoredPolicy {
        try StoredPolicy(
            name: name,
            text: #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}}"#,
            createdEpoch: 1,
            updatedEpoch: 1
        )
    }

    func expectRefusal(_ type: String, _ body: () throws(DirectoryError) -> Void) {
        do {
            try body()
            Issue.record("expected \(type)")
        } catch {
            #expect(error.type == type, "\(error)")
        }
    }

    @Test("names: IAM's characters, 1 to 64, no leading dash")
    func names() throws {
        for good in ["dev", "a", "first.last@example.com", "x+y=z,w_v-u", String(repeating: "n", count: 64)] {
            try IdentityDirectory.validateName(good, "user")
        }
        for bad in ["", "-rf", "has space", "ümlaut", "semi;colon", "slash/", String(repeating: "n", count: 65)] {
            expectRefusal("ValidationError") { () throws(DirectoryError) in
                try IdentityDirectory.validateName(bad, "user")
            }
        }
    }

    @Test("users: unique; deleting takes their keys and memberships; the last administrator stays")
    func users() throws {
        var directory = IdentityDirectory()
        try directory.createUser(Self.user("root", administrator: true))
        try directory.createUser(Self.user("dev"))
        expectRefusal("EntityAlreadyExists") { () throws(DirectoryError) in try directory.createUser(Self.user("dev")) }
        // Names where one followed by '-' begins the other: session/${aws:username}-* would match both.
        expectRefusal("EntityAlreadyExists") { () throws(DirectoryError) in
            try directory.createUser(Self.user("dev-ops"))
        }
        try directory.createUser(Self.user("devops"))
        try directory.createGroup(Group(name: "full", createdEpoch: 0, members: ["devops"]))
        expectRefusal("DeleteConflict") { () throws(DirectoryError) in try directory.deleteGroup("full") }
        try directory.createGroup(Group(name: "team", createdEpoch: 0))
        _ = try directory.addUser("dev", toGroup: "team")
        try directory.addKey(Self.key("AK1", "dev"))
        #expect(try directory.deleteUser("dev") == ["AK1"])
        #expect(directory.keys.isEmpty)
        #expect(directory.groups["team"]?.members == [])
        try directory.deleteGroup("team")
        expectRefusal("NoSuchEntity") { () throws(DirectoryError) in _ = try directory.deleteUser("dev") }
        expectRefusal("DeleteConflict") { () throws(DirectoryError) in _ = try directory.deleteUser("root") }
        try directory.createUser(Self.user("root2", administrator: true))
        #expect(try directory.deleteUser("root").isEmpty)
    }

    @Test("keys: two per user, unknown users refused, inactive keys do not sign, another's key is unknown")
    func keys() throws {
        var directory = IdentityDirectory()
        try directory.createUser(Self.user("dev"))
        try directory.createUser(Self.user("ops"))
        try directory.addKey(Self.key("AK1", "dev"))
        try directory.addKey(Self.key("AK2", "dev"))
        expectRefusal("LimitExceeded") { () throws(DirectoryError) in try directory.addKey(Self.key("AK3", "dev")) }
        expectRefusal("NoSuchEntity") { () throws(DirectoryError) in try directory.addKey(Self.key("AK4", "ghost")) }
        #expect(directory.activeKey("AK1")?.user == "dev")
        _ = try directory.setKey("AK1", active: false)
        #expect(directory.activeKey("AK1") == nil)
        expectRefusal("NoSuchEntity") { () throws(DirectoryError) in _ = try directory.key("AK2", of: "ops") }
        try directory.deleteKey("AK1")
        try directory.addKey(Self.key("AK3", "dev"))  // room again after a deletion (rotation)
        #expect(directory.activeKey("nope") == nil)
    }

    @Test("a key's last use is written at its first use and then at most once a minute")
    func lastUse() throws {
        var directory = IdentityDirectory()
        try directory.createUser(Self.user("dev"))
        try directory.addKey(Self.key("AK1", "dev"))
        #expect(directory.keyUsed("AK1", at: 100)?.lastUsedEpoch == 100)
        #expect(directory.keyUsed("AK1", at: 130) == nil)
        #expect(directory.keys["AK1"]?.lastUsedEpoch == 130)  // kept in memory all the same
        #expect(directory.keyUsed("AK1", at: 190)?.lastUsedEpoch == 190)
        #expect(directory.keyUsed("ghost", at: 1) == nil)
    }

    @Test("policies: attached policies cannot be deleted; limits; a user's and its groups' policies, once each")
    func policies() throws {
        var directory = IdentityDirectory()
        try directory.createUser(Self.user("dev"))
        try directory.createGroup(Group(name: "team", createdEpoch: 0))
        _ = try directory.addUser("dev", toGroup: "team")
        try directory.putPolicy(try Self.policy("a"))
        try directory.putPolicy(try Self.policy("b"))
        _ = try directory.attach("a", to: .user("dev"), attached: true)
        _ = try directory.attach("a", to: .group("team"), attached: true)
        _ = try directory.attach("b", to: .group("team"), attached: true)
        #expect(directory.effectivePolicies(of: "dev").map(\.name) == ["a", "b"])
        #expect(directory.attachments(of: "a") == ["group:team", "user:dev"])
        expectRefusal("DeleteConflict") { () throws(DirectoryError) in try directory.deletePolicy("a") }
        expectRefusal("NoSuchEntity") { () throws(DirectoryError) in
            _ = try directory.attach("c", to: .user("dev"), attached: true)
        }
        expectRefusal("NoSuchEntity") { () throws(DirectoryError) in
            _ = try directory.attach("b", to: .user("dev"), attached: false)
        }
        for index in 0..<9 {
            try directory.putPolicy(try Self.policy("p\(index)"))
            _ = try directory.attach("p\(index)", to: .user("dev"), attached: true)
        }
        try directory.putPolicy(try Self.policy("one-too-many"))
        expectRefusal("LimitExceeded") { () throws(DirectoryError) in
            _ = try directory.attach("one-too-many", to: .user("dev"), attached: true)
        }
        // Replacing a policy keeps its creation time.
        var replaced = try Self.policy("a")
        replaced.createdEpoch = 99
        replaced.updatedEpoch = 99
        try directory.putPolicy(replaced)
        #expect(directory.policies["a"]?.createdEpoch == 1 && directory.policies["a"]?.updatedEpoch == 99)
        _ = try directory.removeUser("dev", fromGroup: "team")
        #expect(!directory.effectivePolicies(of: "dev").map(\.name).contains("b"))
    }

    @Test("the bootstrap administrator's key keeps a status an administrator gave it")
    func bootstrapKey() throws {
        var directory = IdentityDirectory()
        directory.ensureAdministrator(Self.user("jumpgate-admin"))
        #expect(directory.users["jumpgate-admin"]?.isAdministrator == true)
        directory.ensureKey(Self.key("AKBOOT", "jumpgate-admin"))
        _ = try directory.setKey("AKBOOT", active: false)
        directory.ensureKey(Self.key("AKBOOT", "jumpgate-admin"))
        #expect(directory.activeKey("AKBOOT") == nil)
    }
}
