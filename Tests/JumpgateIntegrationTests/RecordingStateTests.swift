import Foundation
import JumpgateWire
import NIOConcurrencyHelpers
import NIOEmbedded
import Testing

@testable import JumpgateGateway

/// The gateway's bookkeeping of recordings, without sockets: where an upload must start, what is refused
/// and why, completion, the size limit, and retention.
@Suite("Gateway state: recordings")
struct RecordingStateTests {
    @Test("uploads must start where the recording ends; resends of a complete one are taken; others are refused")
    func uploads() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish() }
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, _) = try GatewayStateTests.portSession(state, target: target)
        let (other, _) = try GatewayStateTests.portSession(state, target: target)

        // Not recorded: refused as unknown, so the agent drops it.
        #expect(
            Self.refusal {
                try state.appendRecording(instanceID: target, sessionID: other.id, offset: 0, bytes: [1], final: false)
            }?.status == 404
        )
        _ = state.startRecording(sessionID: session.id)
        // Another instance cannot write it.
        #expect(
            Self.refusal {
                try state.appendRecording(
                    instanceID: "mi-0000000000000000f",
                    sessionID: session.id,
                    offset: 0,
                    bytes: [1],
                    final: false
                )
            }?.status == 404
        )
        let (first, completedFirst) = try state.appendRecording(
            instanceID: target,
            sessionID: session.id,
            offset: 0,
            bytes: Array(repeating: 7, count: 100),
            final: false
        )
        #expect(first.length == 100 && !first.complete && !completedFirst)
        // An offset that is not the end: 409 with the length held (the agent resumes from there).
        for offset: Int64 in [0, 50, 101] {
            let refusal = Self.refusal {
                try state.appendRecording(
                    instanceID: target,
                    sessionID: session.id,
                    offset: offset,
                    bytes: [1],
                    final: false
                )
            }
            #expect(refusal?.status == 409 && refusal?.length == 100)
        }
        let (last, completed) = try state.appendRecording(
            instanceID: target,
            sessionID: session.id,
            offset: 100,
            bytes: [1, 2],
            final: true
        )
        #expect(last.length == 102 && last.complete && completed && last.completedEpoch == 1_700_000_000)
        // The same final upload again (its answer was lost): taken, nothing changes, not completed twice.
        let (again, completedAgain) = try state.appendRecording(
            instanceID: target,
            sessionID: session.id,
            offset: 100,
            bytes: [1, 2],
            final: true
        )
        #expect(again == last && !completedAgain)
    }

    @Test("past its size limit a recording ends as it is, marked truncated")
    func sizeLimit() throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish() }
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, _) = try GatewayStateTests.portSession(state, target: target)
        let limit = state.startRecording(sessionID: session.id).maximumBytes
        _ = try state.appendRecording(
            instanceID: target,
            sessionID: session.id,
            offset: 0,
            bytes: Array(repeating: 0, count: Int(limit) - 1),
            final: false
        )
        let refusal = Self.refusal {
            try state.appendRecording(
                instanceID: target,
                sessionID: session.id,
                offset: limit - 1,
                bytes: [1, 2],
                final: false
            )
        }
        #expect(refusal?.status == 413)
        let record = try #require(state.recording(sessionID: session.id))
        #expect(record.truncated && record.complete && record.length == limit - 1)
    }

    @Test("retention: recordings of sessions ended long enough ago go; open and recent ones stay")
    func retention() throws {
        let now = NIOLockedValueBox<Int64>(1_700_000_000)
        let state = GatewayState(clock: { now.withLockedValue { $0 } })
        state.restore(
            StoreSnapshot(
                sessions: [
                    Self.session("alice-old", ended: 1_700_000_000), Self.session("alice-new", ended: 1_700_080_000),
                    Self.session("alice-open", ended: nil),
                ],
                recordings: ["alice-old", "alice-new", "alice-open", "alice-gone"].map {
                    RecordingRecord(sessionID: $0, maximumBytes: 1024, startedEpoch: 1_699_990_000)
                }
            )
        )
        now.withLockedValue { $0 = 1_700_090_000 }
        #expect(Set(state.pruneRecordings(olderThan: 86_400)) == ["alice-old", "alice-gone"])
        #expect(state.recording(sessionID: "alice-old") == nil && state.recording(sessionID: "alice-open") != nil)
        #expect(state.pruneRecordings(olderThan: 86_400).isEmpty)
    }

    static func session(_ id: String, ended: Int64?) -> SessionRecord {
        SessionRecord(
            id: id,
            owner: "alice",
            target: "mi-0123456789abcdef0",
            documentName: "SSM-SessionManagerRunShell",
            parameters: [],
            reason: "",
            status: ended == nil ? .connected : .terminated,
            startEpoch: 1_699_990_000,
            endEpoch: ended,
            closeReason: "",
            clientTokenHash: nil,
            agentTokenHashes: [:]
        )
    }

    static func refusal(_ body: () throws -> Any) -> GatewayState.RecordingRefusal? {
        do {
            _ = try body()
            return nil
        } catch {
            return error as? GatewayState.RecordingRefusal
        }
    }
}
