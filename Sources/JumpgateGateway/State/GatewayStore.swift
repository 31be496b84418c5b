import Crypto
import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SQLiteNIO

/// A change to durable state, recorded in the order `GatewayState` made it.
public enum StoreChange: Sendable {
    case accessKey(AccessKey)
    case accessKeyDeleted(id: String)
    case user(User)
    case userDeleted(name: String)
    case group(Group)
    case groupDeleted(name: String)
    case policy(StoredPolicy)
    case policyDeleted(name: String)
    /// Audit records, appended as one batch.
    case audit([AuditEntry])
    case activation(Activation)
    case activationDeleted(id: String)
    case instance(ManagedInstance)
    case instanceDeleted(id: String)
    case session(SessionRecord)
    /// A custom session document's version (the default one when `isDefault`), its new default version,
    /// or its deletion (every version).
    case documentVersion(StoredDocumentVersion, isDefault: Bool)
    case documentDefault(name: String, version: Int)
    case documentDeleted(name: String)
    /// A recording's row (created with its session; complete, truncated, digest), one chunk of its bytes, or
    /// its deletion with every chunk.
    case recording(RecordingRecord)
    case recordingChunk(sessionID: String, offset: Int64, bytes: [UInt8])
    case recordingDeleted(sessionID: String)
}

/// What the store holds, loaded once at start.
public struct StoreSnapshot: Sendable {
    public var accessKeys: [AccessKey] = []
    public var users: [User] = []
    public var groups: [Group] = []
    public var policies: [StoredPolicy] = []
    public var activations: [Activation] = []
    public var instances: [ManagedInstance] = []
    public var sessions: [SessionRecord] = []
    public var documentVersions: [StoredDocumentVersion] = []
    public var documentDefaults: [String: Int] = [:]
    public var recordings: [RecordingRecord] = []
}

public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The gateway's durable state in SQLite (sqlite-nio): access keys, activations, managed instances and
/// sessions. Secrets are sealed with AES-GCM under a key kept in its own file (0600) beside the database;
/// they are never stored in clear and never logged.
///
/// All statements run on one thread, in the order they were submitted: `GatewayState` submits each change
/// while it holds its lock, so the database sees changes in the order memory did, and `flush()` (a barrier
/// behind every earlier change) makes an API answer wait until what it reports is on disk.
public final class GatewayStore: Sendable {
    public static let schemaVersion = 6

