import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Sends the connection journal to the gateway (`POST /v1/connection-records/<instance-id>`, signed by
/// the instance): a second after a record (gathering what comes meanwhile), when the control channel
/// connects, and every 5 s while the gateway cannot be reached. Records leave the journal only once the gateway answered that it has them.
extension AgentRunner {
    static let recordsPerRequest = 500
    /// Records gather this long before they are sent: one request (one TLS handshake, one batch in the
    /// gateway's store) carries every connection of a busy second, instead of one per connection.
    static let gatherNanoseconds: UInt64 = 1_000_000_000

    /// A record was journalled: send it (with whatever else comes) within a second.
    func scheduleReport() {
        guard self.reporting.withLockedValue({ $0.schedule() }) else { return }
        Task {
            try? await Task.sleep(nanoseconds: Self.gatherNanoseconds)
            self.reporting.withLockedValue { $0.gathered() }
            self.reportConnections()
        }
    }

    /// Starts an upload unless one is running (which then runs once more).
    func reportConnections() {
        guard self.reporting.withLockedValue({ $0.begin() }) else { return }
        Task { await self.uploadConnectionRecords() }
    }

    /// Uploads what the journal holds, one batch per request. A batch that was not full ends the upload:
    /// records that came while it was posted are sent by the next gathered report (each record schedules
    /// one), so a steady stream of connections makes one request a second. Posting them at once instead
    /// made a busy agent post back to back, a TLS handshake and an audit transaction for every two or three
    /// connections (a third of the gateway's CPU in a run of connection setups). `drain` (at exit) sends
    /// everything.
    func uploadConnectionRecords(drain: Bool = false) async {
        var failure: String?
        // Refusal counts and summaries ride with the first request (alone if there is no record), once per
        // upload: a client sending garbage all the time does not make its agent post back to back. A
        // report that failed goes again as it was, with its id.
        var refusals = self.refusals.withLockedValue { $0.nextReport() }
        while failure == nil {
            let batch = self.journal.pending(limit: Self.recordsPerRequest)
            if batch.isEmpty, refusals.isEmpty { break }
            do {
                try await self.postConnectionRecords(batch, refusals: refusals)
                self.journal.acknowledge(batch.count)
                self.refusals.withLockedValue { [refusals] in $0.delivered(refusals.id) }
                refusals = AgentRefusals.Report()
                if !drain, batch.count < Self.recordsPerRequest { break }
            } catch {
                failure = self.explain(error)
            }
        }
        let again = self.reporting.withLockedValue { $0.end() }
        if let failure {
            self.logger.debug(
                "connection records kept in the journal until the gateway takes them",
                metadata: ["problem": "\(failure)", "journal": "\(self.journal.path)"]
            )
            Task {
                try? await Task.sleep(nanoseconds: 5_000_000_000)
                self.reportConnections()
            }
        } else if again {
            self.reportConnections()
        }
    }

    /// SIGTERM: one last upload (the final refusal summaries and whatever records wait), within `timeout`;
    /// what it cannot send stays in the journal (records) or is lost with the process (refusals).
    func uploadBeforeExit(timeout: Duration = .seconds(2)) async {
        let done = NIOLockedValueBox(false)
        Task {
            // Take the upload slot once the running upload (if any) is over; never upload beside it (both
            // would send, and acknowledge, the same journal batch).
            for _ in 0..<100 {
                if self.reporting.withLockedValue({ $0.take() }) {
                    await self.uploadConnectionRecords(drain: true)
                    break
                }
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
            done.withLockedValue { $0 = true }
        }
        let deadline = ContinuousClock.now + timeout
        while !done.withLockedValue({ $0 }), ContinuousClock.now < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    func postConnectionRecords(_ lines: [String], refusals: AgentRefusals.Report = .init()) async throws {
        // The records are journal lines (JSON already); the refusal fields are serialised here.
        let extra = refusals.fields.map { ",\"\($0.0)\":" + $0.1.serialized() }.joined()
        let response = try await self.signedPost(
            path: "/v1/connection-records/\(self.state.instanceID)",
            body: Array(("{\"Records\":[" + lines.joined(separator: ",") + "]" + extra + "}").utf8)
        )
        guard response.status == 200 else {
            throw AgentError(
                "the gateway refused the connection records: HTTP \(response.status) \(String(buffer: response.body))"
            )
        }
    }
}
