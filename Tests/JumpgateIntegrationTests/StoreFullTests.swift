import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// A write that fails (a full store or disk) changes nothing: the API answers 500, memory stays as the
/// store has it, and a restart shows the same. Revocations are never in memory only.
@Suite("A full store: refused writes leave memory and store equal", .serialized)
struct StoreFullTests {
    /// Creates activations with long, then empty descriptions until one is refused; returns how many fitted.
    static func fill(_ ssm: SSMClient) async -> Int {
        var count = 0
        for description in [String(repeating: "x", count: 1000), ""] {
            while count < 5000 {
                do {
                    _ = try await ssm.call(
                        "CreateActivation",
                        ["IamRole": "SSMServiceRole", "Description": .string(description)]
                    )
                    count += 1
                } catch {
                    break
                }
            }
        }
        return count
    }

    /// What the API shows: instance ids, activation ids, active session ids.
    static func view(_ ssm: SSMClient) async throws -> (instances: [String], activations: [String], active: [String]) {
        let instances =
            try await ssm.call("DescribeInstanceInformation", [:])["InstanceInformationList"]?
            .arrayValue?.compactMap { $0["InstanceId"]?.stringValue } ?? []
        let activations =
            try await ssm.call("DescribeActivations", [:])["ActivationList"]?
            .arrayValue?.compactMap { $0["ActivationId"]?.stringValue } ?? []
        let active =
            try await ssm.call("DescribeSessions", ["State": "Active"])["Sessions"]?
            .arrayValue?.compactMap { $0["SessionId"]?.stringValue } ?? []
        return (instances.sorted(), activations.sorted(), active.sorted())
    }

    /// The differences between two views, for a readable failure.
    static func difference(_ a: [String], _ b: [String]) -> String {
        "only in the first: \(Set(a).subtracting(b).sorted()), only in the second: \(Set(b).subtracting(a).sorted())"
    }

    /// Four changes while full (a deregistration, a deleted activation, a new activation, a terminated
    /// session): each either is refused and changes nothing, or succeeds and shows; then the gateway
    /// restarts on the same directory with room and shows exactly the same. Returns the refused ones.
    static func refusedChangesLeaveNoTrace(
        _ lab: EndToEndTests.Lab,
        echoPort: Int,
        dataDirectory: String,
        makeRoom: () throws -> Void = {}
    ) async throws -> Set<String> {
        let (client, _, sessionID) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
        defer { client.stop() }
        let keptActivation = try #require(
            try await lab.ssm.call("CreateActivation", ["IamRole": "SSMServiceRole"])["ActivationId"]?.stringValue
        )
        let created = await Self.fill(lab.ssm)
        print("StoreFullTests: \(created) activations fitted before the store was full")
        let before = try await Self.view(lab.ssm)
        #expect(before.instances == [lab.instanceID] && before.active == [sessionID])

