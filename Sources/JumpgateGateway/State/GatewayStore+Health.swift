import NIOConcurrencyHelpers
import NIOCore
import SQLiteNIO

/// Whether the store can write now, for `/healthz` and `jumpgate_store_writable`: the outcome of the
/// latest write (a real change or a probe). `/healthz` probes with a real write when the last outcome is
/// older than an interval: a second while the store is failing, so readiness returns as soon as space is
/// freed, and 30 s while it is fine, so a gateway with no traffic still notices a full disk.
struct StoreWriteHealth: Sendable {
    /// What the last write failed with; nil while writes succeed.
    var problem: String?
    /// When the last write (change or probe) finished, or a probe started.
    var checkedAt: NIODeadline?

    static let failingInterval = TimeAmount.seconds(1)
    static let healthyInterval = TimeAmount.seconds(30)

    /// Whether a probe is due now (and notes that one starts).
    mutating func probeIsDue(now: NIODeadline) -> Bool {
        let interval = self.problem == nil ? Self.healthyInterval : Self.failingInterval
        if let checkedAt = self.checkedAt, now - checkedAt < interval { return false }
        self.checkedAt = now
        return true
    }

    mutating func record(_ problem: String?, now: NIODeadline) {
        self.problem = problem
        self.checkedAt = now
    }
}

extension GatewayStore {
    /// The `write_probe` table: one row written and deleted by a probe (a 4 KiB blob, so that the write
    /// needs a page the way a real change does).
    static let writeProbeMigration = [
        "CREATE TABLE write_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, filler BLOB NOT NULL)"
    ]

    func noteWrite(failure error: (any Error)?) {
        let now = NIODeadline.now()
        self.writeHealth.withLockedValue { $0.record(error.map { "\($0)" }, now: now) }
    }

    /// Why the store cannot write now, or nil when it can. Probes with a real write first when the last
    /// outcome is older than ``StoreWriteHealth``'s interval (1 s while failing, 30 s while fine).
    public func writeProblem() -> EventLoopFuture<String?> {
        let loop = self.connection.eventLoop
        let (problem, due) = self.writeHealth.withLockedValue { health in
            (health.problem, health.probeIsDue(now: .now()))
        }
        guard due else { return loop.makeSucceededFuture(problem) }
        return self.query(
            "INSERT OR REPLACE INTO write_probe (id, at, filler) VALUES (1, ?, zeroblob(4096))",
            [.integer(Int(NIODeadline.now().uptimeNanoseconds / 1_000_000_000))]
        )
        .flatMap { self.query("DELETE FROM write_probe") }
        .map { _ -> String? in
            self.noteWrite(failure: nil)
            return nil
        }
        .recover { error in
            self.noteWrite(failure: error)
            return "\(error)"
        }
    }
}
