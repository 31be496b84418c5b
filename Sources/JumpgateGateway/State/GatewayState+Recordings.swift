import Crypto
import Foundation
import JumpgateAccess
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore

/// Recordings of shell and command sessions: created with their session, filled by its agent's uploads
/// (`HTTP/RecordingUploads.swift`), completed with a digest that the audit trail records, read by
/// `GetSessionRecording`, deleted after the retention.
extension GatewayState {
    /// Why an upload is not taken: the HTTP status and AWS-style error the agent gets.
    public struct RecordingRefusal: Error, Sendable {
        public var status: Int
        public var type: String
        public var message: String
        /// The length the gateway holds (409: the agent sends from there).
        public var length: Int64?
    }

    /// A new session is recorded (its row is written after the session's, in order).
    func startRecording(sessionID: String) -> RecordingRecord {
        let record = RecordingRecord(
            sessionID: sessionID,
            maximumBytes: self.recordingSettings.maximumBytes,
            startedEpoch: self.clock()
        )
        self.storage.withLockedValue { storage in
            storage.recordings[sessionID] = record
            self.store?.submit(.recording(record))
        }
        return record
    }

    public func recording(sessionID: String) -> RecordingRecord? {
        self.storage.withLockedValue { $0.recordings[sessionID] }
    }

    /// Takes `bytes` at `offset` of a session's recording from its agent, `final` if they end it. Pure
    /// bookkeeping under the lock, with the chunk submitted to the store in order; the caller answers once
    /// the store has flushed. Returns the record, and whether this upload completed it.
    func appendRecording(
        instanceID: String,
        sessionID: String,
        offset: Int64,
        bytes: [UInt8],
        final: Bool
    ) throws(RecordingRefusal) -> (RecordingRecord, completed: Bool) {
        let now = self.clock()
        let result = self.storage.withLockedValue { storage -> Result<(RecordingRecord, Bool), RecordingRefusal> in
            do throws(RecordingRefusal) {
                return .success(try self.append(&storage, sessionID, instanceID, offset, bytes, final, now: now))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private func append(
        _ storage: inout Storage,
        _ sessionID: String,
        _ instanceID: String,
        _ offset: Int64,
        _ bytes: [UInt8],
        _ final: Bool,
        now: Int64
    ) throws(RecordingRefusal) -> (RecordingRecord, Bool) {
        do {
            guard let session = storage.sessions[sessionID], session.target == instanceID else {
                throw RecordingRefusal(
                    status: 404,
                    type: "DoesNotExistException",
                    message: "Session \(sessionID) is not a session of \(instanceID)."
                )
            }
            guard var record = storage.recordings[sessionID] else {
                throw RecordingRefusal(
                    status: 404,
                    type: "DoesNotExistException",
                    message: "Session \(sessionID) is not recorded."
                )
            }
            // Already complete: the agent's resend after a lost answer (it may forget the file).
            if record.complete { return (record, false) }
            guard offset == record.length else {
                throw RecordingRefusal(
                    status: 409,
                    type: "ConflictException",
                    message: "The gateway holds \(record.length) bytes of this recording: send from there.",
                    length: record.length
                )
            }
            guard record.length + Int64(bytes.count) <= record.maximumBytes else {
                // The agent cuts a recording at the limit itself; past it the gateway stores nothing more,
                // and the recording ends as it is.
                record.truncated = true
                record.complete = true
                record.completedEpoch = now
                storage.recordings[sessionID] = record
                self.store?.submit(.recording(record))
                throw RecordingRefusal(
                    status: 413,
                    type: "RecordingTooLarge",
                    message: "The recording would pass its limit of \(record.maximumBytes) bytes; it ends here."
                )
            }
            if !bytes.isEmpty {
                self.store?.submit(.recordingChunk(sessionID: sessionID, offset: offset, bytes: bytes))
                record.length += Int64(bytes.count)
            }
            if final {
                record.complete = true
                record.completedEpoch = now
                self.store?.submit(.recording(record))
            }
            storage.recordings[sessionID] = record
            return (record, final)
        }
    }

    /// A recording's bytes from the store.
    public func recordingContent(sessionID: String) async throws -> [UInt8] {
        guard let store = self.store else { throw StoreError("this gateway keeps no store, so no recordings") }
        return try await store.recordingContent(sessionID: sessionID)
    }

    /// A recording is complete: it is read back from the store and its SHA-256 kept with it, and the audit
    /// trail gets a `SessionRecordingStored` record on the session (its size and digest), which links the
    /// session to its recording. A recording that does not read back is audited as damaged.
    func sealRecording(sessionID: String, source: String) async {
        guard let record = self.recording(sessionID: sessionID), let session = self.session(id: sessionID) else {
            return
        }
        var details: [(key: String, value: JSONValue)] = [
            ("sessionId", .string(sessionID)), ("bytes", .integer(record.length)),
            ("truncated", .bool(record.truncated)),
        ]
        var failure: (type: String, message: String)?
        do {
            let content = try await self.recordingContent(sessionID: sessionID)
            let digest = SHA256.hash(data: content).map { String(format: "%02x", $0) }.joined()
            details.append(("sha256", .string(digest)))
            self.storage.withLockedValue { storage in
                guard var current = storage.recordings[sessionID] else { return }
                current.sha256 = digest
                storage.recordings[sessionID] = current
                self.store?.submit(.recording(current))
            }
        } catch {
            failure = ("RecordingDamaged", "\(error)")
        }
        guard let audit = self.audit else { return }
        let time = self.clock()
        let (entry, index) = AuditRecords.serviceEvent(
            name: "SessionRecordingStored",
            time: time,
            user: self.storage.withLockedValue { $0.directory.users[session.owner] },
            sourceIP: source,
            details: .object(details),
            resources: self.resources,
            error: failure,
            target: session.target,
            sessionID: sessionID
        )
        audit.append(entry, time: time, index: index)
    }

    /// Deletes the recordings of sessions that ended more than `retention` seconds ago (a recording that
    /// never completed counts from its session's end); returns their session ids.
    func pruneRecordings(olderThan retention: Int64) -> [String] {
        let cutoff = self.clock() - retention
        return self.storage.withLockedValue { storage in
            let expired = storage.recordings.values.filter { record in
                let ended = record.completedEpoch ?? storage.sessions[record.sessionID]?.endEpoch
                return (ended ?? .max) < cutoff
                    || (storage.sessions[record.sessionID] == nil && record.startedEpoch < cutoff)
            }.map(\.sessionID)
            for id in expired {
                storage.recordings[id] = nil
                self.store?.submit(.recordingDeleted(sessionID: id))
            }
            return expired
        }
    }
}
