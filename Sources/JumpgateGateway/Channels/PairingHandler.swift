import CoreMetrics
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore

/// The gateway's end of a pairing connection until it is paired (docs/BLIND-RELAY.md): it reads the
/// pairing line (within ``lineTimeout``, at most ``PairingLine/maximumLength`` bytes), asks the pairing
/// table, and then waits for the partner, is paired with it, or is refused. Paired, both connections get
/// `OK` and a ``BlindGlue`` in this handler's place; refused, the connection gets `NO <reason>` and
/// closes, and the refusal is counted and summed up per source (audited) with the gateway's other
/// refusals. A side sends nothing between its line and the answer: bytes there are refused too.
final class PairingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let lineTimeout: TimeAmount = .seconds(5)

    private enum Phase {
        case line
        case waiting(sessionID: String, role: PairingLine.Role)
        case done
    }

    private let state: GatewayState
    private var logger: Logger
    private var phase = Phase.line
    private var received = ByteBuffer()
    private var deadline: Scheduled<Void>?

    init(state: GatewayState, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        try? PairingKeepalive.apply(to: channel)
        let state = self.state
        self.deadline = context.eventLoop.scheduleTask(in: Self.lineTimeout) {
            state.refused(source: channel.sourceAddress, type: "PairingLineTimeout", keyID: nil)
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        switch self.phase {
        case .line:
            self.received.writeBuffer(&bytes)
            let line: PairingLine
            do {
                guard let parsed = try PairingLine.parse(&self.received) else { return }
                line = parsed
            } catch {
                return self.refuse(context, type: error.rawValue, reason: error.description)
            }
            guard self.received.readableBytes == 0 else {
                return self.refuse(
                    context,
                    type: PairingLine.Refusal.malformed.rawValue,
                    reason: "bytes followed the pairing line before the answer"
                )
            }
            self.deadline?.cancel()
            self.arrived(context, line: line)
        case .waiting:
            self.refuse(
                context,
                type: PairingLine.Refusal.malformed.rawValue,
                reason: "bytes arrived before the partner"
            )
        case .done:
            break
        }
    }

    private func arrived(_ context: ChannelHandlerContext, line: PairingLine) {
        switch self.state.pairingArrived(line, on: context.channel) {
        case .refused(let refusal):
            self.refuse(context, type: refusal.rawValue, reason: refusal.description)
        case .wait(let sessionID):
            self.phase = .waiting(sessionID: sessionID, role: line.role)
            self.logger.debug("pairing: waiting for the partner", metadata: ["jumpgate.session_id": "\(sessionID)"])
        case .paired(let sessionID, let partner):
            self.phase = .done
            self.pair(context, sessionID: sessionID, role: line.role, partner: partner.channel)
        }
    }

    /// Both sides are here: the waiting one (on its own loop, first, so its `OK` goes before any byte the
    /// glue carries to it) and this one get a glue and `OK`. A side that closed meanwhile ends the pair
    /// before it began: the other is closed, and the relay forgets the pair (a glue that is in place
    /// does that when its channel closes; one that could not be put in place does it here).
    private func pair(_ context: ChannelHandlerContext, sessionID: String, role: PairingLine.Role, partner: any Channel)
    {
        let channel = context.channel
        let (client, agent) = role == .client ? (channel, partner) : (partner, channel)
        guard let relay = self.state.relay(sessionID: sessionID) else {
            // The session ended between its offer and its pairing.
            partner.close(promise: nil)
            let refusal = PairingTable<Int>.Refusal.expired
            return self.refuse(context, type: refusal.rawValue, reason: refusal.description)
        }
        guard partner.isActive, relay.attachPair(client: client, agent: agent) else {
            partner.close(promise: nil)
            return context.close(promise: nil)
        }
        let here: SessionRelay.Side = role == .client ? .client : .agent
        let install: @Sendable (any Channel, SessionRelay.Side, any Channel) -> Void = { channel, side, other in
            do {
                guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
                let pipeline = channel.pipeline.syncOperations
                let handler = try pipeline.handler(type: PairingHandler.self)
                handler.phase = .done
                try pipeline.addHandler(BlindGlue(side: side, partner: other, relay: relay), position: .after(handler))
                pipeline.removeHandler(handler, promise: nil)
                channel.writeAndFlush(ByteBuffer(string: "OK\n"), promise: nil)
            } catch {
                channel.close(promise: nil)
                other.close(promise: nil)
                relay.detachPair(client: client)
            }
        }
        if partner.eventLoop.inEventLoop {
            install(partner, here.other, channel)
        } else {
            partner.eventLoop.execute { install(partner, here.other, channel) }
        }
        install(channel, here, partner)
        self.state.setStatus(sessionID: sessionID, .connected)
        self.state.metrics.blindPairs.increment()
        self.logger.info(
            "relay-blind pair attached",
            metadata: ["jumpgate.session_id": "\(sessionID)", "jumpgate.side": "\(here)"]
        )
    }

    private func refuse(_ context: ChannelHandlerContext, type: String, reason: String) {
        if case .waiting(let sessionID, _) = self.phase {
            self.state.pairingDeparted(context.channel, sessionID: sessionID)
        }
        self.phase = .done
        self.deadline?.cancel()
        // Summarised per source per minute with the other refusals (and audited), not logged one by one.
        self.logger.debug("pairing refused", metadata: ["reason": "\(reason)"])
        self.state.refused(source: context.channel.sourceAddress, type: type, keyID: nil)
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "NO \(reason)\n"))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        if case .waiting(let sessionID, _) = self.phase {
            self.state.pairingDeparted(context.channel, sessionID: sessionID)
        }
        self.phase = .done
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
