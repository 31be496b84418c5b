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
public final class ConnectionJournal: Sendable {
    public let path: String
    let maximumBytes: Int
    private let state: NIOLockedValueBox<State>

    struct State {
        /// Records not yet acknowledged by the gateway, oldest first (as in the file).
        var lines: [String]
        var bytes: Int
        var dropped = 0
        /// The file, open for appending (-1: not open); reopened after each rewrite.
        var descriptor: Int32 = -1
    }

    public static let defaultMaximumBytes = 16 << 20

    public init(directory: String, maximumBytes: Int = ConnectionJournal.defaultMaximumBytes) {
        self.path = directory + "/connections.journal"
        self.maximumBytes = maximumBytes
        let text = FileManager.default.contents(atPath: self.path).map { String(decoding: $0, as: UTF8.self) } ?? ""
        // A torn last line (a crash mid-append) is not JSON: dropped.
        let lines = text.split(separator: "\n").map(String.init).filter { (try? JSONValue(parsing: $0)) != nil }
        self.state = NIOLockedValueBox(State(lines: lines, bytes: lines.reduce(0) { $0 + $1.utf8.count + 1 }))
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

    /// Forgets the oldest `count` records (the gateway has them): the file is rewritten without them.
    public func acknowledge(_ count: Int) {
        self.state.withLockedValue { state in
            let removed = state.lines.prefix(count)
            state.bytes -= removed.reduce(0) { $0 + $1.utf8.count + 1 }
            state.lines.removeFirst(min(count, state.lines.count))
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