    /// Versioned migrations; each runs once, in its own transaction, recorded in `schema_migrations`.
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE access_keys (
                    id TEXT PRIMARY KEY, user_name TEXT NOT NULL, secret_sealed TEXT NOT NULL)
                """,
                """
                CREATE TABLE activations (
                    id TEXT PRIMARY KEY, code_hash TEXT NOT NULL, iam_role TEXT NOT NULL,
                    description TEXT NOT NULL, default_instance_name TEXT NOT NULL,
                    registration_limit INTEGER NOT NULL, registrations_count INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL)
                """,
                """
                CREATE TABLE instances (
                    id TEXT PRIMARY KEY, secret_sealed TEXT NOT NULL, name TEXT NOT NULL,
                    activation_id TEXT NOT NULL, platform_type TEXT NOT NULL, platform_name TEXT NOT NULL,
                    platform_version TEXT NOT NULL, agent_version TEXT NOT NULL, ip_address TEXT NOT NULL,
                    hostname TEXT NOT NULL, registered_at INTEGER NOT NULL, last_ping_at INTEGER NOT NULL)
                """,
                """
                CREATE TABLE sessions (
                    id TEXT PRIMARY KEY, owner TEXT NOT NULL, target TEXT NOT NULL, document_name TEXT NOT NULL,
                    parameters_json TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
                    started_at INTEGER NOT NULL, ended_at INTEGER, close_reason TEXT NOT NULL)
                """,
                "CREATE INDEX sessions_status ON sessions (status)",
            ]
        ),
        (
            2,
            [
                "ALTER TABLE sessions ADD COLUMN bytes_to_agent INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE sessions ADD COLUMN bytes_to_client INTEGER NOT NULL DEFAULT 0",
            ]
        ),
        (3, GatewayStore.directoryMigration),
        (4, GatewayStore.writeProbeMigration),
        (5, GatewayStore.documentsMigration),
        (6, GatewayStore.recordingsMigration),
    ]

    let connection: SQLiteConnection
    let threadPool: NIOThreadPool
    let sealer: SecretSealer
    let logger: Logger
    public let path: String

    private init(
        connection: SQLiteConnection,
        threadPool: NIOThreadPool,
        sealer: SecretSealer,
        path: String,
        logger: Logger
    ) {
        self.connection = connection
        self.threadPool = threadPool
        self.sealer = sealer
        self.path = path
        self.logger = logger
    }

    /// Opens (creating if needed) `directory/jumpgate.sqlite` with its key file `directory/store.key`,
    /// and brings the schema up to date.
    public static func open(
        directory: String,
        eventLoop: any EventLoop,
        logger: Logger
    ) async throws -> GatewayStore {
        let path = directory + "/jumpgate.sqlite"
        let keyPath = directory + "/store.key"
        let databaseExisted = FileManager.default.fileExists(atPath: path)
        let sealer = try SecretSealer.load(keyPath: keyPath, databaseExisted: databaseExisted)
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path),
                threadPool: threadPool,
                logger: logger,
                on: eventLoop
            )
        } catch {
            try? await threadPool.shutdownGracefully()
            throw StoreError("cannot open the store \(path): \(error)")
        }
        chmod(path, 0o600)
        let store = GatewayStore(
            connection: connection,
            threadPool: threadPool,
            sealer: sealer,
            path: path,
            logger: logger
        )
        do {
            try await store.migrate()
        } catch {
            try? await store.close()
            throw error
        }
        return store
    }

    func rows(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        let collected = NIOLockedValueBox<[SQLiteRow]>([])
        try await self.query(sql, binds) { row in collected.withLockedValue { $0.append(row) } }.get()
        return collected.withLockedValue { $0 }
    }

    /// `sql` queued on the connection, or failed with a clear error once the store is closed (not SQLite's
    /// "misuse" from a closed handle): checked and queued under the lock ``close()`` takes, so a statement
    /// queued before the close runs before it.
    func query(
        _ sql: String,
        _ binds: [SQLiteData] = [],
        onRow: @escaping @Sendable (SQLiteRow) -> Void = { _ in }
    ) -> EventLoopFuture<Void> {
        self.queueIfOpen(sql, binds, onRow: onRow) ?? self.connection.eventLoop.makeFailedFuture(Self.closedError)
    }

    /// `sql` queued on the connection while the store is open (under the lock ``close()`` takes), or nil.
    private func queueIfOpen(
        _ sql: String,
        _ binds: [SQLiteData],
        onRow: @escaping @Sendable (SQLiteRow) -> Void = { _ in }
    ) -> EventLoopFuture<Void>? {
        self.isClosed.withLockedValue { closed in
            closed ? nil : self.connection.query(sql, binds, logger: self.logger, onRow)
        }
    }

    static let closedError = StoreError("the store is closed: the gateway is stopping")

    func migrate() async throws {
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON"] {
            _ = try await self.rows(pragma)
        }
        _ = try await self.rows(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        let current =
            try await self.rows("SELECT MAX(version) AS v FROM schema_migrations").first?
            .column("v")?.integer ?? 0
        guard current <= Self.schemaVersion else {
            throw StoreError(
                "the store \(self.path) has schema version \(current), newer than this Jumpgate knows "
                    + "(\(Self.schemaVersion)): upgrade Jumpgate, or point --data-dir elsewhere"
            )
        }
        for migration in Self.migrations where migration.version > current {
            _ = try await self.rows("BEGIN IMMEDIATE")
            do {
                for statement in migration.statements { _ = try await self.rows(statement) }
                _ = try await self.rows(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.integer(migration.version), .integer(Int(Date().timeIntervalSince1970))]
                )
                _ = try await self.rows("COMMIT")
            } catch {
                _ = try? await self.rows("ROLLBACK")
                throw StoreError("migration \(migration.version) of \(self.path) failed: \(error)")
            }
        }
        if let newest = Self.migrations.last?.version, newest > current {
            self.logger.info(
                current == 0 ? "store created" : "store migrated",
                metadata: ["from": "\(current)", "to": "\(newest)", "path": "\(self.path)"]
            )
        }
    }

    /// Everything stored, with secrets unsealed.
    public func load() async throws -> StoreSnapshot {
        var snapshot = StoreSnapshot()
        try await self.loadDirectory(into: &snapshot)
        try await self.loadDocuments(into: &snapshot)
        try await self.loadRecordings(into: &snapshot)
        for row in try await self.rows("SELECT * FROM activations") {
            snapshot.activations.append(
                Activation(
                    id: row.text("id"),
                    codeHash: row.text("code_hash"),
                    iamRole: row.text("iam_role"),
                    description: row.text("description"),
                    defaultInstanceName: row.text("default_instance_name"),
                    registrationLimit: Int(row.int("registration_limit")),
                    registrationsCount: Int(row.int("registrations_count")),
                    expirationEpoch: row.int("expires_at"),
                    createdEpoch: row.int("created_at"),
                    tags: Self.tags(row.text("tags_json"))
                )
            )
        }
        for row in try await self.rows("SELECT * FROM instances") {
            let id = row.text("id")
            snapshot.instances.append(
                ManagedInstance(
                    id: id,
                    secret: try self.sealer.open(row.text("secret_sealed"), context: "instance:\(id)"),
                    name: row.text("name"),
                    activationID: row.text("activation_id"),
                    platformType: row.text("platform_type"),
                    platformName: row.text("platform_name"),
                    platformVersion: row.text("platform_version"),
                    agentVersion: row.text("agent_version"),
                    ipAddress: row.text("ip_address"),
                    hostname: row.text("hostname"),
                    registeredEpoch: row.int("registered_at"),
                    lastPingEpoch: row.int("last_ping_at"),
                    online: false,
                    tags: Self.tags(row.text("tags_json"))
                )
            )
        }
        for row in try await self.rows("SELECT * FROM sessions ORDER BY started_at, id") {
            var parameters: [(key: String, value: String)] = []
            if case .object(let members)? = try? JSONValue(parsing: row.text("parameters_json")) {
                for (key, value) in members { parameters.append((key, value.stringValue ?? "")) }
            }
            let id = row.text("id")
            guard let status = SessionStatus(rawValue: row.text("status")) else {
                throw StoreError("session \(id) in \(self.path) has an unknown status \(row.text("status"))")
            }
            snapshot.sessions.append(
                SessionRecord(
                    id: id,
                    owner: row.text("owner"),
                    target: row.text("target"),
                    documentName: row.text("document_name"),
                    parameters: parameters,
                    reason: row.text("reason"),
                    status: status,
                    startEpoch: row.int("started_at"),
                    endEpoch: row.column("ended_at")?.integer.map(Int64.init),
                    closeReason: row.text("close_reason"),
                    bytesToAgent: row.int("bytes_to_agent"),
                    bytesToClient: row.int("bytes_to_client"),
                    clientTokenHash: nil,
                    agentTokenHashes: [:],
                    documentIdleTimeout: row.column("document_idle_timeout")?.integer.map(Int64.init),
                    documentMaximumDuration: row.column("document_max_duration")?.integer.map(Int64.init)
                )
            )
        }
        return snapshot
    }

    /// Submits one change; statements run in submission order. Failures are logged (the change stays in
    /// memory) and surface at the next `flush()`.
    public func submit(_ change: StoreChange) {
        let logger = self.logger
        let failed = self.failedWrites
        guard let queued = self.queue(change) else {
            logger.error("a change came after the store closed (the gateway is stopping); it is not stored")
            failed.withLockedValue { $0 += 1 }
            return
        }
        queued.whenComplete { result in
            switch result {
            case .success:
                self.noteWrite(failure: nil)
            case .failure(let error):
                logger.error("store write failed; the change is kept in memory only", metadata: ["error": "\(error)"])
                failed.withLockedValue { $0 += 1 }
                self.noteWrite(failure: error)
            }
        }
    }

    /// Writes one change and reports whether it is on disk (in submission order with `submit`). For
    /// changes that must never be in memory without being on disk: the caller applies them on success.
    public func commit(_ change: StoreChange) -> EventLoopFuture<Void> {
        let logger = self.logger
        guard let queued = self.queue(change) else {
            logger.error("a change came after the store closed (the gateway is stopping); nothing was changed")
            return self.connection.eventLoop.makeFailedFuture(Self.closedError)
        }
        return queued.map { _ in
            self.noteWrite(failure: nil)
        }.flatMapErrorThrowing { error in
            logger.error("store write failed; nothing was changed", metadata: ["error": "\(error)"])
            self.noteWrite(failure: error)
            throw StoreError("the store could not be written (\(error))")
        }
    }

    /// How many bytes the store may grow to (SQLite's max_page_count); nil: no limit but the disk's.
    public func limitSize(toBytes bytes: Int) async throws {
        let pageSize = try await self.rows("PRAGMA page_size").first?.column("page_size")?.integer ?? 4096
        _ = try await self.rows("PRAGMA max_page_count = \(max(1, bytes / pageSize))")
    }

    func statement(for change: StoreChange) -> (String, [SQLiteData]) {
        let (sql, binds): (String, [SQLiteData])
        switch change {
        case .accessKey, .accessKeyDeleted, .user, .userDeleted, .group, .groupDeleted, .policy, .policyDeleted, .audit:
            (sql, binds) = self.directoryStatement(for: change)
        case .documentVersion, .documentDefault, .documentDeleted:
            (sql, binds) = self.documentStatement(for: change)
        case .recording, .recordingChunk, .recordingDeleted:
            (sql, binds) = self.recordingStatement(for: change)
        case .activation(let a):
            sql = """
                INSERT OR REPLACE INTO activations (id, code_hash, iam_role, description, default_instance_name,
                    registration_limit, registrations_count, expires_at, created_at, tags_json)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            binds = [
                .text(a.id), .text(a.codeHash), .text(a.iamRole), .text(a.description), .text(a.defaultInstanceName),
                .integer(a.registrationLimit), .integer(a.registrationsCount), .integer(Int(a.expirationEpoch)),
                .integer(Int(a.createdEpoch)), .text(Self.json(tags: a.tags)),
            ]
        case .activationDeleted(let id):
            sql = "DELETE FROM activations WHERE id = ?"
            binds = [.text(id)]
        case .instance(let i):
            sql = """
                INSERT OR REPLACE INTO instances (id, secret_sealed, name, activation_id, platform_type, platform_name,
                    platform_version, agent_version, ip_address, hostname, registered_at, last_ping_at, tags_json)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            binds = [
                .text(i.id), .text(self.sealer.seal(i.secret, context: "instance:\(i.id)")), .text(i.name),
                .text(i.activationID), .text(i.platformType), .text(i.platformName), .text(i.platformVersion),
                .text(i.agentVersion), .text(i.ipAddress), .text(i.hostname), .integer(Int(i.registeredEpoch)),
                .integer(Int(i.lastPingEpoch)), .text(Self.json(tags: i.tags)),
            ]
        case .instanceDeleted(let id):
            sql = "DELETE FROM instances WHERE id = ?"
            binds = [.text(id)]
        case .session(let s):
            let parameters = JSONValue.object(s.parameters.map { ($0.key, .string($0.value)) })
            sql = """
                INSERT OR REPLACE INTO sessions (id, owner, target, document_name, parameters_json, reason, status,
                    started_at, ended_at, close_reason, bytes_to_agent, bytes_to_client, document_idle_timeout,
                    document_max_duration)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            binds = [
                .text(s.id), .text(s.owner), .text(s.target), .text(s.documentName), .text(parameters.serialized()),
                .text(s.reason), .text(s.status.rawValue), .integer(Int(s.startEpoch)),
                s.endEpoch.map { .integer(Int($0)) } ?? .null, .text(s.closeReason), .integer(Int(s.bytesToAgent)),
                .integer(Int(s.bytesToClient)), s.documentIdleTimeout.map { .integer(Int($0)) } ?? .null,
                s.documentMaximumDuration.map { .integer(Int($0)) } ?? .null,
            ]
        }
        return (sql, binds)
    }

    private let failedWrites = NIOLockedValueBox(0)
    let writeHealth = NIOLockedValueBox(StoreWriteHealth())

    /// Completes once every change submitted before it is on disk; fails if any write failed since the last flush.
    public func flush() -> EventLoopFuture<Void> {
        let failed = self.failedWrites
        return self.query("SELECT 1").flatMapThrowing {
            let count = failed.withLockedValue { count in
                defer { count = 0 }
                return count
            }
            if count > 0 { throw StoreError("\(count) store write(s) failed; see the gateway log") }
        }
    }

    /// `change`'s statement queued on the connection (``query(_:_:onRow:)``), or nil once the store is closed.
    private func queue(_ change: StoreChange) -> EventLoopFuture<Void>? {
        let (sql, binds) = self.statement(for: change)
        return self.queueIfOpen(sql, binds)
    }

    /// Set at ``close()``: a change submitted after it is refused with a clear error instead of reaching
    /// a closed SQLite handle.
    private let isClosed = NIOLockedValueBox(false)

    public func close() async throws {
        // Set, and the close queued behind every write already queued, under the lock writes take.
        let closing = self.isClosed.withLockedValue { closed in
            closed = true
            return self.connection.close()
        }
        try? await closing.get()
        try await self.threadPool.shutdownGracefully()
    }
}

extension SQLiteRow {
    func text(_ name: String) -> String { self.column(name)?.string ?? "" }
    func int(_ name: String) -> Int64 { Int64(self.column(name)?.integer ?? 0) }
}
