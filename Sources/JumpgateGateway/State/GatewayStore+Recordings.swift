import Crypto
import FoundationEssentials
import NIOCore
import SQLiteNIO

/// The store's schema 6: session recordings. One row per recording; its bytes in chunks as the agent
/// delivered them, each sealed with the store key (AES-GCM, bound to its session and offset, so a chunk
/// cannot be moved to another recording or place). A recording's length is what its chunks hold, so a
/// crash between a chunk and its recording's row loses nothing.
extension GatewayStore {
    static let recordingsMigration = [
        """
        CREATE TABLE recordings (
            session_id TEXT PRIMARY KEY, maximum_bytes INTEGER NOT NULL, complete INTEGER NOT NULL,
            truncated INTEGER NOT NULL, started_at INTEGER NOT NULL, completed_at INTEGER,
            sha256 TEXT NOT NULL)
        """,
        """
        CREATE TABLE recording_chunks (
            session_id TEXT NOT NULL REFERENCES recordings (session_id) ON DELETE CASCADE,
            offset INTEGER NOT NULL, length INTEGER NOT NULL, sealed BLOB NOT NULL,
            PRIMARY KEY (session_id, offset))
        """,
    ]

    static func chunkContext(_ sessionID: String, offset: Int64) -> String { "recording:\(sessionID):\(offset)" }

    func recordingStatement(for change: StoreChange) -> (String, [SQLiteData]) {
        switch change {
        case .recording(let r):
            // An upsert, never REPLACE: replacing the row would delete its chunks (ON DELETE CASCADE).
            return (
                """
                INSERT INTO recordings (session_id, maximum_bytes, complete, truncated, started_at, completed_at,
                    sha256) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (session_id) DO UPDATE SET complete = excluded.complete,
                    truncated = excluded.truncated, completed_at = excluded.completed_at, sha256 = excluded.sha256
                """,
                [
                    .text(r.sessionID), .integer(Int(r.maximumBytes)), .integer(r.complete ? 1 : 0),
                    .integer(r.truncated ? 1 : 0), .integer(Int(r.startedEpoch)),
                    r.completedEpoch.map { .integer(Int($0)) } ?? .null, .text(r.sha256),
                ]
            )
        case .recordingChunk(let sessionID, let offset, let bytes):
            let sealed = self.sealer.seal(bytes: bytes, context: Self.chunkContext(sessionID, offset: offset))
            return (
                // A piece at an offset already stored (a write that reported failure but landed) is replaced:
                // the stored bytes always are the last piece the length counted.
                "INSERT OR REPLACE INTO recording_chunks (session_id, offset, length, sealed) VALUES (?, ?, ?, ?)",
                [.text(sessionID), .integer(Int(offset)), .integer(bytes.count), .blob(ByteBuffer(bytes: sealed))]
            )
        case .recordingDeleted(let sessionID):
            return ("DELETE FROM recordings WHERE session_id = ?", [.text(sessionID)])
        default:
            preconditionFailure("not a recording change")
        }
    }

    func loadRecordings(into snapshot: inout StoreSnapshot) async throws {
        // A recording's length is its unbroken run of pieces from the start.
        var lengths: [String: Int64] = [:]
        for row in try await self.rows(
            "SELECT session_id, offset, length FROM recording_chunks ORDER BY session_id, offset"
        ) {
            let id = row.text("session_id")
            if row.int("offset") == lengths[id, default: 0] { lengths[id, default: 0] += row.int("length") }
        }
        for row in try await self.rows("SELECT * FROM recordings") {
            let id = row.text("session_id")
            var record = RecordingRecord(
                sessionID: id,
                maximumBytes: row.int("maximum_bytes"),
                startedEpoch: row.int("started_at"),
                length: lengths[id] ?? 0
            )
            record.complete = row.int("complete") != 0
            record.truncated = row.int("truncated") != 0
            record.completedEpoch = row.column("completed_at")?.integer.map(Int64.init)
            record.sha256 = row.text("sha256")
            snapshot.recordings.append(record)
        }
    }

    /// Up to `maxBytes` of a recording from `offset`: the pieces that hold them, each opened and checked
    /// (in order, none missing), then cut to the range.
    public func recordingContent(sessionID: String, from offset: Int64, maxBytes: Int) async throws -> [UInt8] {
        let end = offset + Int64(maxBytes)
        let rows = try await self.rows(
            "SELECT offset, length, sealed FROM recording_chunks WHERE session_id = ? AND offset < ? "
                + "AND offset + length > ? ORDER BY offset",
            [.text(sessionID), .integer(Int(end)), .integer(Int(offset))]
        )
        var content: [UInt8] = []
        var next: Int64? = nil
        for row in rows {
            let start = row.int("offset")
            guard next == nil || start == next, case .blob(let sealed)? = row.column("sealed") else {
                throw StoreError("the recording of \(sessionID) is damaged: bytes missing before offset \(start)")
            }
            let plain = try self.sealer.open(
                bytes: Array(sealed.readableBytesView),
                context: Self.chunkContext(sessionID, offset: start)
            )
            guard plain.count == row.int("length") else {
                throw StoreError("the recording of \(sessionID) is damaged at offset \(start)")
            }
            next = start + Int64(plain.count)
            let from = Int(max(0, offset - start))
            let to = Int(min(Int64(plain.count), end - start))
            content += plain[from..<to]
        }
        if let first = rows.first, first.int("offset") > offset {
            throw StoreError(
                "the recording of \(sessionID) is damaged: bytes missing before offset \(first.int("offset"))"
            )
        }
        return content
    }
}

extension SecretSealer {
    /// `bytes` sealed (nonce, ciphertext, tag), bound to `context`.
    func seal(bytes: [UInt8], context: String) -> [UInt8] {
        // AES-GCM with a random nonce cannot fail for these sizes.
        let box = try! AES.GCM.seal(bytes, using: self.key, authenticating: Data(context.utf8))
        return Array(box.combined!)
    }

    func open(bytes: [UInt8], context: String) throws -> [UInt8] {
        guard let box = try? AES.GCM.SealedBox(combined: bytes),
            let plain = try? AES.GCM.open(box, using: self.key, authenticating: Data(context.utf8))
        else {
            throw StoreError("sealed data (\(context)) does not open with the store key: wrong key file, or damaged")
        }
        return Array(plain)
    }
}
