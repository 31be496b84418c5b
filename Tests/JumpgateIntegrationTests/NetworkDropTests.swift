import Foundation
import JumpgateClient
import JumpgateWire
import NIOCore
import Testing

/// One side's link to the gateway drops while the other stays up: frames in flight to the dropped
/// connection are lost inside the network, the dropped side reconnects, and the side that stayed up
/// must resend what the relay lost (the gateway's start_publication), or the transfer stalls forever.
@Suite("Network drops on one side: the other side resends what was lost", .serialized)
struct NetworkDropTests {
    /// The gateway's port, learnt once it listens (it binds 127.0.0.1:0), and a maker of flaky links that
    /// forward to it. The links exist before the gateway (its --public-url names one); they ask for the
    /// port at each connection, and nothing connects through them before the lab has set it. Picking a
    /// free port first and handing it to the gateway raced with every other bind on the machine: the
    /// links' own listeners could take it in between (CI saw "address already in use").
    static func gatewayPortAndLink() -> (port: GatewayPort, link: @Sendable () async throws -> CuttableProxy) {
        let port = GatewayPort()
        return (port, { try await CuttableProxy { port.value } })
    }

    /// The gateway reached through two flaky links: the agent's (its control and data channels) and the
    /// client's data channel (the gateway's --public-url puts it into the StreamUrl). API calls go
    /// straight to the gateway.
    struct TwoLinks {
        let port: GatewayPort
        let agent: CuttableProxy
        let client: CuttableProxy

        static func make() async throws -> TwoLinks {
            let (port, makeLink) = NetworkDropTests.gatewayPortAndLink()
            return TwoLinks(port: port, agent: try await makeLink(), client: try await makeLink())
        }

        var gatewayArguments: [String] { ["--public-url", "https://127.0.0.1:\(self.client.port)"] }
        var agentEndpoint: String { "https://127.0.0.1:\(self.agent.port)" }

        func close() {
            self.agent.close()
            self.client.close()
        }
    }

    /// Two busy processes (one per core of the project's machine) for at most `seconds`, stopped by PID
    /// when the test ends: the load under which this test once stalled in a full `./scripts/test`.
    static func cpuHogs(seconds: Int = 90) throws -> [ChildProcess] {
        try (0..<2).map { index in
            try ChildProcess(
                "cpu-hog-\(index)",
                ["-c", "import time\nend = time.time() + \(seconds)\nwhile time.time() < end: pass"],
                executable: "python3"
            )
        }
    }

    @Test(
        "a paced transfer survives the agent's link and then the client's link going dark, byte-exact",
        arguments: [false, true]
    )
    func oneSidedDrops(besideCPUHogs: Bool) async throws {
        let hogs = besideCPUHogs ? try Self.cpuHogs() : []
        defer { for hog in hogs { hog.stop() } }
        if besideCPUHogs {
            print("NetworkDropTests: beside two CPU hogs (pids \(hogs.map(\.process.processIdentifier)))")
        }
        let links = try await TwoLinks.make()
        let (agentLink, clientLink) = (links.agent, links.client)
        defer { links.close() }
        try await EndToEndTests.withLab(
            gatewayArguments: links.gatewayArguments,
            gatewayPort: links.port,
            agentEndpoint: links.agentEndpoint
        ) { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort,
                extraArguments: ["--log-level", "info"]
            )
            defer { client.stop() }
            // One paced transfer per drop (about 2.5 MB/s, so each spans its drop): the agent's link first,
            // then the client's. Each must complete on its own, since a drop on the other side would make
            // that side resend everything and hide a loss.
            for link in [agentLink, clientLink] {
                let payload = randomBuffer(8 << 20)
                let transfer = Task {
                    try await pacedEchoRoundTrip(
                        port: localPort,
                        bytes: payload,
                        chunk: 64 << 10,
                        interval: .milliseconds(25),
                        timeout: .seconds(40)
                    )
                }
                try await Task.sleep(nanoseconds: 1_000_000_000)
                try await link.blackholeAndCut()
                let echoed: ByteBuffer
                do {
                    echoed = try await transfer.value
                } catch {
                    // What each process saw, to tell where a stalled transfer stopped.
                    Issue.record(
                        """
                        the transfer through the \(link === agentLink ? "agent's" : "client's") cut link failed: \(error)
                        client: \(client.standardError.suffix(3000))
                        agent: \(lab.agent.standardError.suffix(3000))
                        gateway: \(lab.gateway.standardError.suffix(3000))
                        """
                    )
                    throw error
                }
                #expect(echoed.readableBytes == payload.readableBytes)
                #expect(echoed == payload)
            }
            #expect(client.process.isRunning)
            #expect(
                lab.agent.waitForStandardError(containing: "data channel reconnected"),
                "\(lab.agent.standardError.suffix(1500))"
            )
            #expect(client.waitForStandardError(containing: "session resumed"), "\(client.standardError.suffix(1500))")
            #expect(lab.gateway.process.isRunning)
            // Resends after both resumes (duplicates, acknowledgements of what was already acknowledged):
            // nothing refused.
            try await EndToEndTests.expectNoAgentRefusals(lab)
        }
    }

    @Test("a session terminated while the agent's link is down ends on the agent as soon as it is back")
    func terminatedWhileAgentAway() async throws {
        let (port, makeLink) = Self.gatewayPortAndLink()
        let agentLink = try await makeLink()
        defer { agentLink.close() }
        try await EndToEndTests.withLab(
            gatewayPort: port,
            agentEndpoint: "https://127.0.0.1:\(agentLink.port)"
        ) { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1000, step: 1) == 2)
            // The link goes dark; the session is terminated meanwhile (its channel_closed is lost).
            let cut = Task { try await agentLink.blackholeAndCut(for: .seconds(1)) }
            try await Task.sleep(nanoseconds: 200_000_000)
            _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(sessionID)])
            try await cut.value
            // Back online, the agent learns the session is over (a refused data-channel token, or the
            // control channel) and ends it instead of retrying for minutes.
            var ended = false
            for _ in 0..<100 where !ended {
                ended = lab.agent.standardError.split(separator: "\n").contains {
                    $0.contains("session ended") && $0.contains(sessionID)
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            #expect(ended, "\(lab.agent.standardError.suffix(2000))")
            #expect(try client.waitForExit() == 2, "ended by the other side: exit status 2")
        }
    }
}
