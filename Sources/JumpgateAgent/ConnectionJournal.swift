import FoundationEssentials
import Glibc
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers

/// The agent's record of every connection inside its port sessions (opened, refused, closed), and of every
/// session it refused (`SessionRefusalRecord.swift`), kept in
/// STATE_DIR/connections.journal (JSON lines, 0600) until the gateway has them: an agent that is offline
/// when a connection closes reports it when it reconnects, and a restart loses nothing.
///
/// Bounded: past ``maximumBytes`` new records are counted, not kept, and the count is reported as one
/// `ConnectionRecordsDropped` record once there is room (so a loss is itself on the record).
///
/// The file is only appended to while connections come and go: the gateway's acknowledgement of the
/// oldest records is a line `{"acknowledgedThrough":"<id>"}` naming the last of them, and reading the
/// file replays records and acknowledgements in order (an acknowledgement whose record is not in the
/// file drops nothing). It is emptied when nothing is left to send, and rewritten with only the records
/// still unsent (a new file, fsync, rename) once ``compactionBytes`` of it no longer count, once it would
/// pass ``maximumBytes``, or after a write to it failed (so that the file and memory agree again).
/// Rewriting it at every acknowledgement, as before, held the lock that every connection's record takes
/// for a rename each time. A crash that tears an acknowledgement makes the agent send those records again;
/// the gateway drops the ids it saw lately (its last 100,000, since it started).
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
        /// A write to the file failed or was cut short: the file may miss records that memory has.
        var diverged = false
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
            state.diverged = !Self.write("\n", to: state.descriptor)
        }
        self.state = NIOLockedValueBox(state)
    }

    deinit {
        self.state.withLockedValue { state in
            if state.descriptor >= 0 { close(state.descriptor) }
        }
    }

    /// The records a file's lines leave unacknowledged. A record is a JSON object with a string `id`; a
    /// torn line (a crash mid-append) or anything else is dead.
    static func replay(_ text: String) -> State {
        var lines: [String] = []
        var index: [String: Int] = [:]
        var first = 0
        var (bytes, deadBytes) = (0, 0)
        for line in text.split(separator: "\n") {
            let size = line.utf8.count + 1
            let json = try? JSONValue(parsing: String(line))
            if let id = json?["id"]?.stringValue, json?.objectValue != nil {
                index[id] = lines.count
                lines.append(String(line))
                bytes += size
                continue
            }
            deadBytes += size
            guard let through = json?["acknowledgedThrough"]?.stringValue, let last = index[through], last >= first
            else { continue }
            for removed in lines[first...last] {
                bytes -= removed.utf8.count + 1
                deadBytes += removed.utf8.count + 1
            }
            first = last + 1
        }
        return State(lines: Array(lines[first...]), bytes: bytes, deadBytes: deadBytes)
    }

    /// Appends a record (to memory and to the file, in one append(2)).
    public func append(_ record: JSONValue) {
        self.state.withLockedValue { state in
            var lines = [record.serialized()]
            if state.dropped > 0, state.bytes + lines[0].utf8.count < self.maximumBytes / 2 {
                let note: JSONValue = [
                    "id": .string(SystemRandom.id().description), "event": "ConnectionRecordsDropped",
                    "time": .integer(Int64(WallClock.nowMilliseconds())), "count": .integer(Int64(state.dropped)),
                ]
                lines.insert(note.serialized(), at: 0)
                state.dropped = 0
            }
            let size = lines.reduce(0) { $0 + $1.utf8.count + 1 }
            if state.deadBytes > 0, state.bytes + state.deadBytes + size > self.maximumBytes {
                _ = self.rewrite(&state)  // the dead lines go first: the file stays within the bound
            }
            guard state.bytes + size <= self.maximumBytes else {
                state.dropped += 1
                return
            }
            state.lines += lines
            state.bytes += size
            if !self.appendToFile(lines.map { $0 + "\n" }.joined(), &state) { state.diverged = true }
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
    /// emptied once nothing is left in it to send, and rewritten when it must be (see the type's comment).
    public func acknowledge(_ count: Int) {
        self.state.withLockedValue { state in
            let count = min(max(count, 0), state.lines.count)
            guard count > 0 else { return }
            let lastID = (try? JSONValue(parsing: state.lines[count - 1]))?["id"]?.stringValue
            let removed = state.lines.prefix(count).reduce(0) { $0 + $1.utf8.count + 1 }
            state.bytes -= removed
            state.lines.removeFirst(count)
            if state.lines.isEmpty, self.empty(&state) { return }
            guard let lastID else {
                // Not a line this journal wrote: only a rewrite can say what is left.
                state.diverged = true
                _ = self.rewrite(&state)
                return
            }
            let marker = (["acknowledgedThrough": .string(lastID)] as JSONValue).serialized() + "\n"
            state.deadBytes += removed + marker.utf8.count
            if state.diverged || state.deadBytes >= self.compactionBytes
                || state.bytes + state.deadBytes > self.maximumBytes,
                self.rewrite(&state)
            {
                return
            }
            if !self.appendToFile(marker, &state) { state.diverged = true }
        }
    }

    /// Appends `text` to the file (opened on first use); false if the file did not take all of it.
    private func appendToFile(_ text: String, _ state: inout State) -> Bool {
        if state.descriptor < 0 {
            state.descriptor = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        }
        return Self.write(text, to: state.descriptor)
    }

    /// Empties the file in place (nothing is left to send); false if it could not be.
    private func empty(_ state: inout State) -> Bool {
        let result = state.descriptor >= 0 ? ftruncate(state.descriptor, 0) : truncate(self.path, 0)
        guard result == 0 || errno == ENOENT else { return false }
        state.deadBytes = 0
        state.diverged = false
        return true
    }

    /// Replaces the file with the records still unsent: a new file (0600), fsync, rename. False, with
    /// the old file left as it was, if any step fails.
    private func rewrite(_ state: inout State) -> Bool {
        let temporary = self.path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        let written = Self.write(state.lines.map { $0 + "\n" }.joined(), to: fd) && fsync(fd) == 0
        close(fd)
        guard written, rename(temporary, self.path) == 0 else {
            unlink(temporary)
            return false
        }
        if state.descriptor >= 0 { close(state.descriptor) }
        state.descriptor = -1
        state.deadBytes = 0
        state.diverged = false
        return true
    }

    /// Writes all of `text`; false on an error or if the descriptor is not open.
    @discardableResult
    static func write(_ text: String, to fd: Int32) -> Bool {
        guard fd >= 0 else { return false }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
