import FoundationEssentials
import Glibc
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What the uploader knows: how much of each recording the gateway holds, and whether an upload runs.
struct RecordingUploads: Sendable {
    /// The length the gateway said it holds, by session (unknown until the first answer).
    var stored: [String: Int] = [:]
    var slot = UploadSlot()
}

/// Sends recordings to the gateway: `POST /v1/recordings/<instance-id>/<session-id>?final=B&offset=N
/// [&truncated=true]` (signed by the instance; docs/PROTOCOL.md §9), from the offset the gateway holds,
/// up to ``recordingChunkBytes`` at a time: an open recording's whole lines only, a finished one to its
/// end. A second after new lines (gathering what comes meanwhile), when the control channel connects, and
/// every 5 s while the gateway cannot be reached. A file leaves the disk only once the gateway answered
/// that it has all of it (or that it will never take it: the session is unknown there, or not recorded).
extension AgentRunner {
    static let recordingChunkBytes = 512 * 1024
    /// Chunks sent per recording per upload at most (the rest goes with the next one).
    static let recordingChunksPerUpload = 64

    var recordingsDirectory: String { self.state.path + "/" + SessionRecorder.directoryName }

    /// The recorder for a session, if the gateway asked for one; a recorder that cannot be opened is
    /// logged and the session goes on unrecorded.
    func makeRecorder(
        sessionID: String,
        request: RecordingRequest?,
        environment: [(key: String, value: String)],
        logger: Logger
    ) -> SessionRecorder? {
        guard let request else { return nil }
        mkdir(self.recordingsDirectory, 0o700)
        do {
            let recorder = try SessionRecorder(
                directory: self.recordingsDirectory,
                sessionID: sessionID,
                request: request,
                environment: environment,
                wrote: { [weak self] in self?.scheduleRecordingUpload() },
                failed: { problem in logger.error("recording stopped", metadata: ["problem": "\(problem)"]) }
            )
            logger.info("session recorded", metadata: ["recording": "\(recorder.path)"])
            return recorder
        } catch {
            logger.error("session not recorded", metadata: ["problem": "\(error)"])
            // The gateway told the user the session is recorded: it hears that nothing will come (once; an
            // answer that does not come leaves the recording open there, empty).
            if SessionRecorder.isSafeName(sessionID) {
                Task {
                    _ = try? await self.signedPost(
                        path: "/v1/recordings/\(self.state.instanceID)/\(sessionID)",
                        query: "final=true&offset=0&truncated=true",
                        body: []
                    )
                }
            }
            return nil
        }
    }

    /// New lines were written, or a recording finished: sent (with whatever else comes) within a second.
    func scheduleRecordingUpload() {
        guard self.recordingUploads.withLockedValue({ $0.slot.schedule() }) else { return }
        Task {
            try? await Task.sleep(nanoseconds: Self.gatherNanoseconds)
            self.recordingUploads.withLockedValue { $0.slot.gathered() }
            self.uploadRecordings()
        }
    }

    /// Starts an upload unless one is running (which then runs once more).
    func uploadRecordings() {
        guard self.recordingUploads.withLockedValue({ $0.slot.begin() }) else { return }
        Task { await self.uploadRecordingFiles() }
    }

