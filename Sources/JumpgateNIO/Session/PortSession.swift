import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// One end of a port-forwarding session, on the WebSocket channel's event loop. Two pure state machines
/// decide everything: ``SessionStateMachine`` (the handshake, reliable delivery, resume, deadlines, the
/// end) and ``StreamTable`` (the streams and their local connections). This handler carries out their
/// actions: it writes to the data channel and to local connections, runs one timer at the earliest
/// deadline, and tells its owner (``PortSessionDelegate``).
public final class PortSession: ChannelInboundHandler {
    public typealias InboundIn = WebSocketMessage
    public typealias OutboundOut = WebSocketMessage
    public typealias Role = SessionStateMachine.Role

    public let sessionID: String
    /// The session level: every decision about messages, acknowledgements and resume is the machine's.
    var machine: SessionStateMachine
    /// The action list `withSession` reuses.
    var spareSessionActions: [SessionStateMachine.Action] = []
    /// Whether the session's end was carried out (the machine's `.ended`); later actions are ignored.
    var finished = false
    /// The streams and their local connections' state: every decision about them is the table's.
    var table: StreamTable
    /// The sockets the table's connection ids name.
    var connections: [StreamTable.ConnectionID: any Channel] = [:]
    /// The action list `withStreams` reuses.
    var spareActions: [StreamTable.Action] = []
    /// smux frames out of the peer's output messages (mux mode, once established).
    var muxParser: SmuxFrameParser?
    var context: ChannelHandlerContext?
    /// The session's event loop, kept while no data channel is attached: its clock is the session's (an
    /// EmbeddedEventLoop's virtual time in tests). A resumed session stays on the same loop.
    var loop: (any EventLoop)?
    /// One timer at the earliest deadline the state machine returns (acknowledgement interval, resend,
    /// handshake timeout); none while there is nothing to wait for.
    var timer: Scheduled<Void>?
    /// The deadline the timer is set for (nil: no timer; an idle session has none).
    var timerDeadline: NIODeadline?
    /// Which scheduled task is the current one: a cancelled task that was already due may still run, and
    /// must not take the place of the one set after it.
    var timerGeneration: UInt64 = 0
    /// How often the timer fired (tests: an idle session's never does).
    var timerFirings = 0
    /// Held strongly until the session ends (the agent keeps no other reference), then released.
    public var delegate: (any PortSessionDelegate)?
    /// Set by an owner that can reconnect the data channel. When the channel drops while the session is
    /// open, this is called (on the event loop) instead of ending the session: streams stay open, what is
    /// sent meanwhile is held, and re-adding this handler to a new data channel on the same event loop
    /// resends every unacknowledged message. Without it, a drop ends the session.
    public var onDisconnect: ((PortSession) -> Void)?
    var logger: Logger

    public init(sessionID: String, role: Role, logger: Logger) {
        self.sessionID = sessionID
        self.machine = SessionStateMachine(
            sessionID: sessionID,
            role: role,
            wallClockMilliseconds: WallClock.nowMilliseconds
        )
        self.table = StreamTable(isAgent: self.machine.isAgent)
        var logger = logger
        logger[metadataKey: "jumpgate.session_id"] = "\(sessionID)"
        self.logger = logger
    }

    /// Reliable delivery's state (the send window; tests read its bounds).
    var reliability: ReliableDeliveryStateMachine { self.machine.reliability }
    var negotiated: NegotiatedSession? { self.machine.negotiated }
    var ended: Bool { self.machine.isEnded }
    var isAgent: Bool { self.machine.isAgent }

    /// Runs `body` on the session state machine where it is stored, for reads on the per-message path.
    /// A method or computed property called on `self.machine` (or through an accessor such as ``reliability``
    /// that returns part of it) runs on a copy: a read of a struct stored in a class copies it out, retaining
    /// and then releasing every reference it holds. A stored property read directly is not copied whole.
    /// `perf` found such copies in ``armTimer()`` at every read burst (twelfth session, docs/PERFORMANCE.md).
    /// The access is a modify access, in place: `body` must not reach `self.machine` again, not even to read
    /// it (through ``ended``, ``isAgent``, ``negotiated`` or ``reliability``), or the exclusivity check traps.
    @inline(__always)
    func inMachine<Result>(_ body: (inout SessionStateMachine) -> Result) -> Result { body(&self.machine) }

