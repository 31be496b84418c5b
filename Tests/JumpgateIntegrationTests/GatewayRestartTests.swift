import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// The gateway killed (SIGKILL) and started again on the same data directory and port.
@Suite("Gateway restart: the store keeps what was registered", .serialized)
struct GatewayRestartTests {
    static func restartGateway(_ lab: EndToEndTests.Lab, name: String) throws -> ChildProcess {
        let gateway = try ChildProcess(
            name,
            [
                "server", "--data-dir", lab.directory + "/gw", "--listen", "127.0.0.1:\(lab.gatewayPort)",
                "--format", "json",
            ]
        )
        let ready = try JSONValue(parsing: try gateway.waitForLine { $0.hasPrefix("{") })
        #expect(ready["url"]?.stringValue == lab.url)
        return gateway
    }

    static func pingStatus(
        _ lab: EndToEndTests.Lab,
        waitingFor wanted: String,
        seconds: Int = 30
    ) async throws
        -> String
    {
        var status = ""
        for _ in 0..<(seconds * 10) {
            let info = try? await lab.ssm.call("DescribeInstanceInformation", [:])
            status = info?["InstanceInformationList"]?.arrayValue?.first?["PingStatus"]?.stringValue ?? ""
            if status == wanted { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return status
    }

    @Test("kill -9 twice: activations, the agent's registration and session history survive; the agent reconnects")
    func killAndRestart() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 4096, step: 1) == 2)

            var gateway = lab.gateway
            for round in 1...2 {
                gateway.signal(SIGKILL)
                _ = try gateway.waitForExit()
                gateway = try Self.restartGateway(lab, name: "gateway-restart-\(round)")
                // The same admin key (from admin.credentials), the same registered agent (its sealed secret
                // from the store): the agent's control channel comes back on its own.
                #expect(try await Self.pingStatus(lab, waitingFor: "Online") == "Online", "round \(round)")
            }
            defer { gateway.stop() }

            let activations = try await lab.ssm.call("DescribeActivations", [:])
            let activation = try #require(activations["ActivationList"]?.arrayValue?.first)
            #expect(activation["RegistrationsCount"]?.int64Value == 1)

            // The session open at the first kill could not continue: it is in the history as Failed.
            #expect(try await EndToEndTests.historyStatus(lab, sessionID, waitingFor: "Failed") == "Failed")

            // A new session through the restarted gateway and the reconnected agent works.
            let (second, secondPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { second.stop() }
            #expect(try await parallelEchoes(port: secondPort, count: 4, baseSize: 65536, step: 7) == 4)

            // Deregistering removes the agent: its control channel closes and it cannot come back.
            _ = try await lab.ssm.call("DeregisterManagedInstance", ["InstanceId": .string(lab.instanceID)])
            let list = try await lab.ssm.call("DescribeInstanceInformation", [:])
            #expect(list["InstanceInformationList"]?.arrayValue?.isEmpty == true)
            await #expect(throws: (any Error).self) {
                _ = try await lab.ssm.call("DeregisterManagedInstance", ["InstanceId": .string(lab.instanceID)])
            }
        }
    }
}
