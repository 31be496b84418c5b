import Foundation
import JumpgateClient
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// The file system fills while the gateway is under load: six clients creating and deleting activations
/// at once, and a tunnel carrying a paced transfer. Writes that fail say so and change nothing; the tunnel
/// never notices; once space is freed writes succeed again; and what the API acknowledged is exactly what
/// memory and, after a restart, the store hold.
@Suite("A full file system under load", .serialized)
struct StoreFullLoadTests {
    /// What the writers saw: activations whose creation or deletion was acknowledged, refusals, and
    /// anything else (which fails the test).
    struct Outcomes: Sendable {
        var created: Set<String> = []
        var deleted: Set<String> = []
        var successes = 0
        var refusals = 0
        var unexpected: [String] = []
    }

    enum Phase: Sendable { case room, full, freed, stop }

    @Test(
        "6 concurrent writers and a tunnel transfer while the disk fills and frees: clear errors, the tunnel unharmed, memory and store agree",
        .enabled(if: StoreFullTests.canMount, "needs root to mount a tmpfs")
    )
    func fullFileSystemUnderLoad() async throws {
        // 64 MiB, not the 2 MiB of the sequential tests: under this load (hundreds of writes a second, each
        // audited) the store's write-ahead log refills a 2 MiB disk within a second of space being freed,
        // and the log cannot be checkpointed into a database file that has no room to grow.
        _ = try await StoreFullTests.withSmallFileSystem("fullFileSystemUnderLoad", size: "64m") { mountPoint in
            let directory = mountPoint + "/gw"
            try await EndToEndTests.withLab(gatewayArguments: ["--data-dir", directory]) { lab, echoPort in
                let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
                defer { client.stop() }
                let existing = Set(try await StoreFullTests.view(lab.ssm).activations)
                let outcomes = NIOLockedValueBox(Outcomes())
                let phase = NIOLockedValueBox(Phase.room)

                // The tunnel: 256 KiB echoes one after another, each checked byte-exact, for the whole load
                // (bounded: 2,000 of them).
                let echoedWhileFull = NIOLockedValueBox(0)
                let tunnel = Task { () -> (ok: Int, failed: Int) in
                    var (ok, failed) = (0, 0)
                    for round in 0..<2000 where phase.withLockedValue({ $0 }) != .stop {
                        let bytes = randomBuffer(256 << 10 + round)
                        let started = phase.withLockedValue { $0 }
                        if (try? await echoRoundTrip(port: localPort, bytes: bytes)) == bytes {
                            ok += 1
                            if started == .full, phase.withLockedValue({ $0 }) == .full {
                                echoedWhileFull.withLockedValue { $0 += 1 }
                            }
                        } else {
                            failed += 1
                        }
                    }
                    return (ok, failed)
                }
                // The writers: each creates an activation (1 KiB of description, so the disk fills) and
                // deletes every other one it created. Bounded: 2,000 calls each, 10 ms apart, and they stop when told.
                let writers = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for writer in 0..<6 {
                            group.addTask {
                                var mine: [String] = []
                                for call in 0..<2000 where phase.withLockedValue({ $0 }) != .stop {
                                    // Refusals come back at once: pace the writers so the budget lasts.
                                    try? await Task.sleep(nanoseconds: 10_000_000)
                                    let victim = call % 2 == 1 ? mine.popLast() : nil
                                    if let id = await Self.write(
                                        lab.ssm,
                                        writer: writer,
                                        victim: victim,
                                        outcomes: outcomes
                                    ) {
                                        mine.append(id)
                                    } else if let victim, !outcomes.withLockedValue({ $0.deleted.contains(victim) }) {
                                        mine.append(victim)  // refused: still there, to be deleted later
                                    }
                                }
                            }
                        }
                    }
                }
                defer { phase.withLockedValue { $0 = .stop } }

                // Some writes with room, then the disk fills: writes are refused while the tunnel runs.
                try await Self.until("30 acknowledged writes") { outcomes.withLockedValue { $0.successes } >= 30 }
                let filler = Self.fillCompletely(mountPoint)
                phase.withLockedValue { $0 = .full }
                let refusedBefore = outcomes.withLockedValue { $0.refusals }
                try await Self.until("20 refused writes") {
                    outcomes.withLockedValue { $0.refusals } >= refusedBefore + 20
                }
                #expect(try await StoreFullTests.healthz(lab).status == 503)
                try await Self.until("3 echoes through the tunnel while the disk is full") {
                    echoedWhileFull.withLockedValue { $0 } >= 3
                }

                // Space freed: writes succeed again.
                try FileManager.default.removeItem(atPath: filler)
                phase.withLockedValue { $0 = .freed }
                let succeededBefore = outcomes.withLockedValue { $0.successes }
                try await Self.until(
                    "30 writes acknowledged after space was freed",
                    context: { "\(outcomes.withLockedValue { ($0.successes, $0.refusals, $0.unexpected.prefix(3)) })" }
                ) {
                    outcomes.withLockedValue { $0.successes } >= succeededBefore + 30
                }
                phase.withLockedValue { $0 = .stop }
                await writers.value
                // And a new session works.
                let (fresh, freshPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
                defer { fresh.stop() }
                #expect(try await parallelEchoes(port: freshPort, count: 2, baseSize: 4096, step: 1) == 2)

                let echoes = await tunnel.value
                print("StoreFullLoadTests: \(echoes.ok) echoes through the tunnel during the load")
                #expect(echoes.failed == 0 && echoes.ok > 0, "the tunnel failed while the disk was full: \(echoes)")
                let seen = outcomes.withLockedValue { $0 }
                print("StoreFullLoadTests: \(seen.successes) writes acknowledged, \(seen.refusals) refused")
                #expect(seen.unexpected.isEmpty, "\(seen.unexpected.prefix(5))")

                // Memory holds exactly what was acknowledged, and so does the store after a restart.
                let expected = existing.union(seen.created).subtracting(seen.deleted)
                let inMemory = Set(try await StoreFullTests.view(lab.ssm).activations)
                #expect(
                    inMemory == expected,
                    "memory: \(StoreFullTests.difference(inMemory.sorted(), expected.sorted()))"
                )
                lab.agent.stop()
                lab.gateway.stop()
                client.stop()
                let (gateway, ssm) = try StoreFullTests.restartGateway(lab, dataDirectory: directory)
                defer { gateway.stop() }
                let onDisk = Set(try await StoreFullTests.view(ssm).activations)
                #expect(onDisk == expected, "disk: \(StoreFullTests.difference(onDisk.sorted(), expected.sorted()))")
            }
        }
    }

    /// One call of one writer: deletes `victim` if given, otherwise creates an activation and returns its
    /// id. A refused write must say the change could not be saved; anything else is unexpected.
    static func write(
        _ ssm: SSMClient,
        writer: Int,
        victim: String?,
        outcomes: NIOLockedValueBox<Outcomes>
    ) async
        -> String?
    {
        do {
            if let victim {
                _ = try await ssm.call("DeleteActivation", ["ActivationId": .string(victim)])
                outcomes.withLockedValue {
                    $0.deleted.insert(victim)
                    $0.successes += 1
                }
                return nil
            }
            let description = "writer \(writer) " + String(repeating: "x", count: 1000)
            let answer = try await ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "Description": .string(description)]
            )
            let id = answer["ActivationId"]?.stringValue ?? ""
            outcomes.withLockedValue {
                $0.created.insert(id)
                $0.successes += 1
            }
            return id
        } catch {
            let text = "\(error)"
            outcomes.withLockedValue {
                if text.contains("could not save the change") {
                    $0.refusals += 1
                } else {
                    $0.unexpected.append(text)
                }
            }
            return nil
        }
    }

    /// Writes a filler file until the file system refuses more (the writers keep writing meanwhile, so
    /// free space measured beforehand is already wrong); returns its path.
    static func fillCompletely(_ mountPoint: String) -> String {
        let filler = mountPoint + "/filler"
        let descriptor = Glibc.open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(descriptor >= 0, "cannot create \(filler)")
        defer { Glibc.close(descriptor) }
        for size in [1 << 20, 4096] {
            let chunk = [UInt8](repeating: 0, count: size)
            // Until a write falls short; bounded: a 64 MiB file system takes at most 64 chunks of 1 MiB.
            for _ in 0..<100_000 {
                if Glibc.write(descriptor, chunk, size) != size { break }
            }
        }
        return filler
    }

    /// Waits (bounded, 60 s) for `condition`, polling every 50 ms.
    static func until(_ what: String, context: () -> String = { "" }, _ condition: () -> Bool) async throws {
        for _ in 0..<1200 {
            if condition() { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        Issue.record("timed out waiting for \(what) (\(context()))")
        throw CancellationError()
    }
}
