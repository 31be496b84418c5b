import JumpgateWire
import NIOCore

/// The first handler of one side's pairing connection (docs/BLIND-RELAY.md): sends the pairing line when
/// the connection is up and reads the gateway's answer, `OK` or `NO <reason>`, each on a line. On `OK` it
/// calls `paired`, which adds the end-to-end TLS behind it, and hands whatever followed the answer in the
/// same read (the peer's first TLS bytes) to what it added before it removes itself.
final class PairingAnswerHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The gateway refused the pairing line, with its reason.
    struct Refused: Error, CustomStringConvertible {
        var reason: String
        var description: String { "the gateway refused the pairing: \(self.reason)" }
    }

    /// The longest answer the gateway sends; a longer line is not the gateway.
    static let maximumAnswer = 256

    private let line: PairingLine
    private let paired: (ChannelHandlerContext) throws -> Void
    private let failed: (any Error) -> Void
    private var received = ByteBuffer()
    private var done = false

    init(
        line: PairingLine,
        paired: @escaping (ChannelHandlerContext) throws -> Void,
        failed: @escaping (any Error) -> Void
    ) {
        self.line = line
        self.paired = paired
        self.failed = failed
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(self.line.encoded()), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.done else { return context.fireChannelRead(data) }
        var bytes = self.unwrapInboundIn(data)
        self.received.writeBuffer(&bytes)
        guard let newline = self.received.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if self.received.readableBytes > Self.maximumAnswer {
                self.fail(context, Refused(reason: "the gateway's answer is not a pairing answer"))
            }
            return
        }
        let length = newline - self.received.readerIndex
        let answer = String(decoding: self.received.readSlice(length: length)!.readableBytesView, as: UTF8.self)
        self.received.moveReaderIndex(forwardBy: 1)
        guard answer == "OK" else {
            let reason = answer.hasPrefix("NO ") ? String(answer.dropFirst(3)) : "an unknown answer"
            return self.fail(context, Refused(reason: reason))
        }
        self.done = true
        do {
            try self.paired(context)
        } catch {
            return self.fail(context, error)
        }
        let rest = self.received
        self.received = ByteBuffer()
        if rest.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(rest)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.done {
            self.done = true
            self.failed(Refused(reason: "the gateway closed the connection before it answered"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !self.done else { return context.fireErrorCaught(error) }
        self.fail(context, error)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        self.done = true
        self.failed(error)
        context.close(promise: nil)
    }
}
