import Foundation
import JumpgateNIO
import JumpgateWire
import NIOCore
import Testing

/// AES-128-GCM on both TLS hops (issue 12), checked by OpenSSL on the other end: the TLS context that the
/// client, `jumpgate forward` and the agent all use (`JumpgateTLS.clientContext`) negotiates
/// TLS_AES_128_GCM_SHA256 with a server that has no preference of its own, and the gateway picks it for a
/// client that offers it first (as Jumpgate's and Go's, the official plugin's, do on AES hardware).
///
/// Only on a CPU with AES instructions: without them BoringSSL puts ChaCha20-Poly1305 first, by design
/// (it is faster there), and so would the official plugin's Go.
@Suite(
    "TLS: AES-128-GCM on the client's and the agent's hops",
    .serialized,
    .enabled(if: CPUFeatures.hasAES, "this CPU has no AES instructions")
)
struct TLSCipherTests {
    @Test("Jumpgate's client TLS context gets TLS_AES_128_GCM_SHA256 from OpenSSL's s_server")
    func clientSide() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let tls = lab.directory + "/gw/tls"
            // -www: the answer to a GET is a page saying which cipher this connection uses.
            let server = try ChildProcess(
                "s_server",
                [
                    "s_server", "-accept", "127.0.0.1:0", "-cert", tls + "/server.pem", "-key",
                    tls + "/server-key.pem", "-www", "-naccept", "1",
                ],
                executable: "openssl"
            )
            defer { server.stop() }
            // "ACCEPT 127.0.0.1:<port>": the port it bound (asking for a free one first raced with other binds).
            let accept = try server.waitForLine { $0.hasPrefix("ACCEPT ") }
            let port = try #require(accept.split(separator: ":").last.flatMap { Int($0) })
            let endpoint = HTTPSEndpoint(
                host: "127.0.0.1",
                port: port,
                sslContext: try JumpgateTLS.clientContext(caFile: lab.caFile),
                serverHostname: JumpgateTLS.serverHostname(for: "127.0.0.1")
            )
            let response = try await endpoint.request(
                method: "GET",
                path: "/",
                headers: [("Host", endpoint.hostHeader)],
                body: ByteBuffer()
            )
            let page = String(buffer: response.body)
            #expect(page.contains("Cipher is TLS_AES_128_GCM_SHA256"), "\(page.prefix(2000))")
        }
    }

    @Test("the gateway picks TLS_AES_128_GCM_SHA256 for a client that offers it first")
    func gatewaySide() async throws {
        try await EndToEndTests.withLab { lab, _ in
            for suites in [
                "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
            ] {
                let client = try ChildProcess(
                    "s_client",
                    [
                        "s_client", "-connect", "127.0.0.1:\(lab.gatewayPort)", "-CAfile", lab.caFile,
                        "-ciphersuites", suites, "-verify_return_error",
                    ],
                    executable: "openssl"
                )
                defer { client.stop() }
                let line = try client.waitForLine { $0.contains("Cipher is") }
                #expect(line.contains("TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"), "\(line)")
            }
        }
    }
}

/// What this machine's CPU offers, from /proc/cpuinfo.
enum CPUFeatures {
    static var hasAES: Bool {
        let text = procFileText("/proc/cpuinfo") ?? ""
        return text.split(separator: "\n").contains {
            $0.hasPrefix("flags") && $0.split(separator: " ").contains("aes")
        }
    }
}
