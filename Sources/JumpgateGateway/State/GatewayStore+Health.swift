import NIOConcurrencyHelpers
import NIOCore
import SQLiteNIO

/// Whether the store can write now, for `/healthz` and `jumpgate_store_writable`: the outcome of the
/// latest write, and, while that was a failure, a probe write (at most once a second) so that readiness
/// returns as soon as space is freed, without waiting for the next real change.
struct StoreWriteHealth: Sendable {
    /// What the last write failed with; nil while writes succeed.
    var problem: String?
    var probedAt: NIODeadline?

    /// Whether a probe is due now (and notes that one starts).
    mutating func probeIsDue(now: NIODeadline, interval: TimeAmount = .seconds(1)) -> Bool {
        guard self.problem != nil else { return false }
        if let probedAt = self.probedAt, now - probedAt < interval { return false }
        self.probedAt = now
        return true
    }
}

extension GatewayStore {
    /// The `write_probe` table: one row written and deleted by a probe (a 4 KiB blob, so that the write
    /// needs a page the way a real change does).
    static let writeProbeMigration = [
        "CREATE TABLE write_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, filler BLOB NOT NULL)"
    ]

    func noteWrite(failure error: (any Error)?) {
        self.writeHealth.withLockedValue { $0.problem = error.map { "\($0)" } }
    }

    /// Why the store cannot write now, or nil when it can. While the last write failed, probes with a
    /// real write (at most once a second) before answering.
    public func writeProblem() -> EventLoopFuture<String?> {
        let loop = self.connection.eventLoop
        let (problem, due) = self.writeHealth.withLockedValue { health in
            (health.problem, health.probeIsDue(now: .now()))
        }
        guard due else { return loop.makeSucceededFuture(problem) }
        let connection = self.connection
        return connection.query(
            "INSERT OR REPLACE INTO write_probe (id, at, filler) VALUES (1, ?, zeroblob(4096))",
            [.integer(Int(NIODeadline.now().uptimeNanoseconds / 1_000_000_000))]
        ) { _ in }
        .flatMap { connection.query("DELETE FROM write_probe", []) { _ in } }
        .map { _ -> String? in
            self.noteWrite(failure: nil)
            return nil
        }
        .recover { error in
            self.noteWrite(failure: error)
            return "\(error)"
        }
    }

    /// The last known state, without probing (for /metrics).
    public var isWritable: Bool { self.writeHealth.withLockedValue { $0.problem == nil } }
}
