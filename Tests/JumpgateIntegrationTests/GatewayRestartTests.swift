import Foundation
import JumpgateClient
import JumpgateWire
import NIOCore
import Testing

/// The gateway killed (SIGKILL) and started again on the same data directory and port, while a session
/// carries a transfer: the store keeps the registration and the session, the agent and the client
/// reconnect on their own, and unacknowledged messages are resent, so the bytes arrive exactly once.
@Suite("Gateway restart: sessions resume, the store keeps what was registered", .serialized)
struct GatewayRestartTests {
    /// Starts the gateway again on the lab's port, on its data directory or on `dataDirectory`.
    static func restartGateway(
        _ lab: EndToEndTests.Lab,
        name: String,
        dataDirectory: String? = nil
    ) throws
        -> ChildProcess
    {
        let gateway = try ChildProcess(
            name,
            [
                "server", "--data-dir", dataDirectory ?? lab.directory + "/gw", "--listen",
                "127.0.0.1:\(lab.gatewayPort)",
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

    /// One value from the gateway's store (Python's sqlite3, the gateway stopped), with `argument` bound.
    static func storeQuery(_ lab: EndToEndTests.Lab, _ sql: String, _ argument: String) throws -> String {
        let (status, output, errors) = try AuditVerifyTests.runProcess(
            "python3",
            [
                "-c",
                "import sqlite3, sys\nrow = sqlite3.connect(sys.argv[1]).execute(sys.argv[2], (sys.argv[3],)).fetchone()\n"
                    + "print(row[0] if row else '')",
                lab.directory + "/gw/jumpgate.sqlite", sql, argument,
            ]
        )
        #expect(status == 0, "\(errors)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("SIGTERM stops the gateway gracefully (exit 0, store closed); it starts again on the same data")
    func gracefulShutdown() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let before = try await lab.ssm.call("DescribeActivations", [:])
            // A session's traffic since the last 30 s checkpoint is written at a graceful stop too.
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            let payload = randomBuffer(1 << 20)
            #expect(try await echoRoundTrip(port: localPort, bytes: payload) == payload)
            lab.gateway.signal(SIGTERM)
            #expect(try lab.gateway.waitForExit(timeout: 10) == 0)
            #expect(!lab.gateway.standardError.contains("store write failed"))
            #expect(!lab.gateway.standardError.contains("came after the store closed"))
            // The gateway closed the client's connection before its store: the session's row says so (a
            // gateway that left its connections to the kernel kept "Connected" there, and any change that
            // a closing connection made after the store closed was lost).
            #expect(try Self.storeQuery(lab, "SELECT status FROM sessions WHERE id = ?", sessionID) == "Disconnected")
            let gateway = try Self.restartGateway(lab, name: "gateway-after-sigterm")
            defer { gateway.stop() }
            let after = try await lab.ssm.call("DescribeActivations", [:])
            #expect(after == before)
            #expect(try await Self.pingStatus(lab, waitingFor: "Online") == "Online")
            let sessions = try await lab.ssm.call("DescribeSessions", ["State": "Active"])["Sessions"]?.arrayValue
            let session = try #require(sessions?.first { $0["SessionId"]?.stringValue == sessionID })
            #expect(try #require(session["JumpgateBytesToTarget"]?.int64Value) > 1 << 20)
            // The connections the stopping gateway closed come back to the new one: the session resumes.
            let again = randomBuffer(256 << 10)
            #expect(try await echoRoundTrip(port: localPort, bytes: again) == again)
            #expect(client.process.isRunning, "\(client.standardError.suffix(800))")
        }
    }

    @Test("a paced 16 MiB transfer survives kill -9 of the gateway twice, byte-exact, the local connection never reset")
    func pacedTransferSurvivesTwoKills() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            let payload = randomBuffer(16 << 20)
            // About 2.5 MB/s: the transfer spans both restarts.
            let transfer = Task {
                try await pacedEchoRoundTrip(
                    port: localPort,
                    bytes: payload,
                    chunk: 64 << 10,
                    interval: .milliseconds(25)
                )
            }
            var gateway = lab.gateway
            for round in 1...2 {
                try await Task.sleep(nanoseconds: 1_500_000_000)
                gateway.signal(SIGKILL)
                _ = try gateway.waitForExit()
                gateway = try Self.restartGateway(lab, name: "gateway-restart-\(round)")
            }
            defer { gateway.stop() }
            let echoed = try await transfer.value
            #expect(echoed.readableBytes == payload.readableBytes)
            #expect(echoed == payload)
            #expect(client.process.isRunning, "the client must still be running: \(client.standardError.suffix(800))")
            // Both ends really resumed (twice), rather than the transfer finishing between the kills.
            let reconnects = lab.agent.standardError.components(separatedBy: "data channel reconnected").count - 1
            #expect(reconnects >= 2, "\(lab.agent.standardError.suffix(1500))")

            // The same admin key, the same registered agent (its sealed secret from the store): the agent's
            // control channel came back on its own, and the session is still the same one.
            #expect(try await Self.pingStatus(lab, waitingFor: "Online") == "Online")
            let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(active["Sessions"]?.arrayValue?.map { $0["SessionId"]?.stringValue } == [sessionID])
            let activations = try await lab.ssm.call("DescribeActivations", [:])
            #expect(activations["ActivationList"]?.arrayValue?.first?["RegistrationsCount"]?.int64Value == 1)

            // New connections through the resumed session work too.
            #expect(try await parallelEchoes(port: localPort, count: 4, baseSize: 65536, step: 7) == 4)

            // Deregistering removes the agent: its session ends, and its credentials stop working.
            _ = try await lab.ssm.call("DeregisterManagedInstance", ["InstanceId": .string(lab.instanceID)])
            let list = try await lab.ssm.call("DescribeInstanceInformation", [:])
            #expect(list["InstanceInformationList"]?.arrayValue?.isEmpty == true)
            #expect(try client.waitForExit() == 2, "the instance was deregistered: exit status 2")
            #expect(client.output.contains { $0.contains("was deregistered") })
            await #expect(throws: (any Error).self) {
                _ = try await lab.ssm.call("DeregisterManagedInstance", ["InstanceId": .string(lab.instanceID)])
            }
        }
    }

    @Test(
        "a session terminated while its client was away (the gateway restarted meanwhile): the client's resume ends it with the gateway's reason, exit 2"
    )
    func terminatedWhileAway() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 1, baseSize: 1000, step: 1) == 1)
            // The client cannot notice anything until the session has ended on the restarted gateway.
            client.signal(SIGSTOP)
            lab.gateway.signal(SIGKILL)
            _ = try lab.gateway.waitForExit()
            let gateway = try Self.restartGateway(lab, name: "gateway-2")
            defer { gateway.stop() }
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            client.signal(SIGCONT)
            #expect(try client.waitForExit(timeout: 30) == 2, "ended by the other side: exit status 2")
            try await Task.sleep(nanoseconds: 100_000_000)  // let the output readers drain
            #expect(client.output.contains { $0.contains("Session terminated by") }, "\(client.output)")
            #expect(!client.output.contains { $0.contains("could not be resumed") }, "\(client.output)")
        }
    }

    @Test("with the gateway gone for good, the client gives up after --resume-timeout: a clear line, exit 1")
    func resumeGivesUp() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort,
                extraArguments: ["--resume-timeout", "3s"]
            )
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 1, baseSize: 1000, step: 1) == 1)
            lab.gateway.signal(SIGKILL)
            _ = try lab.gateway.waitForExit()
            #expect(try client.waitForExit(timeout: 20) == 1)
            try await Task.sleep(nanoseconds: 100_000_000)  // let the output readers drain
            #expect(
                client.output.contains {
                    $0.contains(
                        "Cannot perform start session: The connection to the gateway was lost and could not be resumed within 3 seconds"
                    )
                },
                "\(client.output)"
            )
        }
    }
}
