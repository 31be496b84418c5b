import JumpgateWire
import SQLiteNIO

/// The store's schema 5: custom session documents, one row per version, the default version marked; and
/// each session's limits from its document.
extension GatewayStore {
    static let documentsMigration = [
        "CREATE TABLE documents (name TEXT NOT NULL, version INTEGER NOT NULL, content TEXT NOT NULL, "
            + "created_at INTEGER NOT NULL, is_default INTEGER NOT NULL, PRIMARY KEY (name, version))",
        // A session's limits from its document (seconds; NULL: the gateway's own).
        "ALTER TABLE sessions ADD COLUMN document_idle_timeout INTEGER",
        "ALTER TABLE sessions ADD COLUMN document_max_duration INTEGER",
    ]

    func documentStatement(for change: StoreChange) -> (String, [SQLiteData]) {
        switch change {
        case .documentVersion(let version, let isDefault):
            return (
                "INSERT OR REPLACE INTO documents (name, version, content, created_at, is_default) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(version.name), .integer(version.version), .text(version.content),
                    .integer(Int(version.createdEpoch)), .integer(isDefault ? 1 : 0),
                ]
            )
        case .documentDefault(let name, let version):
            // One statement: the old default loses the mark as the new one gets it.
            return ("UPDATE documents SET is_default = (version = ?) WHERE name = ?", [.integer(version), .text(name)])
        case .documentDeleted(let name):
            return ("DELETE FROM documents WHERE name = ?", [.text(name)])
        default:
            preconditionFailure("not a document change")
        }
    }

    func loadDocuments(into snapshot: inout StoreSnapshot) async throws {
        for row in try await self.rows("SELECT * FROM documents") {
            let version = StoredDocumentVersion(
                name: row.text("name"),
                version: Int(row.int("version")),
                content: row.text("content"),
                createdEpoch: row.int("created_at")
            )
            snapshot.documentVersions.append(version)
            if row.int("is_default") != 0 { snapshot.documentDefaults[version.name] = version.version }
        }
    }
}
