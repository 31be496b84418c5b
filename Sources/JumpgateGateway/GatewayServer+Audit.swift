import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import Logging

/// The audit trail's set-up, pruning, log rotation and the summary of unauthenticated refusals.
extension GatewayServer {
    /// Opens the trail where the store's chain ends (and the `--audit-log` file, if any). A log file whose
    /// last record is ahead of the store means the store lost records: said loudly at start.
    static func openAudit(
        configuration: GatewayConfiguration,
        store: any GatewayStorage,
        logger: Logger
    ) async throws -> AuditTrail {
        let head = try await store.auditHead()
        var logFile: AuditLogFile?
        if let path = configuration.auditLogPath {
            if FileManager.default.fileExists(atPath: path), let lines = try? AuditLogFile.read(path),
                let last = lines.last, last.sequence > head.sequence
            {
                logger.critical(
                    "the audit log file is ahead of the store: records were removed from the store",
                    metadata: ["log_last": "\(last.sequence)", "store_last": "\(head.sequence)", "log": "\(path)"]
                )
            }
            logFile = try AuditLogFile(path: path)
        }
        return AuditTrail(head: head, store: store, logFile: logFile, logger: logger)
    }

    /// Reopens the `--audit-log` file (SIGHUP, after log rotation).
    public func reopenAuditLog() {
        guard let file = self.state.audit?.logFile else { return }
        do {
            try file.reopen()
            self.logger.info("audit log reopened", metadata: ["path": "\(file.path)"])
        } catch {
            self.logger.error(
                "audit log could not be reopened; still writing the old file",
                metadata: ["error": "\(error)"]
            )
        }
    }

    /// Removes records older than the retention; the chain keeps an anchor and gains a checkpoint record
    /// naming what was removed, so verification works afterwards.
    static func pruneAudit(state: GatewayState, olderThan seconds: Int64, logger: Logger) async {
        guard let store = state.store, let audit = state.audit else { return }
        let now = state.clock()
        do {
            guard let (first, last, anchor) = try await store.pruneAudit(before: now - seconds) else { return }
            let (record, index) = AuditRecords.serviceEvent(
                name: "AuditRecordsPruned",
                time: now,
                user: nil,
                details: [
                    "firstSequence": .integer(first), "lastSequence": .integer(last),
                    "lastHash": .string(anchor.hash), "retentionSeconds": .integer(seconds),
                ],
                resources: state.resources
            )
            audit.append(record, time: now, index: index)
            logger.info("audit records pruned", metadata: ["first": "\(first)", "last": "\(last)"])
        } catch {
            logger.error("audit records could not be pruned", metadata: ["error": "\(error)"])
        }
    }
}

extension GatewayState {
    /// One record per source per minute for requests that never authenticated (bad signatures, unknown
    /// keys, wrong activation codes, bad tokens): their number, error types and claimed key ids.
    public func auditRefusals(_ lines: [RefusalSummary.Line]) {
        guard let audit = self.audit else { return }
        // At most 100 records a minute whatever the number of sources (an IPv6 prefix has billions): the
        // busiest 99, and the rest as one.
        var lines = lines.sorted { ($0.count, $1.source) > ($1.count, $0.source) }
        if lines.count > 100 {
            let rest = lines[99...]
            var other = RefusalSummary.Line(
                source: "other (\(rest.count) sources)",
                count: rest.reduce(0) { $0 + $1.count },
                types: [:],
                keyIDs: [],
                windowStart: rest.map(\.windowStart).min() ?? self.clock()
            )
            for line in rest { other.types.merge(line.types, uniquingKeysWith: +) }
            lines = Array(lines.prefix(99)) + [other]
        }
        for line in lines {
            let (record, index) = AuditRecords.serviceEvent(
                name: "UnauthenticatedRequests",
                time: line.windowStart,
                user: nil,
                sourceIP: line.source,
                details: [
                    "count": .integer(Int64(line.count)),
                    "errorTypes": .object(
                        line.types.sorted { $0.key < $1.key }.map { ($0.key, .integer(Int64($0.value))) }
                    ),
                    "accessKeyIds": .array(line.keyIDs.map { .string($0) }),
                    "windowStart": .string(AuditRecords.isoTime(line.windowStart)),
                ],
                resources: self.resources,
                error: (
                    line.types.keys.sorted().first ?? "AccessDenied",
                    "\(line.count) request(s) refused before authentication"
                )
            )
            audit.append(record, time: line.windowStart, index: index)
        }
    }
}
