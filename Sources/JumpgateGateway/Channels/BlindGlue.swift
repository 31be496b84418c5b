import JumpgateNIO
import NIOCore

/// The gateway's part of a relay-blind pair (docs/BLIND-RELAY.md): what one side sends goes to the other
/// as it is, TLS records the gateway cannot read. Each read is written to the partner as it comes and
/// flushed once per read burst, with nothing kept between (one event-loop hop per burst when the partner
/// lives on another loop, the burst's reads held until then), and the burst is counted once on the session's
/// relay (its byte counts and idle timeout). While the partner cannot take more, this side stops reading;
/// the partner's glue starts it again. When either connection closes, so does the other.
///
/// SPI for the benchmark package (`HandlerBenchmarks`, its allocation thresholds); the gateway puts it in
/// place itself (`PairingHandler`).
@_spi(Benchmarks) public final class BlindGlue: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let side: SessionRelay.Side
    private let partner: any Channel
    private let relay: SessionRelay
    /// Reads of the burst in progress, held only when the partner lives on another event loop (they go
    /// over in one hop); on the same loop each read is written to the partner at once.
    private var burst: [ByteBuffer] = []
    private var burstBytes = 0

    public init(side: SessionRelay.Side, partner: any Channel, relay: SessionRelay) {
        self.side = side
        self.partner = partner
        self.relay = relay
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        self.burstBytes += bytes.readableBytes
        if self.partner.eventLoop.inEventLoop {
            self.partner.write(bytes, promise: nil)
        } else {
            self.burst.append(bytes)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        guard self.burstBytes > 0 else { return }
        self.relay.countBlind(self.burstBytes, toward: self.side.other)
        self.burstBytes = 0
        let partner = self.partner
        if partner.eventLoop.inEventLoop {
            partner.flush()
        } else {
            let frames = self.burst
            self.burst = []
            partner.eventLoop.execute { Self.write(frames, to: partner) }
        }
        guard !partner.isWritable else { return }
        // Stop reading until the partner drains; it may have drained meanwhile (another loop): look again.
        let channel = context.channel
        channel.setOption(ChannelOptions.autoRead, value: false).whenSuccess {
            if partner.isWritable { Self.resume(channel) }
        }
    }

    private static func write(_ frames: [ByteBuffer], to channel: any Channel) {
        for frame in frames { channel.write(frame, promise: nil) }
        channel.flush()
    }

    static func resume(_ channel: any Channel) {
        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in channel.read() }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { Self.resume(self.partner) }
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        // The partner closes once what was written to it is out (the agent's channel_closed, its last
        // bytes), or after a few seconds if it does not take them.
        let partner = self.partner
        let flushed = partner.eventLoop.makePromise(of: Void.self)
        partner.writeAndFlush(ByteBuffer(), promise: flushed)
        let deadline = partner.eventLoop.scheduleTask(in: .seconds(5)) { partner.close(promise: nil) }
        flushed.futureResult.whenComplete { _ in
            deadline.cancel()
            partner.close(promise: nil)
        }
        self.relay.detachPair(client: self.side == .client ? context.channel : self.partner)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
