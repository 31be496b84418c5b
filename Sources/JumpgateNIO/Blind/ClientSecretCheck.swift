import JumpgateWire
import NIOCore

/// The peer on a pairing connection did not present the session's client secret: someone who won the
/// pairing race with a token that was not theirs.
public struct ClientSecretMismatch: Error, CustomStringConvertible {
    public var description: String { "the peer on the pairing connection did not present the session's client secret" }
}

/// The agent's end of a pairing connection, right behind its TLS: the first bytes inside TLS must be the
/// session's client secret (``PairingLine/tokenLength`` characters), whose SHA-256 the gateway gave the
/// agent on its control channel. Only then does the session begin (`accepted` adds its handlers behind
/// this one); the agent says nothing before, not even its handshake request, which names the target. A
/// wrong secret is someone who won the pairing race with a token read off the wire: the connection closes
/// and `rejected` hears why.
final class ClientSecretCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let expectedSHA256: String
    private let accepted: (ChannelHandlerContext) throws -> Void
    private let rejected: (any Error) -> Void
    private var received = ByteBuffer()
    private var done = false

    init(
        expectedSHA256: String,
        accepted: @escaping (ChannelHandlerContext) throws -> Void,
        rejected: @escaping (any Error) -> Void
    ) {
        self.expectedSHA256 = expectedSHA256
        self.accepted = accepted
        self.rejected = rejected
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.done else { return context.fireChannelRead(data) }
        var bytes = self.unwrapInboundIn(data)
        let wanted = PairingLine.tokenLength - self.received.readableBytes
        self.received.writeImmutableBuffer(bytes.readSlice(length: min(wanted, bytes.readableBytes))!)
        guard self.received.readableBytes == PairingLine.tokenLength else { return }
        self.done = true
        let presented = SigV4.hexSHA256(self.received.readableBytesView)
        guard Self.constantTimeEqual(presented, self.expectedSHA256) else {
            self.rejected(ClientSecretMismatch())
            return context.close(promise: nil)
        }
        do {
            try self.accepted(context)
        } catch {
            self.rejected(error)
            return context.close(promise: nil)
        }
        if bytes.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(bytes)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.done {
            self.done = true
            self.rejected(PairingAnswerHandler.Refused(reason: "the connection closed before the client's secret came"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !self.done else { return context.fireErrorCaught(error) }
        self.done = true
        self.rejected(error)
        context.close(promise: nil)
    }

    /// Compares two hex digests without stopping at the first difference.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<x.count { difference |= x[i] ^ y[i] }
        return difference == 0
    }
}
