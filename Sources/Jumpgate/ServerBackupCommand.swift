import ArgumentParser
import FoundationEssentials
import JumpgateGateway
import JumpgateWire
import Logging

/// `jumpgate server backup`: an online backup of a gateway's data directory (see GatewayStore.backup).
struct ServerBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a gateway's data directory (store, store key, TLS, admin credentials) while it runs.",
        discussion: """
            Usage: jumpgate server backup --data-dir DIR --to NEWDIR [--format json]. The store is copied in one SQLite read transaction (VACUUM INTO), so the copy holds exactly the \
            changes committed before the backup began, even under load, and is checked with \
            PRAGMA integrity_check. The destination is a complete data directory: to restore, stop the \
            gateway and start it with --data-dir on the copy (or move the copy into place). It holds the \
            store key and the CA's private key: keep it as safe as the data directory itself.
            """
    )

    /// `--data-dir` is the server command's own option (`jumpgate server backup --data-dir DIR ...`).
    @ParentCommand var server: ServerCommand
    var dataDir: String { self.server.dataDir }

    @Option(name: .long, help: ArgumentHelp("A new directory for the copy (it must not exist).", valueName: "dir"))
    var to: String

    /// `--format json` (the server command's option) prints {"destination", "storeBytes", "files", "schemaVersion"}.
    var format: OutputFormat { self.server.format }

    func run() async throws {
        let backup: GatewayBackup
        do {
            backup = try await GatewayStore.backup(
                directory: self.dataDir,
                to: self.to,
                logger: Logger(label: "jumpgate.backup")
            )
        } catch let error as StoreError {
            throw CommandFailure("Backup failed: \(error.description).")
        } catch {
            throw CommandFailure(
                "Backup failed: \(error). Nothing was left in \(self.to); the gateway is not affected."
            )
        }
        let answer: JSONValue = .object([
            ("destination", .string(backup.destination)), ("storeBytes", .integer(Int64(backup.storeBytes))),
            ("files", .array(backup.files.map { .string($0) })),
            ("schemaVersion", .integer(Int64(backup.schemaVersion))),
        ])
        printAnswer(
            answer,
            self.format,
            text:
                "Backed up \(self.dataDir) to \(backup.destination) (store \(backup.storeBytes) bytes, integrity ok). "
                + "Restore: start jumpgate server --data-dir \(backup.destination).\n"
        )
    }
}
