import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import SQLiteNIO

/// The store's schema 3: users, groups, policies, keys' status and last use, instance and activation tags,
/// and the audit trail's records and checkpoint.
extension GatewayStore {
    static let directoryMigration = [
        "CREATE TABLE users (name TEXT PRIMARY KEY, id TEXT NOT NULL, administrator INTEGER NOT NULL, "
            + "created_at INTEGER NOT NULL, policies_json TEXT NOT NULL)",
        "CREATE TABLE groups (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL, members_json TEXT NOT NULL, "
            + "policies_json TEXT NOT NULL)",
        "CREATE TABLE policies (name TEXT PRIMARY KEY, document TEXT NOT NULL, created_at INTEGER NOT NULL, "
            + "updated_at INTEGER NOT NULL)",
        "ALTER TABLE access_keys ADD COLUMN active INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE access_keys ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE access_keys ADD COLUMN last_used_at INTEGER",
        "ALTER TABLE instances ADD COLUMN tags_json TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE activations ADD COLUMN tags_json TEXT NOT NULL DEFAULT '{}'",
        // Users that had keys before schema 3 (the bootstrap administrator) exist as administrators.
        "INSERT OR IGNORE INTO users (name, id, administrator, created_at, policies_json) "
            + "SELECT DISTINCT user_name, 'AIDA' || upper(hex(randomblob(9))), 1, 0, '[]' FROM access_keys",
        "CREATE TABLE audit_records (sequence INTEGER PRIMARY KEY, event_id TEXT NOT NULL, "
            + "event_time INTEGER NOT NULL, event_name TEXT NOT NULL, user_name TEXT NOT NULL, target TEXT NOT NULL, "
            + "session_id TEXT NOT NULL, record TEXT NOT NULL, previous_hash TEXT NOT NULL, hash TEXT NOT NULL)",
        "CREATE INDEX audit_records_time ON audit_records (event_time)",
        "CREATE INDEX audit_records_session ON audit_records (session_id)",
        // Where verification starts after pruning: the last pruned record's sequence and hash.
        "CREATE TABLE audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), sequence INTEGER NOT NULL, "
            + "hash TEXT NOT NULL)",
    ]

    static func json(tags: [String: String]) -> String {
        JSONValue.object(tags.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }).serialized()
    }

    static func tags(_ text: String) -> [String: String] {
        guard case .object(let members)? = try? JSONValue(parsing: text) else { return [:] }
        var tags: [String: String] = [:]
        for (key, value) in members { tags[key] = value.stringValue ?? "" }
        return tags
    }

    static func json(names: [String]) -> String { JSONValue.array(names.map { .string($0) }).serialized() }

    static func names(_ text: String) -> [String] {
        (try? JSONValue(parsing: text))?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    func directoryStatement(for change: StoreChange) -> (String, [SQLiteData]) {
        switch change {
        case .accessKey(let key):
            return (
                "INSERT OR REPLACE INTO access_keys (id, user_name, secret_sealed, active, created_at, last_used_at) "
                    + "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    .text(key.id), .text(key.user),
                    .text(self.sealer.seal(key.secret, context: "access_key:\(key.id)")),
                    .integer(key.isActive ? 1 : 0), .integer(Int(key.createdEpoch)),
                    key.lastUsedEpoch.map { .integer(Int($0)) } ?? .null,
                ]
            )
        case .accessKeyDeleted(let id):
            return ("DELETE FROM access_keys WHERE id = ?", [.text(id)])
        case .user(let user):
            return (
                "INSERT OR REPLACE INTO users (name, id, administrator, created_at, policies_json) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(user.name), .text(user.id), .integer(user.isAdministrator ? 1 : 0),
                    .integer(Int(user.createdEpoch)), .text(Self.json(names: user.policies)),
                ]
            )
        case .userDeleted(let name):
            return ("DELETE FROM users WHERE name = ?", [.text(name)])
        case .group(let group):
            return (
                "INSERT OR REPLACE INTO groups (name, created_at, members_json, policies_json) VALUES (?, ?, ?, ?)",
                [
                    .text(group.name), .integer(Int(group.createdEpoch)), .text(Self.json(names: group.members)),
                    .text(Self.json(names: group.policies)),
                ]
            )
        case .groupDeleted(let name):
            return ("DELETE FROM groups WHERE name = ?", [.text(name)])
        case .policy(let policy):
            return (
                "INSERT OR REPLACE INTO policies (name, document, created_at, updated_at) VALUES (?, ?, ?, ?)",
                [
                    .text(policy.name), .text(policy.text), .integer(Int(policy.createdEpoch)),
                    .integer(Int(policy.updatedEpoch)),
                ]
            )
        case .policyDeleted(let name):
            return ("DELETE FROM policies WHERE name = ?", [.text(name)])
        case .audit(let entries):
            let placeholders = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: entries.count)
                .joined(separator: ", ")
            var binds: [SQLiteData] = []
            for entry in entries {
                binds += [
                    .integer(Int(entry.sequence)), .text(entry.eventID), .integer(Int(entry.eventTime)),
                    .text(entry.index.eventName), .text(entry.index.userName), .text(entry.index.target),
                    .text(entry.index.sessionID), .text(entry.record), .text(entry.previousHash), .text(entry.hash),
                ]
            }
            // One statement: the batch is one transaction, one sync to disk (group commit).
            return (
                "INSERT INTO audit_records (sequence, event_id, event_time, event_name, user_name, target, session_id, "
                    + "record, previous_hash, hash) VALUES " + placeholders,
                binds
            )
        default:
            preconditionFailure("not a directory change")
        }
    }

    func loadDirectory(into snapshot: inout StoreSnapshot) async throws {
        for row in try await self.rows("SELECT * FROM access_keys") {
            let id = row.text("id")
            snapshot.accessKeys.append(
                AccessKey(
                    id: id,
                    secret: try self.sealer.open(row.text("secret_sealed"), context: "access_key:\(id)"),
                    user: row.text("user_name"),
                    isActive: row.int("active") != 0,
                    createdEpoch: row.int("created_at"),
                    lastUsedEpoch: row.column("last_used_at")?.integer.map(Int64.init)
                )
            )
        }
        for row in try await self.rows("SELECT * FROM users") {
            snapshot.users.append(
                User(
                    name: row.text("name"),
                    id: row.text("id"),
                    isAdministrator: row.int("administrator") != 0,
                    createdEpoch: row.int("created_at"),
                    policies: Self.names(row.text("policies_json"))
                )
            )
        }
        for row in try await self.rows("SELECT * FROM groups") {
            snapshot.groups.append(
                Group(
                    name: row.text("name"),
                    createdEpoch: row.int("created_at"),
                    members: Self.names(row.text("members_json")),
                    policies: Self.names(row.text("policies_json"))
                )
            )
        }
        for row in try await self.rows("SELECT * FROM policies") {
            let name = row.text("name")
            do {
                snapshot.policies.append(
                    try StoredPolicy(
                        name: name,
                        text: row.text("document"),
                        createdEpoch: row.int("created_at"),
                        updatedEpoch: row.int("updated_at")
                    )
                )
            } catch {
                throw StoreError("policy \(name) in \(self.path) no longer parses (\(error)); fix or delete its row")
            }
        }
    }
}
