import Foundation
import JumpgateAccess
import JumpgateWire
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateGateway

/// A store backend under test: opened (and reopened, to prove durability) at one place.
struct StoreBackend: Sendable, CustomTestStringConvertible {
    var name: String
    var open: @Sendable (_ place: String) async throws -> any GatewayStorage

    var testDescription: String { self.name }

    /// Every implementation of ``GatewayStorage`` is listed here (a PostgreSQL one adds its own).
    static let all: [StoreBackend] = [
        StoreBackend(name: "SQLite") { place in
            try await GatewayStore.open(
                directory: place,
                eventLoop: MultiThreadedEventLoopGroup.singleton.any(),
                logger: Logger(label: "test.conformance")
            )
        }
    ]
}

/// What every ``GatewayStorage`` must do, run against each backend: every change kind survives a reopen
/// as it was written, later changes win, deletions stick, and the audit chain keeps its order, filters
/// and anchor.
@Suite("Store conformance", .serialized)
struct StoreConformanceTests {
    static func withStore(
        _ backend: StoreBackend,
        _ body: (_ reopen: () async throws -> any GatewayStorage) async throws -> Void
    ) async throws {
        let place = NSTemporaryDirectory() + "jumpgate-conformance-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: place, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: place) }
        try await body { try await backend.open(place) }
    }

