import JumpgateNIO
import NIOCore
import Testing

/// The agent's signed requests go over one kept HTTPS connection (``HTTPSKeptConnection``), against a real
/// gateway behind a proxy that can cut connections.
@Suite("Kept HTTPS connections", .serialized)
struct KeptConnectionTests {
    /// A lab gateway behind a ``CuttableProxy``, and the endpoint that reaches it through the proxy.
    static func withProxiedGateway(_ body: (CuttableProxy, HTTPSEndpoint) async throws -> Void) async throws {
        try await EndToEndTests.withLab { lab, _ in
            let proxy = try await CuttableProxy(upstreamPort: { lab.gatewayPort })
            defer { proxy.close() }
            var endpoint = try GatewayAPITests.endpoint(lab)
            endpoint.port = proxy.port
            try await body(proxy, endpoint)
        }
    }

    @Test("requests share one kept connection, and one the network lost is replaced without a failed request")
    func reuseAndReplace() async throws {
        try await Self.withProxiedGateway { proxy, endpoint in
            let kept = HTTPSKeptConnection(endpoint: endpoint)
            for _ in 0..<3 {
                let response = try await kept.request(method: "GET", path: "/healthz", headers: [], body: ByteBuffer())
                #expect(response.status == 200)
            }
            #expect(await kept.connectionsOpened == 1, "three requests, one TLS connection")
            // The kept connection is cut under it: the next request goes on a new one and succeeds.
            try await proxy.blackholeAndCut(for: .milliseconds(50))
            let after = try await kept.request(method: "GET", path: "/healthz", headers: [], body: ByteBuffer())
            #expect(after.status == 200)
            #expect(await kept.connectionsOpened == 2)
            await kept.close()
        }
    }

    @Test("an idle kept connection is closed after its idle limit, and close() closes it at once")
    func idleExpiryAndClose() async throws {
        try await Self.withProxiedGateway { proxy, endpoint in
            // The gateway's keep-alive deadline is 60 s, past every wait here (20 s at most): only the
            // client's idle limit can close the connection in this test.
            let kept = HTTPSKeptConnection(endpoint: endpoint, idleLimit: .seconds(2))
            let first = try await kept.request(method: "GET", path: "/healthz", headers: [], body: ByteBuffer())
            #expect(first.status == 200)
            #expect(proxy.openConnections == 1, "the connection is kept after the answer")
            try await ConnectionRecordsTests.eventually("the idle connection to close") { proxy.openConnections == 0 }
            let second = try await kept.request(method: "GET", path: "/healthz", headers: [], body: ByteBuffer())
            #expect(second.status == 200)
            #expect(await kept.connectionsOpened == 2, "the expired connection was not reused")
            // close() does not wait for the idle limit (the agent calls it when its control channel
            // reconnects: after a network loss the kept connection may be dead without knowing it).
            let patient = HTTPSKeptConnection(endpoint: endpoint, idleLimit: .seconds(3600))
            _ = try await patient.request(method: "GET", path: "/healthz", headers: [], body: ByteBuffer())
            try await ConnectionRecordsTests.eventually("the expired connection to go") { proxy.openConnections == 1 }
            await patient.close()
            try await ConnectionRecordsTests.eventually("close() to close it") { proxy.openConnections == 0 }
            #expect(await patient.connectionsOpened == 1)
        }
    }
}