    /// The stream table's counterpart of ``inMachine(_:)``.
    @inline(__always)
    func inTable<Result>(_ body: (inout StreamTable) -> Result) -> Result { body(&self.table) }

    /// The session's local traffic so far. Read on the session's event loop.
    public var traffic: PortSessionTraffic {
        var traffic = PortSessionTraffic()
        traffic.openConnections = self.table.openConnections
        traffic.totalConnections = self.table.totalConnections
        traffic.bytesIn = self.table.bytesIn
        traffic.bytesOut = self.table.bytesOut
        return traffic
    }

    public var eventLoop: (any EventLoop)? { self.context?.eventLoop }
    public var negotiatedSession: NegotiatedSession? { self.negotiated }

    // MARK: channel lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop = context.eventLoop
        // A resumed data channel stays unread while the local connections are slow (the receive bound).
        if self.table.receiveBound.isPaused { Self.setReading(context.channel, false) }
        // On the relay-blind path (messages framed by SSMStreamFramer) no gateway takes the agent's session
        // state out of the stream.
        let blind = (try? context.pipeline.syncOperations.handler(type: SSMStreamFramer.self)) != nil
        self.onBlindPath = blind
        self.withSession { machine, actions in
            machine.sendsSessionState = !blind
            machine.dataChannelAttached(now: self.now, into: &actions)
        }
        self.armTimer()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.dataChannelLost(context, reason: "the data channel closed")
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.dataChannelLost(context, reason: "the data channel closed")
        context.fireChannelInactive()
    }

    /// The data channel `context` belongs to is gone: resume through the owner if it can, else end.
    func dataChannelLost(_ context: ChannelHandlerContext, reason: String) {
        guard self.context === context else { return }  // an old channel going away after a resume
        self.reading = false
        for connection in self.unflushed { connection.channel.flush() }
        self.unflushed.removeAll()
        self.cancelTimer()
        self.context = nil
        let canResume = self.onDisconnect != nil
        self.withSession { machine, actions in
            machine.dataChannelLost(reason: reason, canResume: canResume, into: &actions)
        }
    }

    /// Whether the session is over (ended by either side); an owner stops resuming then.
    public var isEnded: Bool { self.ended }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? WebSocketClosedEvent, closed.code != 1000 {
            self.logger.info(
                "data channel closed by WebSocket",
                metadata: ["code": "\(closed.code)", "reason": "\(closed.reason)"]
            )
            if closed.code == 1008 { self.machine.dataChannelRefused(reason: closed.reason) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.onDisconnect == nil {
            self.end(reason: "data channel error: \(error)", byPeer: false)
        } else {
            self.logger.info("data channel error", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }

    // MARK: inbound messages

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .binary(let frame) = self.unwrapInboundIn(data) else { return }
        self.reading = true
        let withholdsOutput = self.inTable { table in table.withholdsBasicOutput }
        self.withSession { machine, actions in
            machine.frameReceived(frame, withholdsOutput: withholdsOutput, now: self.now, into: &actions)
        }
        // Acknowledgements, window updates and target writes go out together at channelReadComplete.
    }

    /// Something from the peer was refused: dropped (or, for a smux violation, the session ended), logged
    /// at debug here and counted by the owner, which logs a summary per session per minute (the agent).
    func refused(_ refusal: SessionRefusal, _ detail: String) {
        self.logger.debug("refused a message", metadata: ["refusal": "\(refusal.rawValue)", "detail": "\(detail)"])
        self.delegate?.messageRefused(self, refusal)
    }

    /// Whether the attached data channel is the relay-blind path (``SSMStreamFramer``, no gateway reading).
    var onBlindPath = false
    /// Whether the session's data channel is (or, once lost, was) a relay-blind pair.
    public var isOnBlindPath: Bool { self.onBlindPath }

    /// Whether a data-channel read is being processed, and the local connections written to meanwhile.
    var reading = false
    var unflushed: [UnflushedConnection] = []

    /// Whether a local connection's read burst is being handled (its messages are flushed at the end of the
    /// event-loop wake-up: ``flushAfterLoopTick()``).
    var inTCPReadBurst = false
    /// A flush of the data channel waits for the end of this event-loop wake-up (``flushAfterLoopTick()``).
    var loopTickFlushQueued = false
    /// The task that flushes at the wake-up's end, made once per session. Weak: a task still queued when the
    /// session goes must not keep it, nor find it gone. A session that ended meanwhile flushed already
    /// (``finish(reason:byPeer:)``).
    lazy var loopTickFlush: () -> Void = { [weak self] in
        guard let self, self.loopTickFlushQueued else { return }
        self.loopTickFlushQueued = false
        self.context?.flush()
    }

    /// Client: local connections accepted while another one is being served.
    var basicWaiting: [any Channel] = []

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.reading = false
        // By index, not over a copy: a copy would make removeAll allocate a new list at every read burst.
        // `reading` is already false, so nothing is appended meanwhile; a list emptied by a re-entrant
        // close (handlerRemoved) ends the loop.
        var index = 0
        while index < self.unflushed.count {
            let channel = self.unflushed[index].channel
            index += 1
            channel.flush()
        }
        self.unflushed.removeAll(keepingCapacity: true)
        context.flush()
        self.armTimer()
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Resends wait while the data channel is not writable (see armTimer).
        self.armTimer()
        context.fireChannelWritabilityChanged()
    }

    /// Ends the session from this side with `reason` (for example the agent shutting down): the delegate
    /// reports it and the data channel closes. Call on the session's event loop.
    public func shutdown(reason: String) {
        self.end(reason: reason, byPeer: false)
    }

    /// The gateway ended the session (channel_closed outside the data channel, or a refused reconnect):
    /// ends it as ended by the peer. Call on the session's event loop. On the relay-blind path the gateway
    /// cannot put its channel_closed into the stream, so the agent passes it on to the client first: the
    /// client ends with the gateway's reason, as on the WebSocket path, instead of finding the session gone
    /// when it tries to resume.
    public func closedByGateway(reason: String) {
        if self.isAgent, self.onBlindPath, !self.ended, let context = self.context {
            let payload = ChannelClosedPayload(
                createdDate: WallClock.iso8601(epochSeconds: WallClock.nowSeconds()),
                destinationID: "",
                sessionID: self.sessionID,
                output: reason
            )
            let message = SSMMessage(
                messageType: .channelClosed,
                createdDate: WallClock.nowMilliseconds(),
                flags: 0,
                payload: payload.encoded()
            )
            context.writeAndFlush(self.wrapOutboundOut(.binary(message.encoded())), promise: nil)
        }
        self.end(reason: reason, byPeer: true)
    }

    /// Client: Ctrl+C. Sends the TerminateSession flag, as the official plugin does.
    public func terminate() {
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.terminateSession.encoded())
        self.context?.flush()
    }

    // MARK: ending

    func end(reason: String, byPeer: Bool) {
        self.withSession { machine, actions in machine.end(reason: reason, byPeer: byPeer, into: &actions) }
    }

    /// Carries out the machine's `.ended`: the session is over with these connections still open, so what
    /// their remote end sent last may be lost: they are reset (RST), never ended with a FIN that would
    /// look like a complete answer. A terminal session's stream (a program's terminal or pipes, the
    /// user's terminal or standard output) has no such end: it is closed once what was written is out
    /// (`StreamTable.endAll`).
    func finish(reason: String, byPeer: Bool) {
        guard !self.finished else { return }
        self.finished = true
        self.onDisconnect = nil
        self.cancelTimer()
        self.withStreams { table, actions in table.endAll(into: &actions) }
        for channel in self.basicWaiting { channel.close(promise: nil) }
        self.basicWaiting.removeAll()
        self.delegate?.sessionEnded(self, reason: reason, byPeer: byPeer)
        self.delegate = nil
        // What this wake-up's local reads sent leaves before the close (TLS's close does not flush), as it did
        // when each read flushed at its end; the queued flush then finds nothing to do.
        if self.loopTickFlushQueued {
            self.loopTickFlushQueued = false
            self.context?.flush()
        }
        self.context?.close(promise: nil)
    }
}

/// A local connection written to during a data-channel read, flushed at its end: what the read wrote to it,
/// and whether the read's large payloads go to it as they are (``PortSession/lendsRead(_:to:)``; nil until the
/// first one).
struct UnflushedConnection {
    let channel: any Channel
    var written = 0
    var lends: Bool?
}
