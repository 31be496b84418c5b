import Foundation
import JumpgateClient
import JumpgateGateway
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The store under a crash and under a backup: SIGKILL while 1,000 API writes are in flight loses no
/// acknowledged write and leaves SQLite intact; an online backup taken while writes run restores to a
/// working gateway that its agent reconnects to.
@Suite("Store durability: kill -9 during writes, online backup and restore", .serialized)
struct StoreDurabilityTests {
    /// Creates `count` activations, `concurrency` at a time, recording each id the gateway acknowledged
    /// (answered) and yielding the running count. Failed calls (the gateway killed) are not acknowledged.
    static func createActivations(
        _ ssm: SSMClient,
        count: Int,
        concurrency: Int,
        acknowledged: NIOLockedValueBox<[String]>,
        progress: AsyncStream<Int>.Continuation
    ) async {
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    for index in stride(from: worker, to: count, by: concurrency) {
                        let answer = try? await ssm.call(
                            "CreateActivation",
                            ["IamRole": "SSMServiceRole", "Description": .string("durability write \(index)")]
                        )
                        guard let id = answer?["ActivationId"]?.stringValue else { continue }
                        progress.yield(
                            acknowledged.withLockedValue { ids in
                                ids.append(id)
                                return ids.count
                            }
                        )
                    }
                }
            }
        }
        progress.finish()
    }

    static func activationIDs(_ ssm: SSMClient) async throws -> Set<String> {
        let answer = try await ssm.call("DescribeActivations", [:])
        return Set(answer["ActivationList"]?.arrayValue?.compactMap { $0["ActivationId"]?.stringValue } ?? [])
    }

    static func integrityCheck(_ path: String) async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        try await GatewayStore.checkIntegrity(of: path, threadPool: pool, logger: Logger(label: "test"))
    }

    @Test("kill -9 while 1,000 concurrent API writes are in flight: integrity ok, every acknowledged write kept")
    func killDuringWrites() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let acknowledged = NIOLockedValueBox<[String]>([])
            let (progress, continuation) = AsyncStream.makeStream(of: Int.self)
            async let writes: Void = Self.createActivations(
                lab.ssm,
                count: 1000,
                concurrency: 1000,
                acknowledged: acknowledged,
                progress: continuation
            )
            for await count in progress where count >= 300 { break }
            lab.gateway.signal(SIGKILL)
            _ = try lab.gateway.waitForExit()
            await writes
            let kept = acknowledged.withLockedValue { $0 }
            print("StoreDurabilityTests: \(kept.count) of 1000 writes acknowledged before and around the kill")
            #expect(kept.count >= 300 && kept.count < 1000, "the kill must land while writes are in flight")

            try await Self.integrityCheck(lab.directory + "/gw/jumpgate.sqlite")
            let gateway = try GatewayRestartTests.restartGateway(lab, name: "gateway (after kill -9)")
            defer { gateway.stop() }
            let stored = try await Self.activationIDs(lab.ssm)
            let lost = Set(kept).subtracting(stored)
            #expect(lost.isEmpty, "acknowledged but lost: \(lost.count), e.g. \(lost.prefix(3))")
        }
    }

    @Test("a backup taken under write load restores to a working gateway: its data, keys and certificates")
    func backupUnderLoad() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let acknowledged = NIOLockedValueBox<[String]>([])
            let (progress, continuation) = AsyncStream.makeStream(of: Int.self)
            async let writes: Void = Self.createActivations(
                lab.ssm,
                count: 600,
                concurrency: 20,
                acknowledged: acknowledged,
                progress: continuation
            )
            for await count in progress where count >= 100 { break }
            let before = Set(acknowledged.withLockedValue { $0 })
            let destination = lab.directory + "/backup"
            let backup = try ChildProcess(
                "backup",
                ["server", "backup", "--data-dir", lab.directory + "/gw", "--to", destination, "--format", "json"]
            )
            #expect(try backup.waitForExit(timeout: 60) == 0, "\(backup.standardError)")
            let writtenDuringBackup = acknowledged.withLockedValue { $0.count } - before.count
            await writes
            print("StoreDurabilityTests: backup after \(before.count) writes, \(writtenDuringBackup) more during it")
            let answer = try JSONValue(parsing: try backup.waitForLine { $0.hasPrefix("{") })
            #expect(answer["schemaVersion"]?.int64Value == Int64(GatewayStore.schemaVersion))
            #expect(answer["files"]?.arrayValue?.count == GatewayStore.backupFiles.count + 1)
            #expect(
                try FileManager.default.attributesOfItem(atPath: destination + "/store.key")[.posixPermissions]
                    as? Int == 0o600
            )
            // A second backup to the same place is refused rather than overwriting it.
            let again = try ChildProcess(
                "backup again",
                ["server", "backup", "--data-dir", lab.directory + "/gw", "--to", destination]
            )
            #expect(try again.waitForExit() != 0)
            #expect(again.standardError.contains("a backup never overwrites"))

            // Restore drill: the original gateway gone, the copy started on the same port.
            lab.gateway.stop()
            try await Self.integrityCheck(destination + "/jumpgate.sqlite")
            let restored = try GatewayRestartTests.restartGateway(
                lab,
                name: "gateway (restored)",
                dataDirectory: destination
            )
            defer { restored.stop() }
            let stored = try await Self.activationIDs(lab.ssm)
            let missing = before.subtracting(stored)
            #expect(missing.isEmpty, "written before the backup began but not in it: \(missing.count)")
            // The agent reconnects with its sealed instance secret, through the same CA: the key and the
            // certificates came back with the store.
            #expect(try await GatewayRestartTests.pingStatus(lab, waitingFor: "Online") == "Online")
        }
    }
}
