import Crypto
import FoundationEssentials
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

    /// How far past its limit a recording may go: the marker an agent adds when it finds the recording of
    /// a session it lost in a crash.
    static let recordingLimitSlack: Int64 = 4096

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

    /// Complete recordings whose digest is not recorded yet (the gateway stopped before it was).
    func unsealedRecordings() -> [String] {
        self.storage.withLockedValue { storage in
            storage.recordings.values.filter { $0.complete && $0.sha256.isEmpty }.map(\.sessionID)
        }
    }

    /// Takes `bytes` at `offset` of a session's recording from its agent, `final` if they end it
    /// (`truncated`: the agent cut it at its size limit). The length moves on only once the piece is in the
    /// store, and one piece per recording is written at a time, so a failed write leaves no gap: the agent
    /// sends it again. Succeeds with the record and whether this upload completed it; fails with a
    /// ``RecordingRefusal``.
    func appendRecording(
        instanceID: String,
        sessionID: String,
        offset: Int64,
        bytes: [UInt8],
        final: Bool,
        truncated: Bool,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<(RecordingRecord, completed: Bool)> {
        let now = self.clock()
        let checked = self.storage.withLockedValue { storage -> Result<RecordingRecord, RecordingRefusal> in
            do throws(RecordingRefusal) {
                return .success(try Self.admit(&storage, sessionID, instanceID, offset, Int64(bytes.count), now: now))
            } catch {
                if error.status == 413, let record = storage.recordings[sessionID] {
                    self.store?.submit(.recording(record))
                }
                return .failure(error)
            }
        }
        let record: RecordingRecord
        switch checked {
        case .failure(let refusal): return eventLoop.makeFailedFuture(refusal)
        case .success(let admitted): record = admitted
        }
        // Complete: a resend after a lost or failed answer. Its row goes to the store again (the write that
        // failed may have been it), and one without its digest is sealed (the seal may not have run).
        if record.complete {
            self.store?.submit(.recording(record))
            return eventLoop.makeSucceededFuture((record, record.sha256.isEmpty))
        }
        let written: EventLoopFuture<Void> =
            bytes.isEmpty
            ? eventLoop.makeSucceededVoidFuture()
            : self.store?.commit(.recordingChunk(sessionID: sessionID, offset: offset, bytes: bytes)).hop(to: eventLoop)
                ?? eventLoop.makeSucceededVoidFuture()
        return written.flatMapErrorThrowing { _ in
            self.storage.withLockedValue { _ = $0.recordingWrites.remove(sessionID) }
            throw RecordingRefusal(
                status: 503,
                type: "ServiceUnavailable",
                message: "The recording cannot be stored now (see the gateway's log); keep it and retry."
            )
        }.map {
            self.storage.withLockedValue { storage -> (RecordingRecord, Bool) in
                storage.recordingWrites.remove(sessionID)
                guard var current = storage.recordings[sessionID] else { return (record, false) }
                current.length += Int64(bytes.count)
                if final {
                    current.complete = true
                    current.truncated = current.truncated || truncated
                    current.completedEpoch = now
                    self.store?.submit(.recording(current))
                }
                storage.recordings[sessionID] = current
                return (current, final)
            }
        }
    }

    /// Whether a piece may be written now (pure bookkeeping under the lock): the instance's own recorded
    /// session, no other piece of it being written, at the recording's end, within its limit. A complete
    /// recording takes any resend (its answer was lost). Past the limit the recording ends as it is.
    private static func admit(
        _ storage: inout Storage,
        _ sessionID: String,
        _ instanceID: String,
        _ offset: Int64,
        _ count: Int64,
        now: Int64
    ) throws(RecordingRefusal) -> RecordingRecord {
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
        if record.complete { return record }
        guard !storage.recordingWrites.contains(sessionID) else {
            throw RecordingRefusal(
                status: 503,
                type: "ServiceUnavailable",
                message: "Another piece of this recording is being stored; retry."
            )
        }
        guard offset == record.length else {
            throw RecordingRefusal(
                status: 409,
                type: "ConflictException",
                message: "The gateway holds \(record.length) bytes of this recording: send from there.",
                length: record.length
            )
        }
        guard record.length + count <= record.maximumBytes + Self.recordingLimitSlack else {
            record.truncated = true
            record.complete = true
            record.completedEpoch = now
            storage.recordings[sessionID] = record
            throw RecordingRefusal(
                status: 413,
                type: "RecordingTooLarge",
                message: "The recording would pass its limit of \(record.maximumBytes) bytes; it ends as stored."
            )
        }
        storage.recordingWrites.insert(sessionID)
        return record
    }

    /// Up to `maxBytes` of a recording from `offset`, from the store.
    public func recordingContent(sessionID: String, from offset: Int64 = 0, maxBytes: Int) async throws -> [UInt8] {
        guard let store = self.store else { throw StoreError("this gateway keeps no store, so no recordings") }
        return try await store.recordingContent(sessionID: sessionID, from: offset, maxBytes: maxBytes)
    }

    /// A recording is complete: it is read back from the store (a page at a time) and its SHA-256 kept with
    /// it, and the audit trail gets a `SessionRecordingStored` record on the session (its size and digest),
    /// which links the session to its recording. A recording that does not read back is audited as damaged.
    func sealRecording(sessionID: String, source: String) async {
        // One seal per recording at a time, and none once it is sealed.
        let claimed = self.storage.withLockedValue { storage -> RecordingRecord? in
            guard let record = storage.recordings[sessionID], record.complete, record.sha256.isEmpty,
                storage.recordingSeals.insert(sessionID).inserted
            else { return nil }
            return record
        }
        guard let record = claimed else { return }
        defer { self.storage.withLockedValue { _ = $0.recordingSeals.remove(sessionID) } }
        var details: [(key: String, value: JSONValue)] = [
            ("sessionId", .string(sessionID)), ("bytes", .integer(record.length)),
            ("truncated", .bool(record.truncated)),
        ]
        var failure: (type: String, message: String)?
        do {
            var hasher = SHA256()
            var offset: Int64 = 0
            while offset < record.length {
                let wanted = Int(min(Int64(4 << 20), record.length - offset))
                let page = try await self.recordingContent(sessionID: sessionID, from: offset, maxBytes: wanted)
                guard !page.isEmpty else {
                    throw StoreError("the recording ends at \(offset) of \(record.length) bytes")
                }
                hasher.update(data: page)
                offset += Int64(page.count)
            }
            let digest = Hex.encode(hasher.finalize())
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
        self.auditRecording("SessionRecordingStored", sessionID: sessionID, source: source, details, error: failure)
    }

    /// A refused upload (not a 409, which is the protocol's way to say where to go on) on the session's trail.
    func auditRecordingRefusal(_ refusal: RecordingRefusal, sessionID: String, instanceID: String, source: String) {
        self.auditRecording(
            "SessionRecordingRefused",
            sessionID: sessionID,
            source: source,
            [("sessionId", .string(sessionID)), ("instanceId", .string(instanceID))],
            error: (refusal.type, refusal.message)
        )
    }

    private func auditRecording(
        _ name: String,
        sessionID: String,
        source: String,
        _ details: [(key: String, value: JSONValue)],
        error: (type: String, message: String)?
    ) {
        guard let audit = self.audit else { return }
        let session = self.session(id: sessionID)
        let time = self.clock()
        let (entry, index) = AuditRecords.serviceEvent(
            name: name,
            time: time,
            user: session.flatMap { owner in self.storage.withLockedValue { $0.directory.users[owner.owner] } },
            sourceIP: source,
            details: .object(details),
            resources: self.resources,
            error: error,
            target: session?.target ?? "",
            sessionID: session == nil ? "" : sessionID
        )
        audit.append(entry, time: time, index: index)
    }

    /// Forgets a recording whose session never reached its agent (StartSession failed after creating it).
    func dropRecording(sessionID: String) {
        self.storage.withLockedValue { storage in
            guard storage.recordings.removeValue(forKey: sessionID) != nil else { return }
            self.store?.submit(.recordingDeleted(sessionID: sessionID))
        }
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
