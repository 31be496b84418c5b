import FoundationEssentials
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SQLiteNIO

#if canImport(Glibc)
import Glibc
#endif

/// What a backup wrote.
public struct GatewayBackup: Sendable {
    public var destination: String
    public var storeBytes: Int
    public var files: [String]
    public var schemaVersion: Int
}

extension GatewayStore {
    /// The files besides the database that a data directory needs to come back as the same gateway: the
    /// key that opens the store's sealed secrets, the CA and server certificate (agents and clients pinned
    /// the CA), and the administrator's credentials. Written once, at first start, with these modes.
    public static let backupFiles: [(path: String, mode: mode_t)] = [
        ("store.key", 0o600), ("admin.credentials", 0o600), ("tls/ca.pem", 0o644), ("tls/ca-key.pem", 0o600),
        ("tls/server.pem", 0o644), ("tls/server-key.pem", 0o600),
    ]

    /// Copies the data directory `directory` into `destination` (created; it must not exist) while a
    /// gateway may be running on it. The database is copied with SQLite's `VACUUM INTO`, which reads in
    /// one transaction: the copy holds exactly the changes committed before it began, however many are
    /// being written meanwhile (the store is in WAL mode, so the gateway's writes are not blocked). The
    /// copy is then checked with `PRAGMA integrity_check`. `destination` is a complete data directory:
    /// restoring is starting `jumpgate server --data-dir` on it (or moving it into place).
    public static func backup(directory: String, to destination: String, logger: Logger) async throws -> GatewayBackup {
        let source = directory + "/jumpgate.sqlite"
        guard FileManager.default.fileExists(atPath: source) else {
            throw StoreError("\(directory) holds no gateway store (jumpgate.sqlite); give the gateway's --data-dir")
        }
        for file in Self.backupFiles where !FileManager.default.fileExists(atPath: directory + "/" + file.path) {
            throw StoreError("\(directory)/\(file.path) is missing: a backup without it could not be restored")
        }
        guard mkdir(destination, 0o700) == 0 else {
            let code = errno
            let reason = String(cString: strerror(code)).lowercased()
            throw StoreError(
                "cannot create \(destination): \(reason)"
                    + (code == EEXIST ? " (give a new directory; a backup never overwrites)" : "")
            )
        }
        do {
            return try await Self.copyDataDirectory(directory, to: destination, logger: logger)
        } catch {
            // Nothing half-written is left to be mistaken for a backup (or to block the next attempt).
            try? FileManager.default.removeItem(atPath: destination)
            throw error
        }
    }

    private static func copyDataDirectory(
        _ directory: String,
        to destination: String,
        logger: Logger
    ) async throws
        -> GatewayBackup
    {
        guard mkdir(destination + "/tls", 0o700) == 0 else {
            throw StoreError("cannot create \(destination)/tls: \(String(cString: strerror(errno)).lowercased())")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let version: Int
        do {
            version = try await Self.vacuum(
                directory + "/jumpgate.sqlite",
                into: destination + "/jumpgate.sqlite",
                threadPool: threadPool,
                logger: logger
            )
            try await Self.checkIntegrity(of: destination + "/jumpgate.sqlite", threadPool: threadPool, logger: logger)
        } catch {
            try? await threadPool.shutdownGracefully()
            throw error
        }
        try await threadPool.shutdownGracefully()
        try Self.fsync(destination + "/jumpgate.sqlite")
        chmod(destination + "/jumpgate.sqlite", 0o600)
        for file in Self.backupFiles {
            try Self.copy(directory + "/" + file.path, to: destination + "/" + file.path, mode: file.mode)
        }
        try Self.fsync(destination + "/tls")
        try Self.fsync(destination)
        let size = (try? FileManager.default.attributesOfItem(atPath: destination + "/jumpgate.sqlite")[.size] as? Int)
        return GatewayBackup(
            destination: destination,
            storeBytes: size ?? 0,
            files: ["jumpgate.sqlite"] + Self.backupFiles.map(\.path),
            schemaVersion: version
        )
    }

    /// `VACUUM INTO` from `source` to `target` in one read transaction; returns the schema version.
    private static func vacuum(
        _ source: String,
        into target: String,
        threadPool: NIOThreadPool,
        logger: Logger
    )
        async throws -> Int
    {
        let connection = try await SQLiteConnection.open(
            storage: .file(path: source),
            threadPool: threadPool,
            logger: logger,
            on: MultiThreadedEventLoopGroup.singleton.any()
        )
        do {
            // Wait for the gateway's write lock for up to 10 s rather than failing at once.
            _ = try await Self.rows(connection, "PRAGMA busy_timeout = 10000")
            let version =
                try await Self.rows(connection, "SELECT MAX(version) AS v FROM schema_migrations").first?
                .column("v")?.integer ?? 0
            guard version <= Self.schemaVersion else {
                throw StoreError(
                    "the store's schema (\(version)) is newer than this jumpgate's (\(Self.schemaVersion)): "
                        + "back it up with the jumpgate that runs the gateway"
                )
            }
            _ = try await Self.rows(connection, "VACUUM INTO ?", [.text(target)])
            try await connection.close()
            return version
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Flushes a file or directory to disk.
    static func fsync(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError("cannot open \(path) to sync it: errno \(errno)") }
        defer { Glibc.close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw StoreError("cannot sync \(path): errno \(errno)") }
    }

    /// `PRAGMA integrity_check` on the database at `path`: throws unless it answers "ok".
    public static func checkIntegrity(of path: String, threadPool: NIOThreadPool, logger: Logger) async throws {
        let connection = try await SQLiteConnection.open(
            storage: .file(path: path),
            threadPool: threadPool,
            logger: logger,
            on: MultiThreadedEventLoopGroup.singleton.any()
        )
        let answers: [String]
        do {
            answers = try await Self.rows(connection, "PRAGMA integrity_check").compactMap {
                $0.column("integrity_check")?.string
            }
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
        guard answers == ["ok"] else {
            throw StoreError("\(path) fails SQLite's integrity check: \(answers.prefix(5).joined(separator: "; "))")
        }
    }

    static func rows(
        _ connection: SQLiteConnection,
        _ sql: String,
        _ binds: [SQLiteData] = []
    ) async throws
        -> [SQLiteRow]
    {
        let collected = NIOLockedValueBox<[SQLiteRow]>([])
        try await connection.query(sql, binds) { row in collected.withLockedValue { $0.append(row) } }
        return collected.withLockedValue { $0 }
    }

    /// Copies a small file, creating the copy with `mode` so a secret is never readable by others.
    static func copy(_ source: String, to destination: String, mode: mode_t) throws {
        guard let data = FileManager.default.contents(atPath: source) else {
            throw StoreError("cannot read \(source)")
        }
        let fd = Glibc.open(destination, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw StoreError("cannot create \(destination): errno \(errno)") }
        defer { Glibc.close(fd) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, Glibc.fsync(fd) == 0 else { throw StoreError("cannot write \(destination)") }
    }
}