    /// One pass over the recordings directory; on a failure, another in 5 s.
    func uploadRecordingFiles() async {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.recordingsDirectory)) ?? []
        var failure: String?
        for name in names.sorted() where failure == nil {
            guard let (sessionID, state) = SessionRecorder.FileState.parse(name) else { continue }
            do {
                try await self.uploadRecording(
                    sessionID: sessionID,
                    state: state,
                    path: self.recordingsDirectory + "/" + name
                )
            } catch {
                failure = self.explain(error)
            }
        }
        let again = self.recordingUploads.withLockedValue { $0.slot.end() }
        if let failure {
            self.logger.debug(
                "recordings kept until the gateway takes them",
                metadata: ["problem": "\(failure)", "directory": "\(self.recordingsDirectory)"]
            )
            Task {
                try? await Task.sleep(nanoseconds: 5_000_000_000)
                self.uploadRecordings()
            }
        } else if again {
            self.uploadRecordings()
        }
    }

    /// SIGTERM: the recordings the drained sessions just closed go now, within `timeout`; what cannot is
    /// sent when the agent starts again.
    func uploadRecordingsBeforeExit(timeout: Duration = .seconds(2)) async {
        self.uploadRecordings()
        let deadline = ContinuousClock.now + timeout
        while self.recordingUploads.withLockedValue({ $0.slot.inFlight }), ContinuousClock.now < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Sends what the gateway lacks of one recording; deletes the file once the gateway has all of it.
    func uploadRecording(sessionID: String, state: SessionRecorder.FileState, path: String) async throws {
        let before = self.recordingUploads.withLockedValue { $0.stored[sessionID] }
        for _ in 0..<Self.recordingChunksPerUpload {
            let stored = self.recordingUploads.withLockedValue { $0.stored[sessionID] }
            guard let size = Self.fileSize(path) else { return }
            // The gateway's length, even past this file's end (it then has all of it: only the end is sent).
            let offset = max(0, stored ?? 0)
            var chunk =
                offset < size
                ? try Self.read(path, offset: offset, count: min(Self.recordingChunkBytes, size - offset)) : []
            let finished = state != .open
            // Final: a finished file's last piece. Any other piece ends at a whole line (the recorder may be
            // writing the next one); an open file with no whole line yet sends nothing.
            let final = finished && offset + chunk.count >= size
            if !final, let lastLine = chunk.lastIndex(of: UInt8(ascii: "\n")) {
                chunk.removeSubrange((lastLine + 1)...)
            } else if !final, state == .open {
                chunk = []
            }
            // Nothing new while the session goes on; a finished file whose length the gateway does not know
            // yet is sent from its start (the answer says what the gateway holds).
            if chunk.isEmpty, !final { return }
            var query = "final=\(final)&offset=\(offset)"
            if final, state == .cut { query += "&truncated=true" }
            let response = try await self.signedPost(
                path: "/v1/recordings/\(self.state.instanceID)/\(sessionID)",
                query: query,
                body: chunk
            )
            let answer = try? JSONValue(parsing: response.body.readableBytesView)
            let length = answer?["Length"]?.int64Value.map(Int.init)
            switch response.status {
            case 200, 409:
                guard let length else {
                    throw AgentError("the gateway's answer gives no Length: HTTP \(response.status)")
                }
                // 409: the gateway holds another length (this agent restarted, or an answer was lost).
                self.recordingUploads.withLockedValue { $0.stored[sessionID] = length }
                if answer?["Complete"]?.boolValue == true {
                    return self.forgetRecording(sessionID, path: path, reason: nil)
                }
            case _ where Self.gatewayRefusesForGood(status: response.status, type: answer?["__type"]?.stringValue):
                return self.forgetRecording(sessionID, path: path, reason: String(buffer: response.body))
            default:
                throw AgentError(
                    "the gateway refused the recording of \(sessionID): HTTP \(response.status) \(String(buffer: response.body))"
                )
            }
        }
        // More to send: another pass, if this one moved (a gateway that keeps answering the same length
        // must not be asked in a loop).
        if self.recordingUploads.withLockedValue({ $0.stored[sessionID] }) != before { self.uploadRecordings() }
    }

    /// Whether an answer means the gateway will never take the recording (no such session there, not
    /// recorded, past its size limit): only the gateway's own refusals, by their type. A 404 or 413 from
    /// anything else (a proxy, an older gateway without the endpoint) is a failure to retry, never a reason to
    /// delete the file.
    static func gatewayRefusesForGood(status: Int, type: String?) -> Bool {
        (status == 404 && type == "DoesNotExistException") || (status == 413 && type == "RecordingTooLarge")
    }

    func forgetRecording(_ sessionID: String, path: String, reason: String?) {
        unlink(path)
        self.recordingUploads.withLockedValue { _ = $0.stored.removeValue(forKey: sessionID) }
        if let reason {
            self.logger.warning(
                "recording dropped: the gateway does not take it",
                metadata: ["jumpgate.session_id": "\(sessionID)", "answer": "\(reason.prefix(300))"]
            )
        } else {
            self.logger.info("recording delivered", metadata: ["jumpgate.session_id": "\(sessionID)"])
        }
    }

    static func fileSize(_ path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    static func read(_ path: String, offset: Int, count: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try Self.read(fd, path: path, offset: offset, count: count)
    }

    static func read(_ fd: Int32, path: String, offset: Int, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes[done...].withUnsafeMutableBytes {
                pread(fd, $0.baseAddress, $0.count, off_t(offset + done))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw AgentError("cannot read \(path): \(String(cString: strerror(errno)))") }
            if got == 0 { break }  // the file is shorter than it was
            done += got
        }
        return Array(bytes.prefix(done))
    }
}