        var refused: Set<String> = []
        var expected = before
        func attempt(_ operation: String, _ input: JSONValue, onSuccess: (JSONValue) -> Void) async {
            do {
                onSuccess(try await lab.ssm.call(operation, input))
            } catch {
                refused.insert(operation)
                #expect("\(error)".contains("could not save the change"), "\(operation): \(error)")
            }
        }
        // The growing changes first: deletions free room that later ones could use.
        await attempt("CreateActivation", ["IamRole": "SSMServiceRole"]) { answer in
            expected.activations = (expected.activations + [answer["ActivationId"]?.stringValue ?? ""]).sorted()
        }
        await attempt("TerminateSession", ["SessionId": .string(sessionID)]) { _ in expected.active = [] }
        await attempt("DeregisterManagedInstance", ["InstanceId": .string(lab.instanceID)]) { _ in
            expected.instances = []
        }
        await attempt("DeleteActivation", ["ActivationId": .string(keptActivation)]) { _ in
            expected.activations.removeAll { $0 == keptActivation }
        }
        print("StoreFullTests: refused \(refused.sorted())")
        let after = try await Self.view(lab.ssm)
        #expect(
            after.instances == expected.instances,
            "memory: \(Self.difference(after.instances, expected.instances))"
        )
        #expect(
            after.activations == expected.activations,
            "memory: \(Self.difference(after.activations, expected.activations))"
        )
        #expect(after.active == expected.active, "memory: \(Self.difference(after.active, expected.active))")

        // Restarted on the same directory, with room: what the API showed is what the store had.
        lab.agent.stop()
        lab.gateway.stop()
        client.stop()
        try makeRoom()
        let (gateway, ssm) = try Self.restartGateway(lab, dataDirectory: dataDirectory)
        defer { gateway.stop() }
        let restarted = try await Self.view(ssm)
        #expect(
            restarted.instances == after.instances,
            "disk: \(Self.difference(restarted.instances, after.instances))"
        )
        #expect(
            restarted.activations == after.activations,
            "disk: \(Self.difference(restarted.activations, after.activations))"
        )
        // A session that was not terminated is restored open (Disconnected, to be resumed); a terminated
        // one is in the history.
        let history = try await ssm.call("DescribeSessions", ["State": "History"])
        let ended = history["Sessions"]?.arrayValue?.contains { $0["SessionId"]?.stringValue == sessionID } == true
        #expect(ended == !refused.contains("TerminateSession"), "the session's end on disk differs from the API's")
        return refused
    }

    /// A gateway started on `dataDirectory` (the lab's own stopped first), and an admin client for it.
    static func restartGateway(_ lab: EndToEndTests.Lab, dataDirectory: String) throws -> (ChildProcess, SSMClient) {
        let gateway = try ChildProcess(
            "gateway (restarted)",
            ["server", "--data-dir", dataDirectory, "--listen", "127.0.0.1:0", "--format", "json"]
        )
        let ready = try JSONValue(parsing: try gateway.waitForLine { $0.hasPrefix("{") })
        let ssm = try SSMClient(
            configuration: ClientConfiguration.resolve(
                profile: "jumpgate-admin",
                region: "eu-west-1",
                endpointURL: try #require(ready["url"]?.stringValue),
                caFile: lab.caFile,
                environment: lab.environment
            )
        )
        return (gateway, ssm)
    }

    @Test("a store at its size limit (SQLite max_page_count): every refused change leaves memory and store equal")
    func storeLimit() async throws {
        try await EndToEndTests.withLab(gatewayArguments: ["--store-max-kib", "400"]) { lab, echoPort in
            let refused = try await Self.refusedChangesLeaveNoTrace(
                lab,
                echoPort: echoPort,
                dataDirectory: lab.directory + "/gw"
            )
            // Deletions fit in a store at its page limit; a new activation does not.
            #expect(refused.contains("CreateActivation"))
        }
    }

    /// Whether a tmpfs can be mounted here (root, with mount): the full-file-system tests are reported as
    /// skipped, not passed, where it cannot (CI runs as root).
    static let canMount = getuid() == 0 && FileManager.default.fileExists(atPath: "/bin/mount")

    /// Mounts a tmpfs of `size` (2 MiB by default; needs root) for `body`; returns false, having run nothing,
    /// where it cannot.
    static func withSmallFileSystem(
        _ test: String,
        size: String = "2m",
        _ body: (String) async throws -> Void
    ) async throws -> Bool {
        let mountPoint = NSTemporaryDirectory() + "jumpgate-full-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mount = try ChildProcess(
            "mount",
            ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint],
            executable: "mount"
        )
        guard try mount.waitForExit() == 0 else {
            Issue.record("StoreFullTests.\(test): mount failed: \(mount.standardError)")
            return false
        }
        defer { _ = try? ChildProcess("umount", ["-l", mountPoint], executable: "umount").waitForExit() }
        try await body(mountPoint)
        return true
    }

    /// Fills the file system at `mountPoint` but about `leaving` bytes; returns the filler's path.
    static func fillFileSystem(_ mountPoint: String, leaving: Int = 300 * 1024) throws -> String {
        let filler = mountPoint + "/filler"
        let free = try FileManager.default.attributesOfFileSystem(forPath: mountPoint)[.systemFreeSize] as? Int ?? 0
        #expect(FileManager.default.createFile(atPath: filler, contents: Data(count: max(0, free - leaving))))
        return filler
    }

    @Test(
        "a real full file system (a small tmpfs, as root): every refused change leaves memory and store equal",
        .enabled(if: StoreFullTests.canMount, "needs root to mount a tmpfs")
    )
    func fullFileSystem() async throws {
        _ = try await Self.withSmallFileSystem("fullFileSystem") { mountPoint in
            let directory = mountPoint + "/gw"
            try await EndToEndTests.withLab(gatewayArguments: ["--data-dir", directory]) { lab, echoPort in
                // Take what is left of the 2 MiB but about 300 KiB: the store fills soon after.
                let filler = try Self.fillFileSystem(mountPoint)
                let refused = try await Self.refusedChangesLeaveNoTrace(
                    lab,
                    echoPort: echoPort,
                    dataDirectory: directory
                ) {
                    try FileManager.default.removeItem(atPath: filler)
                }
                // On a full disk the write-ahead log cannot grow: every change is refused, revocations too.
                #expect(
                    refused == [
                        "DeregisterManagedInstance", "DeleteActivation", "CreateActivation", "TerminateSession",
                    ]
                )
            }
        }
    }

    static func healthz(_ lab: EndToEndTests.Lab) async throws -> (status: Int, body: String) {
        let endpoint = try GatewayAPITests.endpoint(lab)
        let response = try await endpoint.request(
            method: "GET",
            path: "/healthz",
            headers: [("Host", endpoint.hostHeader)],
            body: ByteBuffer()
        )
        return (response.status, String(buffer: response.body))
    }

    @Test(
        "/healthz is 503 while the store cannot write, open tunnels keep running, and all is well once space is freed"
    )
    func healthzFollowsTheStore() async throws {
        _ = try await Self.withSmallFileSystem("healthzFollowsTheStore") { mountPoint in
            let directory = mountPoint + "/gw"
            try await EndToEndTests.withLab(gatewayArguments: ["--data-dir", directory]) { lab, echoPort in
                let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
                defer { client.stop() }
                #expect(try await Self.healthz(lab).status == 200)
                let filler = try Self.fillFileSystem(mountPoint)
                _ = await Self.fill(lab.ssm)
                let full = try await Self.healthz(lab)
                #expect(full.status == 503 && full.body.contains("the store cannot be written"), "\(full)")
                let metrics = try await GatewayLimitsTests.metrics(lab)
                #expect(GatewayLimitsTests.sample(metrics, "jumpgate_store_writable") == 0)
                #expect((GatewayLimitsTests.sample(metrics, "process_open_fds") ?? 0) > 5)
                #expect((GatewayLimitsTests.sample(metrics, "process_resident_memory_bytes") ?? 0) > 1_000_000)
                #expect(try await parallelEchoes(port: localPort, count: 1, baseSize: 1000, step: 1) == 1)

                // Space freed: the next probe (at most a second after the last) finds the store writable.
                try FileManager.default.removeItem(atPath: filler)
                var status = 0
                for _ in 0..<40 where status != 200 {
                    status = try await Self.healthz(lab).status
                    if status != 200 { try await Task.sleep(nanoseconds: 250_000_000) }
                }
                #expect(status == 200, "still not ready 10 s after space was freed")
                _ = try await lab.ssm.call("CreateActivation", ["IamRole": "SSMServiceRole"])
                let after = try await GatewayLimitsTests.metrics(lab)
                #expect(GatewayLimitsTests.sample(after, "jumpgate_store_writable") == 1)
                #expect(try await parallelEchoes(port: localPort, count: 1, baseSize: 1000, step: 1) == 1)
            }
        }
    }
}
