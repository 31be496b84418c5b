import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import SQLiteNIO

/// What `audit list` asks for.
public struct AuditFilter: Sendable {
    public var userName: String?
    public var target: String?
    public var sessionID: String?
    public var eventName: String?
    public var since: Int64?
    public var until: Int64?
    public var limit = 1000
    public init() {}
}

/// Reading and pruning the audit trail.
extension GatewayStore {
    static func entry(_ row: SQLiteRow) -> AuditEntry {
        AuditEntry(
            sequence: row.int("sequence"),
            eventID: row.text("event_id"),
            eventTime: row.int("event_time"),
            record: row.text("record"),
            previousHash: row.text("previous_hash"),
            hash: row.text("hash"),
            index: AuditIndex(
                eventName: row.text("event_name"),
                userName: row.text("user_name"),
                target: row.text("target"),
                sessionID: row.text("session_id")
            )
        )
    }

    /// Records matching the filter, oldest first (at most `limit`, the newest of them).
    public func auditEntries(_ filter: AuditFilter) async throws -> [AuditEntry] {
        var clauses: [String] = []
        var binds: [SQLiteData] = []
        let columns: [(String, String?)] = [
            ("user_name", filter.userName), ("target", filter.target), ("session_id", filter.sessionID),
            ("event_name", filter.eventName),
        ]
        for (column, value) in columns {
            if let value {
                clauses.append("\(column) = ?")
                binds.append(.text(value))
            }
        }
        if let since = filter.since {
            clauses.append("event_time >= ?")
            binds.append(.integer(Int(since)))
        }
        if let until = filter.until {
            clauses.append("event_time <= ?")
            binds.append(.integer(Int(until)))
        }
        let condition = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
        let rows = try await self.rows(
            "SELECT * FROM (SELECT * FROM audit_records\(condition) ORDER BY sequence DESC LIMIT \(max(1, filter.limit))) "
                + "ORDER BY sequence",
            binds
        )
        return rows.map(Self.entry)
    }

    /// The whole chain, with where it starts.
    public func auditChain() async throws -> (anchor: AuditAnchor, entries: [AuditEntry]) {
        let entries = try await self.rows("SELECT * FROM audit_records ORDER BY sequence").map(Self.entry)
        return (try await self.auditAnchor(), entries)
    }

    func auditAnchor() async throws -> AuditAnchor {
        guard let row = try await self.rows("SELECT sequence, hash FROM audit_anchor WHERE id = 1").first else {
            return .genesis
        }
        return AuditAnchor(sequence: row.int("sequence"), hash: row.text("hash"))
    }

    /// The last record's place and hash (where the next record links), or the anchor when none is left.
    public func auditHead() async throws -> AuditAnchor {
        if let row = try await self.rows("SELECT sequence, hash FROM audit_records ORDER BY sequence DESC LIMIT 1")
            .first
        {
            return AuditAnchor(sequence: row.int("sequence"), hash: row.text("hash"))
        }
        return try await self.auditAnchor()
    }

    /// Removes records older than `epoch`; the last one removed becomes the anchor verification starts
    /// from. Returns the range removed (nil: nothing was old enough).
    public func pruneAudit(before epoch: Int64) async throws -> (first: Int64, last: Int64, anchor: AuditAnchor)? {
        let newest = try await self.rows(
            "SELECT sequence, hash FROM audit_records WHERE event_time < ? ORDER BY sequence DESC LIMIT 1",
            [.integer(Int(epoch))]
        ).first
        guard let newest else { return nil }
        let anchor = AuditAnchor(sequence: newest.int("sequence"), hash: newest.text("hash"))
        let first = try await self.rows("SELECT MIN(sequence) AS s FROM audit_records").first?.int("s") ?? 0
        // No transaction (the connection is shared: one would take in whatever else was submitted
        // meanwhile, and a rollback would undo it): the anchor moves first, then the records go. A prune
        // that stops between the two leaves records at or before the anchor, which verification skips.
        _ = try await self.rows(
            "INSERT OR REPLACE INTO audit_anchor (id, sequence, hash) VALUES (1, ?, ?)",
            [.integer(Int(anchor.sequence)), .text(anchor.hash)]
        )
        _ = try await self.rows("DELETE FROM audit_records WHERE sequence <= ?", [.integer(Int(anchor.sequence))])
        return (first, anchor.sequence, anchor)
    }
}
