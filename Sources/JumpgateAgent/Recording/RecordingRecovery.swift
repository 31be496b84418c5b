import FoundationEssentials
import Glibc
import JumpgateWire
import Logging

/// At start: a recording still open (`.cast`) belongs to a session of an earlier agent process, which
/// ended with it (its shell lost its terminal). Each is closed: a line the crash cut is dropped, a marker
/// says why the recording ends there, and the file is marked finished for the uploader. Only the file's
/// first and last bytes are read.
extension AgentRunner {
    static let stoppedMarker =
        "The agent stopped before the session ended (it was killed or crashed); the recording ends here."

    func closeRecordingsOfEarlierRun() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.recordingsDirectory)) ?? []
        for name in names {
            guard let (sessionID, state) = SessionRecorder.FileState.parse(name), state == .open else { continue }
            let path = self.recordingsDirectory + "/" + name
            do {
                let cut = try Self.closeRecording(at: path, now: SessionRecorder.now())
                let finished: SessionRecorder.FileState = cut ? .cut : .done
                rename(path, self.recordingsDirectory + "/" + sessionID + finished.rawValue)
                self.logger.info(
                    "recording of an earlier agent run closed",
                    metadata: ["jumpgate.session_id": "\(sessionID)"]
                )
            } catch {
                self.logger.warning(
                    "recording of an earlier agent run left as it is",
                    metadata: ["jumpgate.session_id": "\(sessionID)", "problem": "\(error)"]
                )
            }
        }
    }

    /// Cuts the file at its last whole line and appends the marker, timed from the header's start. True if
    /// the recording had already stopped at its size limit (its last line is that marker): it stays cut.
    @discardableResult
    static func closeRecording(at path: String, now: Int64) throws -> Bool {
        let fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw AgentError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard let size = Self.fileSize(path) else { return false }
        // The last newline, reading back from the end 64 KiB at a time.
        var whole = 0
        var end = size
        var lastLine: [UInt8] = []
        while end > 0 {
            let start = max(0, end - 65536)
            let block = try Self.read(fd, path: path, offset: start, count: end - start)
            if let index = block.lastIndex(of: UInt8(ascii: "\n")) {
                whole = start + index + 1
                let before = block[..<index].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
                lastLine = Array(block[before..<index])
                break
            }
            end = start
        }
        if whole < size, ftruncate(fd, off_t(whole)) != 0 {
            throw AgentError("cannot cut \(path): \(String(cString: strerror(errno)))")
        }
        let head = try Self.read(fd, path: path, offset: 0, count: min(whole, 4096))
        let header = head.firstIndex(of: UInt8(ascii: "\n")).flatMap { try? JSONValue(parsing: Array(head[..<$0])) }
        guard let start = header?["timestamp"]?.int64Value else { return false }  // no event was ever written
        // Already cut at its limit: its last event is that marker (an "m" event, not output that says so).
        if let event = (try? JSONValue(parsing: lastLine))?.arrayValue, event.count == 3, event[1] == "m",
            event[2].stringValue?.hasPrefix(SessionRecorder.limitMarker) == true
        {
            return true
        }
        // The header's timestamp is the file's: one past what microseconds can hold must not trap.
        let (startMicroseconds, overflow) = start.multipliedReportingOverflow(by: 1_000_000)
        // At most what a recording may hold (a header from a clock at 1970 would give more, and the marker
        // would then make the whole file unplayable).
        let elapsed = overflow ? 0 : min(max(0, now &- startMicroseconds), AsciicastPlayback.maximumMicroseconds)
        let marker: JSONValue = [.double(Double(elapsed) / 1e6), "m", .string(Self.stoppedMarker)]
        guard ConnectionJournal.write(marker.serialized() + "\n", to: fd) else {
            _ = ftruncate(fd, off_t(whole))
            throw AgentError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return false
    }
}
