import JumpgateNIO
import NIOCore
import Testing

/// The agent's signed requests go over one kept HTTPS connection (``HTTPSKeptConnection``), against a real
/// gateway behind a proxy that can cut connections.
@Suite("Kept HTTPS connections", .serialized)
struct KeptConnectionTests {
    @Test("requests share one kept connection, and one the network lost is replaced without a failed request")
    func reuseAndReplace() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let proxy = try await CuttableProxy(upstreamPort: { lab.gatewayPort })
            defer { proxy.close() }
            var endpoint = try GatewayAPITests.endpoint(lab)
            endpoint.port = proxy.port
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
}
