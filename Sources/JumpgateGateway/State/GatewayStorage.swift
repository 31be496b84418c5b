import JumpgateAccess
import NIOCore

/// What the gateway needs from its durable store: everything it holds (users, keys, policies, tags,
/// activations, instances, sessions, the audit chain), behind one protocol so that another backend
/// (PostgreSQL, for several gateway nodes: DESIGN.md §6) can follow without touching the callers.
/// ``GatewayStore`` is the SQLite implementation; `StoreConformanceTests` is the suite every
/// implementation must pass.
///
/// Ordering: changes are applied in the order they are submitted (``submit(_:)`` and ``commit(_:)``
/// alike), and ``flush()`` completes only once every earlier change is durable.
public protocol GatewayStorage: Sendable {
    /// Everything stored, secrets unsealed.
    func load() async throws -> StoreSnapshot
    /// Queues a change; a failure is logged and reported by the next ``flush()``.
    func submit(_ change: StoreChange)
    /// Writes a change and reports whether it is durable.
    func commit(_ change: StoreChange) -> EventLoopFuture<Void>
    /// Completes once every earlier change is durable; fails if one failed since the last flush.
    func flush() -> EventLoopFuture<Void>
    /// Audit records matching a filter, oldest first (the newest `limit`).
    func auditEntries(_ filter: AuditFilter) async throws -> [AuditEntry]
    /// The whole chain and where it starts.
    func auditChain() async throws -> (anchor: AuditAnchor, entries: [AuditEntry])
    /// Where the next record links.
    func auditHead() async throws -> AuditAnchor
    /// Removes records older than `epoch`, keeping the anchor; the range removed, if any.
    func pruneAudit(before epoch: Int64) async throws -> (first: Int64, last: Int64, anchor: AuditAnchor)?
    /// Why the store cannot write now (nil: it can), for /healthz and /metrics. The implementation
    /// probes with a real write when the last outcome is old: at most once a second while writes fail,
    /// so readiness returns once the cause is gone, and every 30 s while they succeed.
    func writeProblem() -> EventLoopFuture<String?>
    /// Up to `maxBytes` of a recording from `offset` (whole chunks opened and checked, then cut).
    func recordingContent(sessionID: String, from offset: Int64, maxBytes: Int) async throws -> [UInt8]
    func close() async throws
}

extension GatewayStore: GatewayStorage {}
