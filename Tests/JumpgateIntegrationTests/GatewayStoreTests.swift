import Foundation
import JumpgateAccess
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateGateway

/// The gateway's SQLite store on its own: durability across reopen, sealed secrets, the key file, migrations.
@Suite("Gateway store (SQLite)")
struct GatewayStoreTests {
    static func temporaryDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "jumpgate-store-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    static func open(_ directory: String) async throws -> GatewayStore {
        try await GatewayStore.open(
            directory: directory,
            eventLoop: MultiThreadedEventLoopGroup.singleton.any(),
            logger: Logger(label: "test.store")
        )
    }

    static let secret = "S3cretThatMustNeverBeStoredInClear0123456"

    static func instance(_ id: String) -> ManagedInstance {
        ManagedInstance(
            id: id,
            secret: Self.secret,
            name: "jump",
            activationID: "act",
            platformType: "Linux",
            platformName: "Debian",
            platformVersion: "12",
            agentVersion: "3.3.1802.0",
            ipAddress: "198.18.1.10",
            hostname: "jump",
            registeredEpoch: 1_700_000_000,
            lastPingEpoch: 1_700_000_100,
            online: true
        )
    }

    @Test("changes survive a reopen; secrets are sealed, files are private")
    func survivesReopen() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await Self.open(directory)
        let state = GatewayState(clock: { 1_700_000_200 }, store: store)
        _ = try state.createUser(name: "alice", administrator: false)
        state.ensureBootstrapAdministrator(accessKeyID: "AKJGTEST", secret: Self.secret + "-user")
        let (activationID, code) = try await state.createActivation(
            iamRole: "SSMServiceRole",
            description: "d",
            defaultInstanceName: "n",
            registrationLimit: 2,
            expirationEpoch: nil,
            on: MultiThreadedEventLoopGroup.singleton.next()
        ).get()
        var registration = GatewayStateTests.registration(activationID, code)
        registration.name = "jump"
        let instance = try state.register(registration, source: "test")
        try await state.flush(on: MultiThreadedEventLoopGroup.singleton.any()).get()
        try await store.close()

        for file in ["jumpgate.sqlite", "store.key"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + file)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(file)")
        }
        // Neither the instance's nor the user's secret is anywhere in the database files in clear.
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasPrefix("jumpgate") {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            #expect(bytes.range(of: Data(instance.secret.utf8)) == nil, "\(file)")
            #expect(bytes.range(of: Data((Self.secret + "-user").utf8)) == nil, "\(file)")
        }

        let reopened = try await Self.open(directory)
        let snapshot = try await reopened.load()
        try await reopened.close()
        #expect(snapshot.instances.map(\.id) == [instance.id])
        #expect(snapshot.instances.first?.secret == instance.secret)
        #expect(snapshot.instances.first?.online == false)  // runtime state is not stored
        #expect(snapshot.activations.first?.registrationsCount == 1)
        #expect(snapshot.accessKeys.first { $0.id == "AKJGTEST" }?.secret == Self.secret + "-user")
    }

    @Test("a change after the store closed is refused with a clear error, and the file keeps what was stored")
    func changeAfterClose() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await Self.open(directory)
        store.submit(.instance(Self.instance("mi-0000000000000000a")))
        try await store.flush().get()
        try await store.close()
        // A late change (a connection that closed as the gateway stopped) reaches no closed SQLite handle.
        store.submit(.instance(Self.instance("mi-0000000000000000b")))
        await #expect {
            try await store.commit(.instance(Self.instance("mi-0000000000000000c"))).get()
        } throws: { error in
            "\(error)" == "the store is closed: the gateway is stopping"
        }
        // Reads, the flush and the health probe say so too, not SQLite's "misuse" from a closed handle.
        await #expect {
            try await store.flush().get()
        } throws: { error in
            "\(error)" == "the store is closed: the gateway is stopping"
        }
        await #expect {
            _ = try await store.rows("SELECT 1")
        } throws: { error in
            "\(error)" == "the store is closed: the gateway is stopping"
        }
        store.writeHealth.withLockedValue { $0 = StoreWriteHealth() }
        let problem = try await store.writeProblem().get()
        #expect(problem == "the store is closed: the gateway is stopping")
        let reopened = try await Self.open(directory)
        let snapshot = try await reopened.load()
        try await reopened.close()
        #expect(snapshot.instances.map(\.id) == ["mi-0000000000000000a"])
    }

    @Test("sessions open at a restart come back Disconnected (resumable); unresumed ones expire as Failed")
    func openSessionsOnRestore() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await Self.open(directory)
        let open = SessionRecord(
            id: "alice-0123456789abcdef0",
            owner: "alice",
            target: "mi-0123456789abcdef0",
            documentName: "AWS-StartPortForwardingSession",
            parameters: [("portNumber", "3306")],
            reason: "",
            status: .connected,
            startEpoch: 1_700_000_000,
            endEpoch: nil,
            closeReason: "",
            clientTokenHash: nil,
            agentTokenHashes: [:]
        )
        store.submit(.instance(Self.instance("mi-0123456789abcdef0")))
        store.submit(.session(open))
        try await store.flush().get()
        try await store.close()

        let again = try await Self.open(directory)
        let clock = NIOLockedValueBox<Int64>(1_700_000_500)
        let restarted = GatewayState(clock: { clock.withLockedValue { $0 } }, store: again)
        restarted.restore(try await again.load())
        let session = try #require(restarted.session(id: open.id))
        #expect(session.status == .disconnected)
        #expect(restarted.relay(sessionID: open.id) != nil)  // ready for both sides to re-attach
        #expect(try restarted.resumeSession(id: open.id).count > 20)

        #expect(restarted.expireDisconnected(after: 360).isEmpty)  // not yet
        clock.withLockedValue { $0 += 360 }
        let expired = restarted.expireDisconnected(after: 360)
        #expect(expired.map(\.id) == [open.id])
        #expect(restarted.session(id: open.id)?.status == .failed)
        #expect(restarted.session(id: open.id)?.closeReason.contains("did not reconnect") == true)
        try await again.flush().get()
        let stored = try await again.load().sessions.first
        try await again.close()
        #expect(stored?.status == .failed)
        #expect(stored?.endEpoch == 1_700_000_860)
    }

    @Test("a missing or wrong key file stops the gateway with a clear error, never with garbage secrets")
    func keyFile() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await Self.open(directory)
        store.submit(.instance(Self.instance("mi-0123456789abcdef1")))
        try await store.flush().get()
        try await store.close()

        // A different key: sealed secrets do not open.
        let keyPath = directory + "/store.key"
        let original = try Data(contentsOf: URL(fileURLWithPath: keyPath))
        try Data(repeating: 7, count: 32).write(to: URL(fileURLWithPath: keyPath))
        let wrong = try await Self.open(directory)
        await #expect(throws: StoreError.self) { _ = try await wrong.load() }
        try await wrong.close()

        // No key at all, with an existing database: refuse to start.
        try FileManager.default.removeItem(atPath: keyPath)
        let error = await #expect(throws: StoreError.self) { _ = try await Self.open(directory) }
        #expect(error?.description.contains("store key") == true)

        // The right key back: everything is there.
        try original.write(to: URL(fileURLWithPath: keyPath))
        let restored = try await Self.open(directory)
        #expect(try await restored.load().instances.first?.secret == Self.secret)
        try await restored.close()
    }

    @Test("migrations run once; a store from a newer Jumpgate is refused")
    func migrations() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.open(directory).close()
        let store = try await Self.open(directory)  // second open: nothing to migrate, no error
        store.submit(
            .accessKey(
                AccessKey(id: "AKJGX", secret: "s", user: "u", isActive: true, createdEpoch: 0, lastUsedEpoch: nil)
            )
        )
        try await store.flush().get()
        try await store.close()
        // Pretend a newer version migrated this store.
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        sqlite.arguments = [
            "python3", "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO schema_migrations VALUES (99, 0)'); c.commit()",
            directory + "/jumpgate.sqlite",
        ]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0)
        let error = await #expect(throws: StoreError.self) { _ = try await Self.open(directory) }
        #expect(error?.description.contains("newer than this Jumpgate") == true)
    }

    @Test("a store made by schema version 1 is migrated to 2 and keeps its sessions; traffic counts are stored")
    func migrationFromVersionOne() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Version 1's schema, as a gateway of that version left it, with one ended session.
        let v1 = GatewayStore.migrations[0].statements.joined(separator: ";\n")
        let script = """
            import os, sqlite3, sys
            key = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(key, os.urandom(32))
            os.close(key)
            c = sqlite3.connect(sys.argv[1])
            c.executescript(sys.argv[2])
            c.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            c.execute("INSERT INTO schema_migrations VALUES (1, 0)")
            c.execute("INSERT INTO sessions VALUES ('alice-1', 'alice', 'mi-1', 'AWS-StartPortForwardingSession', "
                      "'{}', '', 'Terminated', 1700000000, 1700000100, 'done')")
            c.commit()
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, directory + "/jumpgate.sqlite", v1, directory + "/store.key"]
        try python.run()
        python.waitUntilExit()
        #expect(python.terminationStatus == 0)
        let store = try await Self.open(directory)
        var sessions = try await store.load().sessions
        #expect(sessions.map(\.id) == ["alice-1"])
        #expect(sessions.first?.bytesToAgent == 0)
        var session = try #require(sessions.first)
        session.bytesToAgent = 5 << 30
        session.bytesToClient = 12345
        store.submit(.session(session))
        try await store.flush().get()
        try await store.close()
        let reopened = try await Self.open(directory)
        sessions = try await reopened.load().sessions
        try await reopened.close()
        #expect(sessions.first?.bytesToAgent == 5 << 30)
        #expect(sessions.first?.bytesToClient == 12345)
        #expect(sessions.first?.closeReason == "done")
    }
}
