import Foundation
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
        let store = try await Self.open(directory)
        let state = GatewayState(clock: { 1_700_000_200 }, store: store)
        state.addAccessKey(id: "AKJGTEST", secret: Self.secret + "-user", user: "alice")
        let (activationID, code) = state.createActivation(
            iamRole: "SSMServiceRole",
            description: "d",
            defaultInstanceName: "n",
            registrationLimit: 2,
            expirationEpoch: nil
        )
        let registration = GatewayState.Registration(
            activationID: activationID,
            activationCode: code,
            name: "jump",
            platformType: "Linux",
            platformName: "Debian",
            platformVersion: "12",
            agentVersion: "3.3.1802.0",
            hostname: "jump",
            ipAddress: "198.18.1.10"
        )
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

    @Test("sessions open at a restart come back Disconnected (resumable); unresumed ones expire as Failed")
    func openSessionsOnRestore() async throws {
        let directory = try Self.temporaryDirectory()
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
        #expect(try restarted.resumeSession(id: open.id, owner: "alice").count > 20)
        #expect(throws: APIError.self) { try restarted.resumeSession(id: open.id, owner: "mallory") }

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
        try await Self.open(directory).close()
        let store = try await Self.open(directory)  // second open: nothing to migrate, no error
        store.submit(.accessKey(id: "AKJGX", secret: "s", user: "u"))
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
}