    @Test(
        "users, groups, keys and policies survive a reopen; later changes win; deletions stick",
        arguments: StoreBackend.all
    )
    func directory(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { reopen in
            let store = try await reopen()
            let policy = try StoredPolicy(
                name: "p",
                text:
                    #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}}"#,
                createdEpoch: 1,
                updatedEpoch: 2
            )
            store.submit(.policy(policy))
            store.submit(
                .user(User(name: "dev", id: "AIDA1", isAdministrator: false, createdEpoch: 5, policies: ["p"]))
            )
            store.submit(.user(User(name: "ops", id: "AIDA2", isAdministrator: true, createdEpoch: 6)))
            store.submit(.user(User(name: "gone", id: "AIDA3", isAdministrator: false, createdEpoch: 7)))
            store.submit(.userDeleted(name: "gone"))
            store.submit(.group(Group(name: "team", createdEpoch: 8, members: ["dev", "ops"], policies: ["p"])))
            store.submit(.group(Group(name: "old", createdEpoch: 9)))
            store.submit(.groupDeleted(name: "old"))
            let key = AccessKey(
                id: "AKJG1",
                secret: "secret-1",
                user: "dev",
                isActive: true,
                createdEpoch: 10,
                lastUsedEpoch: nil
            )
            store.submit(.accessKey(key))
            var used = key
            used.isActive = false
            used.lastUsedEpoch = 11
            store.submit(.accessKey(used))  // the later change wins
            store.submit(
                .accessKey(
                    AccessKey(
                        id: "AKJG2",
                        secret: "s",
                        user: "ops",
                        isActive: true,
                        createdEpoch: 1,
                        lastUsedEpoch: nil
                    )
                )
            )
            store.submit(.accessKeyDeleted(id: "AKJG2"))
            store.submit(.policy(try StoredPolicy(name: "q", text: policy.text, createdEpoch: 1, updatedEpoch: 1)))
            store.submit(.policyDeleted(name: "q"))
            try await store.flush().get()
            try await store.close()

            let snapshot = try await reopen().load()
            #expect(Set(snapshot.users.map(\.name)) == ["dev", "ops"])
            #expect(
                snapshot.users.first { $0.name == "dev" }
                    == User(name: "dev", id: "AIDA1", isAdministrator: false, createdEpoch: 5, policies: ["p"])
            )
            #expect(snapshot.users.first { $0.name == "ops" }?.isAdministrator == true)
            #expect(
                snapshot.groups == [Group(name: "team", createdEpoch: 8, members: ["dev", "ops"], policies: ["p"])]
            )
            #expect(snapshot.accessKeys == [used])
            #expect(snapshot.policies == [policy])
        }
    }

    @Test("activations, instances with their tags, and sessions survive a reopen", arguments: StoreBackend.all)
    func resources(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { reopen in
            let store = try await reopen()
            var instance = GatewayStoreTests.instance("mi-00000000000000001")
            instance.tags = ["Env": "lab", "Name": "jump"]
            store.submit(.instance(instance))
            let activation = Activation(
                id: "act-1",
                codeHash: "h",
                iamRole: "r",
                description: "d",
                defaultInstanceName: "n",
                registrationLimit: 3,
                registrationsCount: 1,
                expirationEpoch: 99,
                createdEpoch: 1,
                tags: ["Team": "db"]
            )
            try await store.commit(.activation(activation)).get()
            store.submit(
                .session(
                    SessionRecord(
                        id: "dev-0123456789abcdef0",
                        owner: "dev",
                        target: instance.id,
                        documentName: "AWS-StartPortForwardingSessionToRemoteHost",
                        parameters: [("host", "db.internal"), ("portNumber", "5432")],
                        reason: "r",
                        status: .terminated,
                        startEpoch: 5,
                        endEpoch: 9,
                        closeReason: "done",
                        bytesToAgent: 10,
                        bytesToClient: 20,
                        clientTokenHash: nil,
                        agentTokenHashes: [:]
                    )
                )
            )
            try await store.flush().get()
            try await store.close()
            let snapshot = try await reopen().load()
            #expect(snapshot.instances.first?.tags == ["Env": "lab", "Name": "jump"])
            #expect(snapshot.instances.first?.secret == GatewayStoreTests.secret)
            #expect(snapshot.activations.first?.tags == ["Team": "db"])
            #expect(snapshot.activations.first?.registrationsCount == 1)
            let session = try #require(snapshot.sessions.first)
            #expect(session.owner == "dev" && session.status == .terminated && session.endEpoch == 9)
            #expect(session.parameters.map { "\($0.key)=\($0.value)" } == ["host=db.internal", "portNumber=5432"])
            #expect(session.bytesToAgent == 10 && session.bytesToClient == 20 && session.closeReason == "done")
        }
    }

    static func entries(_ count: Int, after anchor: AuditAnchor = .genesis, time: Int64 = 1000) -> [AuditEntry] {
        var head = anchor
        return (0..<count).map { index in
            let sequence = head.sequence + 1
            let (event, user) = (index % 2 == 0 ? "StartSession" : "SessionEnded", index % 3 == 0 ? "dev" : "ops")
            let entry = AuditChain.link(
                after: head,
                eventID: "e\(sequence)",
                eventTime: time + Int64(index),
                record: #"{"eventID":"e\#(sequence)","eventName":"\#(event)","userIdentity":{"userName":"\#(user)"}}"#,
                index: AuditIndex(eventName: event, userName: user, target: "mi-1", sessionID: "dev-\(index % 4)")
            )
            head = AuditAnchor(sequence: entry.sequence, hash: entry.hash)
            return entry
        }
    }

    @Test(
        "the audit chain: batches in order, filters, the newest first when limited, pruning keeps the anchor",
        arguments: StoreBackend.all
    )
    func audit(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { reopen in
            let store = try await reopen()
            #expect(try await store.auditHead() == .genesis)
            let entries = Self.entries(30)
            try await store.commit(.audit(Array(entries.prefix(10)))).get()
            try await store.commit(.audit(Array(entries.dropFirst(10)))).get()
            try await store.close()

            let reopened = try await reopen()
            let (anchor, chain) = try await reopened.auditChain()
            #expect(anchor == .genesis && chain == entries)
            #expect(AuditChain.verify(chain, anchor: anchor) == nil)
            #expect(try await reopened.auditHead() == AuditAnchor(sequence: 30, hash: entries[29].hash))
            var filter = AuditFilter()
            filter.userName = "dev"
            filter.eventName = "StartSession"
            #expect(
                try await reopened.auditEntries(filter)
                    == entries.filter { $0.index.userName == "dev" && $0.index.eventName == "StartSession" }
            )
            filter = AuditFilter()
            filter.sessionID = "dev-1"
            filter.since = 1005
            filter.until = 1020
            #expect(
                try await reopened.auditEntries(filter)
                    == entries.filter { $0.index.sessionID == "dev-1" && (1005...1020).contains($0.eventTime) }
            )
            filter = AuditFilter()
            filter.limit = 5
            #expect(try await reopened.auditEntries(filter) == Array(entries.suffix(5)))

            // A sequence number is never written twice.
            await #expect(throws: (any Error).self) { try await reopened.commit(.audit([entries[0]])).get() }

            let pruned = try #require(try await reopened.pruneAudit(before: 1010))
            #expect(pruned.first == 1 && pruned.last == 10)
            let (newAnchor, rest) = try await reopened.auditChain()
            #expect(newAnchor == AuditAnchor(sequence: 10, hash: entries[9].hash))
            #expect(rest == Array(entries.dropFirst(10)))
            #expect(try await reopened.pruneAudit(before: 1010) == nil)
            // Everything pruned: the head is the anchor.
            _ = try await reopened.pruneAudit(before: 5000)
            #expect(try await reopened.auditHead() == AuditAnchor(sequence: 30, hash: entries[29].hash))
            try await reopened.close()
        }
    }

    @Test(
        "recordings: chunks in order survive a reopen sealed; the row's updates keep the chunks; deletion takes all",
        arguments: StoreBackend.all
    )
    func recordings(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { reopen in
            let store = try await reopen()
            var record = RecordingRecord(sessionID: "dev-1", maximumBytes: 1 << 20, startedEpoch: 100)
            store.submit(.recording(record))
            let text = Array("{\"version\": 2}\n[0.1, \"o\", \"secret-output\"]\n".utf8)
            store.submit(.recordingChunk(sessionID: "dev-1", offset: 0, bytes: Array(text.prefix(10))))
            store.submit(.recordingChunk(sessionID: "dev-1", offset: 10, bytes: Array(text.dropFirst(10))))
            // A piece written again at its offset replaces it: the stored bytes are always the last piece.
            store.submit(.recordingChunk(sessionID: "dev-1", offset: 10, bytes: Array(repeating: 0x21, count: 5)))
            store.submit(.recordingChunk(sessionID: "dev-1", offset: 10, bytes: Array(text.dropFirst(10))))
            record.complete = true
            record.completedEpoch = 200
            record.sha256 = "ab"
            store.submit(.recording(record))
            store.submit(.recording(RecordingRecord(sessionID: "dev-2", maximumBytes: 2048, startedEpoch: 150)))
            // A piece after a gap (a write that failed before it): the length stops at the gap.
            store.submit(.recordingChunk(sessionID: "dev-2", offset: 0, bytes: [1, 2, 3]))
            store.submit(.recordingChunk(sessionID: "dev-2", offset: 10, bytes: [4]))
            try await store.flush().get()
            try await store.close()

            let reopened = try await reopen()
            let snapshot = try await reopened.load()
            var expected = record
            expected.length = Int64(text.count)
            #expect(snapshot.recordings.first { $0.sessionID == "dev-1" } == expected)
            #expect(snapshot.recordings.first { $0.sessionID == "dev-2" }?.length == 3)
            #expect(try await reopened.recordingContent(sessionID: "dev-1", from: 0, maxBytes: 1 << 20) == text)
            // Any range, across pieces and inside one.
            let middle = try await reopened.recordingContent(sessionID: "dev-1", from: 5, maxBytes: 10)
            #expect(middle == Array(text[5..<15]))
            let tail = try await reopened.recordingContent(sessionID: "dev-1", from: 12, maxBytes: 1 << 20)
            #expect(tail == Array(text.dropFirst(12)))
            #expect(try await reopened.recordingContent(sessionID: "none", from: 0, maxBytes: 100).isEmpty)
            // A range that reaches the gap is refused as damaged, never returned with a hole.
            await #expect(throws: (any Error).self) {
                try await reopened.recordingContent(sessionID: "dev-2", from: 0, maxBytes: 100)
            }
            reopened.submit(.recordingDeleted(sessionID: "dev-1"))
            try await reopened.flush().get()
            #expect(try await reopened.recordingContent(sessionID: "dev-1", from: 0, maxBytes: 100).isEmpty)
            #expect(try await reopened.load().recordings.map(\.sessionID) == ["dev-2"])
            try await reopened.close()
        }
    }
}

extension StoreConformanceTests {
    @Test(
        "session documents: versions, the default version and deletions survive a reopen",
        arguments: StoreBackend.all
    )
    func documents(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { reopen in
            let store = try await reopen()
            let one = StoredDocumentVersion(name: "tunnel", version: 1, content: "{\"a\": 1}", createdEpoch: 5)
            let two = StoredDocumentVersion(name: "tunnel", version: 2, content: "{\"a\": 2}", createdEpoch: 6)
            let gone = StoredDocumentVersion(name: "gone", version: 1, content: "{}", createdEpoch: 7)
            store.submit(.documentVersion(one, isDefault: true))
            store.submit(.documentVersion(two, isDefault: false))
            store.submit(.documentDefault(name: "tunnel", version: 2))
            store.submit(.documentVersion(gone, isDefault: true))
            store.submit(.documentDeleted(name: "gone"))
            try await store.flush().get()
            try await store.close()

            let snapshot = try await reopen().load()
            #expect(Set(snapshot.documentVersions) == [one, two])
            #expect(snapshot.documentDefaults == ["tunnel": 2])
        }
    }
}
