import Foundation
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import JumpgateGateway

/// The gateway's bookkeeping of recordings, without sockets: where an upload must start, what is refused
/// and why, completion, the size limit, and retention.
@Suite("Gateway state: recordings")
struct RecordingStateTests {
    static func append(
        _ state: GatewayState,
        _ target: String,
        _ sessionID: String,
        offset: Int64,
        _ bytes: [UInt8],
        final: Bool = false,
        truncated: Bool = false
    ) async throws -> (RecordingRecord, completed: Bool) {
        try await state.appendRecording(
            instanceID: target,
            sessionID: sessionID,
            offset: offset,
            bytes: bytes,
            final: final,
            truncated: truncated,
            on: MultiThreadedEventLoopGroup.singleton.next()
        ).get()
    }

    static func refusal(
        _ state: GatewayState,
        _ target: String,
        _ sessionID: String,
        offset: Int64,
        _ bytes: [UInt8]
    ) async -> GatewayState.RecordingRefusal? {
        do {
            _ = try await Self.append(state, target, sessionID, offset: offset, bytes)
            return nil
        } catch {
            return error as? GatewayState.RecordingRefusal
        }
    }

    @Test("uploads must start where the recording ends; resends of a complete one are taken; others are refused")
    func uploads() async throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish() }
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, _) = try GatewayStateTests.portSession(state, target: target)
        let (other, _) = try GatewayStateTests.portSession(state, target: target)

        // Not recorded: refused as unknown, so the agent drops it.
        #expect(await Self.refusal(state, target, other.id, offset: 0, [1])?.status == 404)
        _ = state.startRecording(sessionID: session.id)
        // Another instance cannot write it.
        #expect(await Self.refusal(state, "mi-0000000000000000f", session.id, offset: 0, [1])?.status == 404)
        let (first, completedFirst) = try await Self.append(
            state,
            target,
            session.id,
            offset: 0,
            Array(repeating: 7, count: 100)
        )
        #expect(first.length == 100 && !first.complete && !completedFirst)
        // An offset that is not the end: 409 with the length held (the agent resumes from there).
        for offset: Int64 in [0, 50, 101] {
            let refusal = await Self.refusal(state, target, session.id, offset: offset, [1])
            #expect(refusal?.status == 409 && refusal?.length == 100)
        }
        let (last, completed) = try await Self.append(
            state,
            target,
            session.id,
            offset: 100,
            [1, 2],
            final: true,
            truncated: true
        )
        #expect(
            last.length == 102 && last.complete && completed && last.truncated && last.completedEpoch == 1_700_000_000
        )
        // The same final upload again (its answer was lost): taken, nothing changes; while the recording has
        // no digest the answer asks for the seal again (it may never have run).
        let (again, completedAgain) = try await Self.append(
            state,
            target,
            session.id,
            offset: 100,
            [1, 2],
            final: true
        )
        #expect(again == last && completedAgain)
        #expect(state.unsealedRecordings() == [session.id])
    }

    @Test("past its size limit (and the slack for a crash marker) a recording ends as it is, marked truncated")
    func sizeLimit() async throws {
        let control = EmbeddedChannel()
        defer { _ = try? control.finish() }
        let (state, target) = try GatewayStateTests.stateWithConnectedAgent(control: control)
        let (session, _) = try GatewayStateTests.portSession(state, target: target)
        let limit = state.startRecording(sessionID: session.id).maximumBytes
        _ = try await Self.append(state, target, session.id, offset: 0, Array(repeating: 0, count: Int(limit)))
        // The marker an agent adds after a crash fits in the slack.
        _ = try await Self.append(state, target, session.id, offset: limit, Array(repeating: 0, count: 150))
        let refusal = await Self.refusal(
            state,
            target,
            session.id,
            offset: limit + 150,
            Array(repeating: 0, count: 4096)
        )
        #expect(refusal?.status == 413)
        let record = try #require(state.recording(sessionID: session.id))
        #expect(record.truncated && record.complete && record.length == limit + 150)
        // Complete: the agent's resend is answered as such, and nothing more is stored.
        let (after, _) = try await Self.append(state, target, session.id, offset: limit + 150, [1])
        #expect(after.length == limit + 150)
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

}
