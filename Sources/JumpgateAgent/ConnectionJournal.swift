import Foundation
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers

/// The agent's record of every connection inside its port sessions (opened, refused, closed), kept in
/// STATE_DIR/connections.journal (JSON lines, 0600) until the gateway has them: an agent that is offline
/// when a connection closes reports it when it reconnects, and a restart loses nothing.
///
/// Bounded: past ``maximumBytes`` new records are counted, not kept, and the count is reported as one
/// `ConnectionRecordsDropped` record once there is room (so a loss is itself on the record).
///
/// The file is only appended to while connections come and go: the gateway's acknowledgement of the
/// oldest N records is a line `{"acknowledged":N}`, and reading the file replays records and
/// acknowledgements in order. It is emptied when nothing is left to send and rewritten with the records
/// still unsent once ``compactionBytes`` of it no longer count. (Rewriting it at every acknowledgement,
/// under the lock that every connection's record takes, halved the rate of connection setups under
/// load: docs/PERFORMANCE.md.) A crash that tears an acknowledgement makes the agent send those records
/// again; the gateway drops resent record ids.
public final class ConnectionJournal: Sendable {
    public let path: String
    let maximumBytes: Int
    let compactionBytes: Int
    private let state: NIOLockedValueBox<State>

    struct State {
        /// Records not yet acknowledged by the gateway, oldest first (as in the file).
        var lines: [String]
        var bytes: Int
        var dropped = 0
        /// The file, open for appending (-1: not open); reopened after each rewrite.
        var descriptor: Int32 = -1
        /// Bytes of the file that no longer count: acknowledged records, acknowledgements, torn lines.
        var deadBytes = 0
    }

    public static let defaultMaximumBytes = 16 << 20
    public static let defaultCompactionBytes = 4 << 20

    public init(
        directory: String,
        maximumBytes: Int = ConnectionJournal.defaultMaximumBytes,
        compactionBytes: Int = ConnectionJournal.defaultCompactionBytes
    ) {
        self.path = directory + "/connections.journal"
        self.maximumBytes = maximumBytes
        self.compactionBytes = compactionBytes
        let text = FileManager.default.contents(atPath: self.path).map { String(decoding: $0, as: UTF8.self) } ?? ""
        var state = Self.replay(text)
        if !text.isEmpty, !text.hasSuffix("\n") {
            // A crash tore the last line: end it, or the next record would be glued to it and lost too.
            state.descriptor = open(self.path, O_WRONLY | O_APPEND | O_CLOEXEC)
            Self.write("\n", to: state.descriptor)
        }
        self.state = NIOLockedValueBox(state)
    }

    deinit {
        self.state.withLockedValue { state in
            if state.descriptor >= 0 { close(state.descriptor) }
        }
    }

    /// The records a file's lines leave unacknowledged. A torn last line (a crash mid-append) is not JSON:
    /// dropped.
    static func replay(_ text: String) -> State {
        var lines: [String] = []
        var first = 0
        var (bytes, deadBytes) = (0, 0)
        for line in text.split(separator: "\n") {
            let size = line.utf8.count + 1
            guard let json = try? JSONValue(parsing: String(line)) else {
                deadBytes += size
                continue
            }
            if json["id"] == nil, let acknowledged = json["acknowledged"]?.int64Value {
                deadBytes += size
                let count = max(0, min(Int(acknowledged), lines.count - first))
                for removed in lines[first..<(first + count)] {
                    bytes -= removed.utf8.count + 1
                    deadBytes += removed.utf8.count + 1
                }
                first += count
            } else {
                lines.append(String(line))
                bytes += size
            }
        }
        return State(lines: Array(lines[first...]), bytes: bytes, deadBytes: deadBytes)
    }

    /// Appends a record (to memory and to the file, in one append(2)).
    public func append(_ record: JSONValue) {
        self.state.withLockedValue { state in
            var lines = [record.serialized()]
            if state.dropped > 0, state.bytes + lines[0].utf8.count < self.maximumBytes / 2 {
                let note: JSONValue = [
                    "id": .string(MessageID.random().description), "event": "ConnectionRecordsDropped",
                    "time": .integer(Int64(WallClock.nowMilliseconds())), "count": .integer(Int64(state.dropped)),
                ]
                lines.insert(note.serialized(), at: 0)
                state.dropped = 0
            }
            let size = lines.reduce(0) { $0 + $1.utf8.count + 1 }
            guard state.bytes + size <= self.maximumBytes else {
                state.dropped += 1
                return
            }
            state.lines += lines
            state.bytes += size
            if state.descriptor < 0 {
                state.descriptor = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            }
            Self.write(lines.map { $0 + "\n" }.joined(), to: state.descriptor)
        }
    }

    /// Up to `limit` of the oldest records, in an array of their own: `Array(prefix)` of the whole array
    /// shares its buffer, and ThreadSanitizer (which cannot see the Swift runtime's atomic reference
    /// counts) reported the uploader reading that buffer while `append` grew it under the lock.
    public func pending(limit: Int) -> [String] {
        self.state.withLockedValue { state in
            var batch: [String] = []
            batch.reserveCapacity(min(limit, state.lines.count))
            batch.append(contentsOf: state.lines.prefix(limit))
            return batch
        }
    }

    public var isEmpty: Bool { self.state.withLockedValue { $0.lines.isEmpty } }

    /// Forgets the oldest `count` records (the gateway has them): one line appended to the file, which is
    /// emptied once nothing is left in it to send, and rewritten once enough of it is dead.
    public func acknowledge(_ count: Int) {
        self.state.withLockedValue { state in
            let count = min(max(count, 0), state.lines.count)
            guard count > 0 else { return }
            let removed = state.lines.prefix(count).reduce(0) { $0 + $1.utf8.count + 1 }
            state.bytes -= removed
            state.lines.removeFirst(count)
            if state.lines.isEmpty {
                // Nothing left to send: the file is emptied in place (no rename, no new file).
                if state.descriptor >= 0 {
                    _ = ftruncate(state.descriptor, 0)
                } else {
                    _ = truncate(self.path, 0)
                }
                state.deadBytes = 0
                return
            }
            let marker = "{\"acknowledged\":\(count)}\n"
            state.deadBytes += removed + marker.utf8.count
            guard state.deadBytes >= self.compactionBytes else {
                if state.descriptor < 0 {
                    state.descriptor = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
                }
                Self.write(marker, to: state.descriptor)
                return
            }
            state.deadBytes = 0
            let rest = state.lines.map { $0 + "\n" }.joined()
            let temporary = self.path + ".tmp"
            _ = FileManager.default.createFile(
                atPath: temporary,
                contents: Data(rest.utf8),
                attributes: [.posixPermissions: 0o600]
            )
            _ = rename(temporary, self.path)
            if state.descriptor >= 0 { close(state.descriptor) }
            state.descriptor = -1
        }
    }

    static func write(_ text: String, to fd: Int32) {
        guard fd >= 0 else { return }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
