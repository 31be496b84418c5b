import Foundation
import JumpgateClient
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Transfers at full speed both ways on one local connection, byte-exact by SHA-256, while the path
/// breaks: the gateway killed (SIGKILL) and restarted three times, the agent's link down for 10 s, the
/// client's data channel cut twice. The local TCP connection must never be reset. 256 MiB each way in CI;
/// `JUMPGATE_FAULT_MIB=1024` (scripts/reliability) is the full form.
@Suite("Full-speed transfers through faults: byte-exact, the local connection never reset", .serialized)
struct FullSpeedFaultTests {
    static var size: Int {
        let mib = Int(ProcessInfo.processInfo.environment["JUMPGATE_FAULT_MIB"] ?? "") ?? 256
        return mib << 20
    }

    /// A target, a lab whose gateway and agent paths are given, a session to the target, and the transfer
    /// running; `faults` is called with the progress (to land each fault while bytes are in flight) and
    /// returns the processes it started, stopped once the transfer is over.
    /// `agentReconnects` and `clientResumes`: how many times each side must have reconnected its data
    /// channel, so a fault that landed after the last byte cannot pass for one survived.
    static func transfer(
        size: Int = Self.size,
        gatewayArguments: [String] = [],
        gatewayPort: GatewayPort? = nil,
        agentEndpoint: String? = nil,
        agentReconnects: Int = 0,
        clientResumes: Int = 0,
        faults: @escaping (EndToEndTests.Lab, TransferProgress) async throws -> [ChildProcess]
    ) async throws {
        let progress = TransferProgress()
        let target = try await DuplexTransfer.startTarget(progress: progress)
        defer { target.close(promise: nil) }
        let targetPort = try #require(target.localAddress?.port)
        let seed = UInt64.random(in: 1...UInt64.max)
        print("FullSpeedFaultTests: \(size >> 20) MiB each way, pattern seed \(seed)")
        try await EndToEndTests.withLab(
            allow: ["127.0.0.1:\(targetPort)"],
            gatewayArguments: gatewayArguments,
            gatewayPort: gatewayPort,
            agentEndpoint: agentEndpoint
        ) { lab, _ in
            let (client, localPort, _) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: targetPort,
                extraArguments: ["--log-level", "info"]
            )
            defer { client.stop() }
            let start = ContinuousClock.now
            let transfer = Task {
                defer { progress.finish() }
                return try await DuplexTransfer.run(
                    port: localPort,
                    count: size,
                    seed: seed,
                    progress: progress,
                    timeout: .seconds(Int64(120 + size >> 22))
                )
            }
            let started = try await faults(lab, progress)
            defer { for process in started { process.stop() } }
            let result: DuplexTransfer.Result
            do {
                result = try await transfer.value
            } catch {
                Issue.record(
                    """
                    \(error)
                    client: \(client.standardError.suffix(2000))
                    agent: \(lab.agent.standardError.suffix(2000))
                    """
                )
                throw error
            }
            let seconds = Double((ContinuousClock.now - start).components.seconds)
            print(
                "FullSpeedFaultTests: done in about \(Int(seconds)) s (\(size >> 20) MiB each way, faults included), "
                    + progress.summary
            )
            #expect(result.isByteExact, "SHA-256 differs: \(result)")
            let reconnects = lab.agent.standardError.components(separatedBy: "data channel reconnected").count - 1
            let resumes = client.standardError.components(separatedBy: "session resumed").count - 1
            print("FullSpeedFaultTests: the agent reconnected \(reconnects) times, the client resumed \(resumes) times")
            #expect(reconnects >= agentReconnects, "\(lab.agent.standardError.suffix(1500))")
            #expect(resumes >= clientResumes, "\(client.standardError.suffix(1500))")
            #expect(client.process.isRunning, "the client must still be running: \(client.standardError.suffix(800))")
        }
    }

    @Test("each way at full speed while the gateway is killed (SIGKILL) and restarted three times")
    func gatewayKilledThreeTimes() async throws {
        try await Self.transfer(agentReconnects: 3, clientResumes: 3) { lab, progress in
            var gateway = lab.gateway
            for round in 1...3 {
                let landed = await progress.wait(untilBoth: Self.size * round / 4)
                #expect(landed && progress.inFlight(total: Self.size), "the transfer ended before kill \(round)")
                gateway.signal(SIGKILL)
                _ = try gateway.waitForExit()
                gateway = try GatewayRestartTests.restartGateway(lab, name: "gateway-restart-\(round)")
            }
            return [gateway]
        }
    }

    @Test("each way at full speed while the agent's link is down for 10 s")
    func agentLinkDown() async throws {
        let (port, makeLink) = NetworkDropTests.gatewayPortAndLink()
        let agentLink = try await makeLink()
        defer { agentLink.close() }
        try await Self.transfer(
            gatewayPort: port,
            agentEndpoint: "https://127.0.0.1:\(agentLink.port)",
            agentReconnects: 1
        ) { _, progress in
            let landed = await progress.wait(untilBoth: Self.size / 3)
            #expect(landed && progress.inFlight(total: Self.size), "the transfer ended before the link went down")
            try await agentLink.down(for: .seconds(10))
            return []
        }
        #expect(agentLink.cuts.withLockedValue { $0 } == 1)
    }

    @Test("each way at full speed while the client's connection to the gateway is cut twice")
    func clientLinkCutTwice() async throws {
        let (port, makeLink) = NetworkDropTests.gatewayPortAndLink()
        let clientLink = try await makeLink()
        defer { clientLink.close() }
        try await Self.transfer(
            gatewayArguments: ["--public-url", "https://127.0.0.1:\(clientLink.port)"],
            gatewayPort: port,
            clientResumes: 2
        ) { _, progress in
            for round in 1...2 {
                let landed = await progress.wait(untilBoth: Self.size * round / 3)
                #expect(landed && progress.inFlight(total: Self.size), "the transfer ended before cut \(round)")
                try await clientLink.blackholeAndCut()
            }
            return []
        }
    }
}
