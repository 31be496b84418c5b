import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// The agent's check of the client secret at the start of the relay-blind path's TLS stream: the secret
/// however it is cut, what follows it passed on, a wrong or short one refused before the session exists.
@Suite struct ClientSecretCheckTests {
    static let secret = String(repeating: "s", count: 43)

    final class Outcome {
        var accepted = 0
        var rejected: [any Error] = []
    }

    /// A channel with the check, whose `accepted` adds a collector behind it.
    static func channel(expecting secret: String = Self.secret) throws -> (EmbeddedChannel, Outcome) {
        let outcome = Outcome()
        let channel = EmbeddedChannel()
        let check = ClientSecretCheck(expectedSHA256: SigV4.hexSHA256(Array(secret.utf8))) { context in
            outcome.accepted += 1
        } rejected: { error in
            outcome.rejected.append(error)
        }
        try channel.pipeline.syncOperations.addHandler(check)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, outcome)
    }

    @Test("the secret cut at every byte, with the session's first bytes after it: accepted once, the rest passed on")
    func acceptsTheSecretHoweverCut() throws {
        let bytes = Array((Self.secret + "first message").utf8)
        for cut in 1..<Self.secret.count {
            let (channel, outcome) = try Self.channel()
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<cut]))
            #expect(outcome.accepted == 0)
            try channel.writeInbound(ByteBuffer(bytes: bytes[cut...]))
            #expect(outcome.accepted == 1 && outcome.rejected.isEmpty, "cut \(cut)")
            #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "first message"), "cut \(cut)")
            #expect(channel.isActive)
        }
    }

    @Test("a wrong secret closes at once and is reported as ClientSecretMismatch; nothing is passed on")
    func refusesAWrongSecret() throws {
        let (channel, outcome) = try Self.channel()
        try channel.writeInbound(ByteBuffer(string: String(repeating: "x", count: 43) + "more"))
        #expect(outcome.accepted == 0)
        #expect(outcome.rejected.first is ClientSecretMismatch)
        #expect(!channel.isActive)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
    }

    @Test("a connection that closes before its secret is whole is refused, not accepted")
    func refusesAShortOne() throws {
        let (channel, outcome) = try Self.channel()
        try channel.writeInbound(ByteBuffer(string: String(Self.secret.prefix(20))))
        channel.pipeline.fireChannelInactive()
        #expect(outcome.accepted == 0 && outcome.rejected.count == 1)
    }

    @Test("the comparison is of the whole digest")
    func constantTimeEqual() {
        #expect(ClientSecretCheck.constantTimeEqual("abc", "abc"))
        #expect(!ClientSecretCheck.constantTimeEqual("abc", "abd"))
        #expect(!ClientSecretCheck.constantTimeEqual("abc", "abcd"))
    }
}
