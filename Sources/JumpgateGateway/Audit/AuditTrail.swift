import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The append-only audit trail: each record linked into the hash chain, written to the `--audit-log` file
/// at once and to the store in batches (group commit: while one batch is being written, the next one
/// gathers, so recording costs one disk sync per batch, never one per record).
///
/// State is under one lock: records come from every event loop (API calls, session ends, the sweeper).
public final class AuditTrail: Sendable {
    struct State {
        var head: AuditAnchor
        var pending: [AuditEntry] = []
        var writing = false
        /// The last sequence number the store has.
        var written: Int64
        /// Who waits for which record to be stored (not for the queue to empty, which steady traffic
        /// could postpone for ever).
        var waiters: [(sequence: Int64, promise: EventLoopPromise<Void>)] = []
        var failedBatches = 0
    }

    let state: NIOLockedValueBox<State>
    let store: (any GatewayStorage)?
    let logFile: AuditLogFile?
    let logger: Logger
    /// At most this many records per INSERT (SQLite's bound-parameter limit is 32,766; ten per record).
    static let batchLimit = 500

    public init(head: AuditAnchor, store: (any GatewayStorage)?, logFile: AuditLogFile?, logger: Logger) {
        self.state = NIOLockedValueBox(State(head: head, written: head.sequence))
        self.store = store
        self.logFile = logFile
        self.logger = logger
    }

    /// Links a record into the chain and queues it. `record` is a CloudTrail record; its `eventID` and
    /// `eventTime` are already set.
    public func append(_ record: JSONValue, time: Int64, index: AuditIndex) {
        let text = record.serialized()
        let eventID = record["eventID"]?.stringValue ?? ""
        let start: [AuditEntry]? = self.state.withLockedValue { state in
            let entry = AuditChain.link(
                after: state.head,
                eventID: eventID,
                eventTime: time,
                record: text,
                index: index
            )
            state.head = AuditAnchor(sequence: entry.sequence, hash: entry.hash)
            state.pending.append(entry)
            // The file gets lines in chain order: written under the lock (one append(2) each).
            if let file = self.logFile, !file.append(record: record, entry: entry) {
                self.logger.error(
                    "an audit record could not be written to the audit log file; the store still gets it",
                    metadata: ["sequence": "\(entry.sequence)", "path": "\(file.path)"]
                )
            }
            return self.takeBatch(&state)
        }
        if let start { self.write(start) }
    }

    /// The next batch to write, if no write is in flight.
    private func takeBatch(_ state: inout State) -> [AuditEntry]? {
        guard !state.writing, !state.pending.isEmpty else { return nil }
        state.writing = true
        let batch = Array(state.pending.prefix(Self.batchLimit))
        state.pending.removeFirst(batch.count)
        return batch
    }

    private func write(_ batch: [AuditEntry]) {
        guard let store = self.store else {
            self.finished(batch, failed: false)
            return
        }
        store.commit(.audit(batch)).whenComplete { result in
            if case .failure(let error) = result {
                self.logger.error(
                    "audit records could not be stored; kept in memory and retried",
                    metadata: ["error": "\(error)", "records": "\(batch.count)"]
                )
            }
            self.finished(batch, failed: { if case .failure = result { return true } else { return false } }())
        }
    }

    private func finished(_ batch: [AuditEntry], failed: Bool) {
        let (next, done): ([AuditEntry]?, [EventLoopPromise<Void>]) = self.state.withLockedValue { state in
            state.writing = false
            if failed {
                // Back in front, in order; retried by the next append or `retry()` (the sweeper).
                state.pending.insert(contentsOf: batch, at: 0)
                state.failedBatches += 1
                defer { state.waiters = [] }
                return (nil, state.waiters.map(\.promise))
            }
            state.written = max(state.written, batch.last?.sequence ?? state.written)
            let written = state.written
            let done = state.waiters.filter { $0.sequence <= written }.map(\.promise)
            state.waiters.removeAll { $0.sequence <= written }
            return (self.takeBatch(&state), done)
        }
        for promise in done {
            if failed {
                promise.fail(StoreError("the audit trail could not be written to the store; see the gateway log"))
            } else {
                promise.succeed()
            }
        }
        if let next { self.write(next) }
    }

    /// Writes what a failed batch left (called by the gateway's sweeper every second).
    public func retry() {
        if let batch = self.state.withLockedValue({ self.takeBatch(&$0) }) { self.write(batch) }
    }

    /// Completes once every record appended before the call is in the store (at once when it is).
    public func drained(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        self.state.withLockedValue { state in
            guard state.written < state.head.sequence else { return eventLoop.makeSucceededVoidFuture() }
            let promise = eventLoop.makePromise(of: Void.self)
            state.waiters.append((state.head.sequence, promise))
            return promise.futureResult
        }
    }

    public var head: AuditAnchor { self.state.withLockedValue { $0.head } }
}
