import JumpgateGateway
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import JumpgateNIO

/// The client's side of the relay-blind path against a stand-in gateway on 127.0.0.1 that answers `OK`
/// and then plays the agent (or not): the session's client secret is sent only inside a TLS session with
/// the pinned certificate, never in clear and never to another one.
@Suite("Relay-blind connector: the client's secret only to the pinned agent")
struct BlindConnectorTests {
    /// Records every byte a connection receives; answers the pairing line with `OK` and then, with a TLS
    /// context, serves TLS.
    final class StandIn: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let received = NIOLockedValueBox(ByteBuffer())
        let tls: NIOSSLContext?
        init(tls: NIOSSLContext?) { self.tls = tls }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = self.unwrapInboundIn(data)
            let first = self.received.withLockedValue { received -> Bool in
                defer { received.writeBuffer(&bytes) }
                return received.readableBytes == 0
            }
            guard first else { return }
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "OK\n")), promise: nil)
            if let tls = self.tls {
                // What follows is TLS: decrypted before this handler from now on.
                try? context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
            }
        }
        var bytes: [UInt8] { self.received.withLockedValue { Array($0.readableBytesView) } }
    }

    static func serve(_ standIn: StandIn) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(standIn) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    /// A TLS server context for the stand-in, and its certificate's DER.
    static func certificate() throws -> (NIOSSLContext, [UInt8]) {
        let certificates = try GatewayCertificates.generate(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let tls = try JumpgateTLS.serverContext(
            certificatePEM: certificates.serverCertificatePEM,
            keyPEM: certificates.serverKeyPEM
        )
        let der = try NIOSSLCertificate.fromPEMBytes(Array(certificates.serverCertificatePEM.utf8))[0].toDERBytes()
        return (tls, der)
    }

    static func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
        let needle = Array(needle.utf8)
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    static func connect(to server: any Channel, pinning hash: String, secret: String) async throws -> any Channel {
        let endpoint = HTTPSEndpoint(
            host: "127.0.0.1",
            port: server.localAddress!.port!,
            sslContext: try JumpgateTLS.clientContext(caFile: nil),
            serverHostname: nil
        )
        let ticket = BlindTicket(
            pairingToken: String(repeating: "T", count: 43),
            side: .client(agentCertificateSHA256: hash, clientSecret: secret)
        )
        return try await endpoint.connectBlind(
            ticket,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            timeout: .seconds(3)
        ) { _ in [] }
    }

    @Test("a peer that is not TLS after OK: the pairing fails, and the secret never went out in clear")
    func notTLS() async throws {
        let standIn = StandIn(tls: nil)
        let server = try await Self.serve(standIn)
        defer { server.close(promise: nil) }
        let secret = String(repeating: "S", count: 43)
        await #expect(throws: (any Error).self) {
            _ = try await Self.connect(to: server, pinning: String(repeating: "0", count: 64), secret: secret)
        }
        #expect(Self.contains(standIn.bytes, "JGPAIR/1 client "), "the pairing line was not sent")
        #expect(!Self.contains(standIn.bytes, secret), "the client secret went out in clear")
    }

    @Test("a TLS peer whose certificate is not the pinned one: the handshake fails, the secret is not sent")
    func wrongCertificate() async throws {
        let (tls, _) = try Self.certificate()
        let standIn = StandIn(tls: tls)
        let server = try await Self.serve(standIn)
        defer { server.close(promise: nil) }
        let secret = String(repeating: "S", count: 43)
        await #expect(throws: (any Error).self) {
            _ = try await Self.connect(to: server, pinning: String(repeating: "0", count: 64), secret: secret)
        }
        // Decrypted, what came after OK would be the secret; nothing came.
        #expect(standIn.bytes.count == Array("JGPAIR/1 client \(String(repeating: "T", count: 43))\n".utf8).count)
    }

    @Test("the pinned certificate: the handshake completes and the secret is the first thing inside TLS")
    func pinnedCertificate() async throws {
        let (tls, der) = try Self.certificate()
        let standIn = StandIn(tls: tls)
        let server = try await Self.serve(standIn)
        defer { server.close(promise: nil) }
        let secret = String(repeating: "S", count: 43)
        let channel = try await Self.connect(to: server, pinning: SigV4.hexSHA256(der), secret: secret)
        defer { channel.close(promise: nil) }
        let line = "JGPAIR/1 client \(String(repeating: "T", count: 43))\n"
        try await ConnectionRecordsTests.eventually("the secret inside TLS") {
            standIn.bytes == Array((line + secret).utf8)
        }
    }

    /// The pin is the whole check (`pinnedCertificate` above completes with it): a CA store would only be
    /// parsed from the system's bundle at every connect and kept for the session, about 1 MiB.
    @Test("the client's end-to-end TLS trusts no CA: the pinned hash is its only check")
    func trustsNoCertificateAuthority() {
        let configuration = JumpgateTLS.blindClientConfiguration
        #expect(configuration.trustRoots == .certificates([]))
        #expect(configuration.additionalTrustRoots.isEmpty)
        #expect(configuration.minimumTLSVersion == .tlsv13)
    }
}
