import JumpgateWire

/// One audit record as stored: its place in the chain, its CloudTrail JSON, and the hashes that link it.
public struct AuditEntry: Hashable, Sendable {
    public var sequence: Int64
    public var eventID: String
    public var eventTime: Int64
    /// The record's JSON text, exactly as hashed.
    public var record: String
    public var previousHash: String
    public var hash: String
    /// What listings filter on (not hashed: the record holds the same values).
    public var index: AuditIndex

    public init(
        sequence: Int64,
        eventID: String,
        eventTime: Int64,
        record: String,
        previousHash: String,
        hash: String,
        index: AuditIndex = AuditIndex()
    ) {
        self.sequence = sequence
        self.eventID = eventID
        self.eventTime = eventTime
        self.record = record
        self.previousHash = previousHash
        self.hash = hash
        self.index = index
    }
}

/// A record's event name, user, target instance and session, for `audit list`'s filters.
public struct AuditIndex: Hashable, Sendable {
    public var eventName: String
    public var userName: String
    public var target: String
    public var sessionID: String
    public init(eventName: String = "", userName: String = "", target: String = "", sessionID: String = "") {
        self.eventName = eventName
        self.userName = userName
        self.target = target
        self.sessionID = sessionID
    }
}

/// Where verification starts: the first record's predecessor (the genesis, or the checkpoint left by
/// pruning).
public struct AuditAnchor: Hashable, Sendable {
    public var sequence: Int64
    public var hash: String
    public init(sequence: Int64, hash: String) {
        self.sequence = sequence
        self.hash = hash
    }
    public static let genesis = AuditAnchor(sequence: 0, hash: String(repeating: "0", count: 64))
}

/// What the audit log file says about a record: its id and hash, as written when it was appended.
public struct AuditLogLine: Hashable, Sendable {
    public var sequence: Int64
    public var eventID: String
    public var hash: String
    public init(sequence: Int64, eventID: String, hash: String) {
        self.sequence = sequence
        self.eventID = eventID
        self.hash = hash
    }

    /// A line of the `--audit-log` file: the record with its `jumpgateChain` member; nil for what is not
    /// one (a partial last line after a crash).
    public init?(line: String) {
        guard let value = try? JSONValue(parsing: line), let chain = value["jumpgateChain"],
            let sequence = chain["sequence"]?.int64Value, let hash = chain["hash"]?.stringValue,
            let eventID = value["eventID"]?.stringValue
        else { return nil }
        self.init(sequence: sequence, eventID: eventID, hash: hash)
    }
}

/// The hash chain over audit records: each record's hash covers its sequence number, its text and the
/// hash of the one before, so changing, removing or reordering a record breaks every later link.
public enum AuditChain {
    public static func hash(previous: String, sequence: Int64, record: String) -> String {
        SigV4.hexSHA256(Array("\(previous)\n\(sequence)\n\(record)".utf8))
    }

    /// Links a new record after `previous`.
    public static func link(
        after previous: AuditAnchor,
        eventID: String,
        eventTime: Int64,
        record: String,
        index: AuditIndex = AuditIndex()
    ) -> AuditEntry {
        let sequence = previous.sequence + 1
        return AuditEntry(
            sequence: sequence,
            eventID: eventID,
            eventTime: eventTime,
            record: record,
            previousHash: previous.hash,
            hash: Self.hash(previous: previous.hash, sequence: sequence, record: record),
            index: index
        )
    }

    /// A pruned chain starts at an anchor; the newest `AuditRecordsPruned` record (inside the chain, so
    /// covered by the hashes) must name that anchor, else the anchor was moved to hide the first records.
    static func checkAnchor(_ anchor: AuditAnchor, _ entries: [AuditEntry]) -> Problem? {
        guard anchor != .genesis else { return nil }
        // By the event's name (its column, or its record's for rows without one), never by the record's
        // text: a user's StartSession reason "AuditRecordsPruned" must not pass for a checkpoint.
        let checkpoint = entries.last { entry in
            guard entry.index.eventName.isEmpty else { return entry.index.eventName == "AuditRecordsPruned" }
            return (try? JSONValue(parsing: entry.record))?["eventName"]?.stringValue == "AuditRecordsPruned"
        }
        let details = checkpoint.flatMap { try? JSONValue(parsing: $0.record) }?["serviceEventDetails"]
        guard checkpoint != nil, details?["lastSequence"]?.int64Value == anchor.sequence,
            details?["lastHash"]?.stringValue == anchor.hash
        else {
            return Problem(
                sequence: anchor.sequence,
                eventID: checkpoint?.eventID ?? "none",
                reason:
                    "the chain starts after record \(anchor.sequence), but no pruning checkpoint in the chain names "
                    + "that anchor: records before it were removed and the anchor rewritten"
            )
        }
        return nil
    }

