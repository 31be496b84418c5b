import FoundationEssentials
import Glibc
import JumpgateAccess
import JumpgateWire
import NIOConcurrencyHelpers

/// The `--audit-log` file: one JSON line per record (the CloudTrail record with a `jumpgateChain` member
/// carrying its sequence number and hashes), appended in chain order, for shipping to a SIEM. Its last
/// line is the chain's head, so a store rewritten with recomputed hashes, or truncated, is caught against
/// it (`jumpgate audit verify --log`). Reopened on SIGHUP, for log rotation.
public final class AuditLogFile: Sendable {
    public let path: String
    private let descriptor: NIOLockedValueBox<Int32>

    public init(path: String) throws {
        self.path = path
        self.descriptor = NIOLockedValueBox(try Self.open(path))
    }

    static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw GatewayStartError(
                "the audit log \(path) cannot be opened for appending (\(reason)); check the path and its directory's "
                    + "permissions, or give another --audit-log"
            )
        }
        return fd
    }

    /// The line for a record: the record's members, then `jumpgateChain`.
    static func line(record: JSONValue, entry: AuditEntry) -> String {
        var members = record.objectValue ?? []
        members.append(
            (
                "jumpgateChain",
                [
                    "sequence": .integer(entry.sequence), "previousHash": .string(entry.previousHash),
                    "hash": .string(entry.hash),
                ]
            )
        )
        return JSONValue.object(members).serialized() + "\n"
    }

    /// Appends a record's line; false when it could not be written whole (a full disk, a closed file): the
    /// store still gets the record, and the file lacks it (which verification against the file does not
    /// compare), so the caller logs the failure.
    func append(record: JSONValue, entry: AuditEntry) -> Bool {
        let bytes = Array(Self.line(record: record, entry: entry).utf8)
        return self.descriptor.withLockedValue { fd in
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { return false }
                offset += written
            }
            return true
        }
    }

    /// Opens the path again (after logrotate moved the file away); keeps the old descriptor on failure.
    public func reopen() throws {
        let fresh = try Self.open(self.path)
        let old = self.descriptor.withLockedValue { fd in
            defer { fd = fresh }
            return fd
        }
        Glibc.close(old)
    }

    public func close() {
        self.descriptor.withLockedValue { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    /// The lines of a log file (and of its rotated predecessors, if the caller passes them) that are
    /// records; partial lines are skipped.
    public static func read(_ path: String) throws -> [AuditLogLine] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GatewayStartError("the audit log \(path) cannot be read")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            AuditLogLine(line: String($0))
        }
    }
}