    /// The columns listings filter on must say what the hashed record says (an edited one would hide a
    /// record from `audit list`, or move it for retention).
    static func indexMismatch(_ entry: AuditEntry) -> String? {
        guard let record = try? JSONValue(parsing: entry.record) else { return "its text is not JSON" }
        if record["eventID"]?.stringValue != entry.eventID { return "its eventID column differs from the record" }
        if let name = record["eventName"]?.stringValue, !entry.index.eventName.isEmpty, name != entry.index.eventName {
            return "its event name column differs from the record"
        }
        let user = record["userIdentity"]?["userName"]?.stringValue ?? ""
        if !entry.index.userName.isEmpty || !user.isEmpty, user != entry.index.userName {
            return "its user column differs from the record"
        }
        // Int64(exactly:) rather than Int64(...): a tampered time past Int64's range must be reported, not trap.
        if let time = record["eventTime"]?.stringValue.flatMap(IAMDate.epochSeconds),
            Int64(exactly: time.rounded(.towardZero)) != entry.eventTime
        {
            return "its time column differs from the record"
        }
        return nil
    }

    /// The first thing wrong, naming the record: its event id and sequence number, and what is wrong.
    public struct Problem: Hashable, Sendable, CustomStringConvertible {
        public var sequence: Int64
        public var eventID: String
        public var reason: String
        public var description: String { "record \(self.sequence) (eventID \(self.eventID)): \(self.reason)" }
    }

    /// Walks `entries` (in sequence order) from `anchor`; with the log file's lines, also compares each
    /// record's hash with the one the log recorded when it was written, and the store's last record with
    /// the log's (a store rewritten with recomputed hashes, or truncated). Nil: intact.
    public static func verify(
        _ entries: [AuditEntry],
        anchor: AuditAnchor,
        log: [AuditLogLine]? = nil
    ) -> Problem? {
        var logged: [Int64: AuditLogLine] = [:]
        for line in log ?? [] {
            // Two different records under one number: the store lost records (a crash) and the numbers
            // were used again.
            if let earlier = logged[line.sequence], earlier.hash != line.hash {
                return Problem(
                    sequence: line.sequence,
                    eventID: earlier.eventID,
                    reason: "the log file holds two different records numbered \(line.sequence): records were lost "
                        + "from the store and their numbers used again"
                )
            }
            logged[line.sequence] = line
        }
        if let problem = Self.checkAnchor(anchor, entries) { return problem }
        var expected = anchor
        // Records at or before the anchor are ones a prune was removing when it stopped.
        for entry in entries where entry.sequence > anchor.sequence {
            if entry.sequence != expected.sequence + 1 {
                let missing = expected.sequence + 1
                if entry.sequence > missing {
                    let name = logged[missing]?.eventID ?? "unknown (not in the log file)"
                    return Problem(
                        sequence: missing,
                        eventID: name,
                        reason: "removed: the store goes from record \(expected.sequence) to \(entry.sequence) "
                            + "(next present: eventID \(entry.eventID))"
                    )
                }
                return Problem(
                    sequence: entry.sequence,
                    eventID: entry.eventID,
                    reason: "out of order: expected record \(missing) here"
                )
            }
            if entry.previousHash != expected.hash {
                return Problem(
                    sequence: entry.sequence,
                    eventID: entry.eventID,
                    reason: "reordered or a record before it was removed: its link does not follow the record before"
                )
            }
            if Self.hash(previous: expected.hash, sequence: entry.sequence, record: entry.record) != entry.hash {
                return Problem(
                    sequence: entry.sequence,
                    eventID: entry.eventID,
                    reason: "changed: its hash does not match its content"
                )
            }
            if let reason = Self.indexMismatch(entry) {
                return Problem(sequence: entry.sequence, eventID: entry.eventID, reason: reason)
            }
            if let line = logged[entry.sequence], line.hash != entry.hash || line.eventID != entry.eventID {
                return Problem(
                    sequence: entry.sequence,
                    eventID: line.eventID,
                    reason: "differs from the audit log file (the store was rewritten with recomputed hashes)"
                )
            }
            expected = AuditAnchor(sequence: entry.sequence, hash: entry.hash)
        }
        if let last = logged.keys.max(), last > expected.sequence {
            let first = expected.sequence + 1
            return Problem(
                sequence: first,
                eventID: logged[first]?.eventID ?? logged[last]!.eventID,
                reason:
                    "removed: the audit log file has records up to \(last) but the store ends at \(expected.sequence)"
            )
        }
        return nil
    }
}
