import JumpgateWire
import NIOCore

/// A complete WebSocket data message.
public enum WebSocketMessage: Sendable, Equatable {
    case text(ByteBuffer)
    case binary(ByteBuffer)
}

/// Outbound user event: close the WebSocket with this code and reason, then the connection.
public struct WebSocketCloseRequest: Sendable {
    public var code: UInt16
    public var reason: String
    public init(code: UInt16, reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// Inbound user event: the peer closed the WebSocket (or broke the protocol) with this code and reason.
public struct WebSocketClosedEvent: Sendable {
    public var code: UInt16
    public var reason: String
    /// This side closed because the peer broke the protocol (a bad or oversized frame): a refusal.
    public var violation = false

    public init(code: UInt16, reason: String, violation: Bool = false) {
        self.code = code
        self.reason = reason
        self.violation = violation
    }
}

/// Carries out ``WebSocketConnectionStateMachine`` on a channel that already completed the HTTP upgrade:
/// decodes frames from raw (TLS plaintext) bytes, answers pings, validates and answers close frames,
/// sends keepalive pings and closes an idle connection. Outbound messages are encoded (masked when this
/// is the client) into one buffer per flush, so TLS sees few, large writes.
public final class WebSocketHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = WebSocketMessage
    public typealias OutboundIn = WebSocketMessage
    public typealias OutboundOut = ByteBuffer

    public enum Role: Sendable {
        case client
        case server
    }

    public struct Configuration: Sendable {
        public var maximumFrameSize: Int = 1 << 20
        public var pingInterval: TimeAmount = .seconds(20)
        /// Close when nothing at all was read for this long.
        public var idleTimeout: TimeAmount = .seconds(60)
        /// Write out the coalesced buffer once it reaches this size, even before a flush.
        public var writeBatchSize: Int = 256 * 1024
        /// A smaller limit for the first data message (a server's unauthenticated peer sends only its
        /// opening frame first); nil: none.
        public var firstMessageMaximumSize: Int?
        /// Client: data frames of at least ``WebSocketHandler/zeroCopyThreshold`` bytes go out with the
        /// all-zero masking key, written as they are behind their header, where every other frame is
        /// copied, masked with a fresh random key, into the batch buffer. That copy was a tenth of a
        /// sending client's or agent's CPU (docs/PERFORMANCE.md). It departs from RFC 6455, which asks for
        /// an unpredictable key on every frame (section 10.3: so that bytes a script chose cannot pass for
        /// HTTP to an intermediary that does not know WebSocket; the key is on the wire, so anyone in the
        /// path sees it is zero). Jumpgate's frames carry SSM messages, which begin with their fixed binary
        /// header, never with bytes from a local connection, and travel inside TLS to the gateway or to a
        /// load balancer that ends TLS and forwards the upgraded connection as a WebSocket. Set by
        /// ``HTTPSEndpoint/connectWebSocket(pathAndQuery:headers:eventLoop:configuration:makeHandlers:)``
        /// unless `JUMPGATE_WEBSOCKET_MASK=random` is in the environment.
        public var zeroMaskForLargeFrames = false
        /// Hand out unmasked (and zero-key) payloads of frames complete in one read as slices of the TLS
        /// handler's read buffer, without copying them (``WebSocketFrameReader``). Only for a consumer that
        /// never keeps a payload past its `channelReadComplete` without copying it: the gateway's data
        /// channels, whose relay writes each read burst into the partner's TLS before the read ends, and
        /// ``PortSession`` (``portSession``).
        public var borrowsUnmaskedPayloads = false
        public init() {}

        /// A client's or an agent's data channel, read by ``PortSession``: it writes what a read carries to
        /// local connections that had nothing queued and flushes them at `channelReadComplete`, and copies
        /// whatever it keeps longer (``ByteBuffer/ownedCopy()``), so payloads are borrowed.
        public static var portSession: Configuration {
            var configuration = Configuration()
            configuration.borrowsUnmaskedPayloads = true
            return configuration
        }
    }

    private let role: Role
    private let configuration: Configuration
    private var reader: WebSocketFrameReader
    private var machine: WebSocketConnectionStateMachine
    private var pending: ByteBuffer?
    private var pendingPromise: EventLoopPromise<Void>?
    /// When a read was last seen by the timer; reads only set ``readSinceTick`` (no clock per read).
    private var lastRead: NIODeadline = .now()
    private var readSinceTick = false
    private var timer: RepeatedTask?
    /// Masking keys, for the client role only: made at the first key, so that a server-side handler (every
    /// data and control channel the gateway accepts) makes no `getrandom` calls for a seed it never uses.
    private lazy var rng = RandomBytePool()
    private var spareKey: UInt32?
    /// The latest ping's payload while the socket is not writable (answered once it is).
    private var deferredPong: ByteBuffer?

    public init(role: Role, configuration: Configuration = .init()) {
        self.role = role
        self.configuration = configuration
        self.reader = WebSocketFrameReader(
            role: role == .client ? .client : .server,
            maximumFrameSize: configuration.maximumFrameSize,
            firstDataFrameMaximumSize: configuration.firstMessageMaximumSize,
            borrowsUnmaskedPayloads: configuration.borrowsUnmaskedPayloads
        )
        self.machine = WebSocketConnectionStateMachine(maximumMessageSize: configuration.maximumFrameSize)
        self.machine.firstMessageMaximumSize = configuration.firstMessageMaximumSize
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.lastRead = .now()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleRepeatedTask(
            initialDelay: self.configuration.pingInterval,
            delay: self.configuration.pingInterval
        ) { _ in
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    private func timerFired(context: ChannelHandlerContext) {
        if self.readSinceTick {
            self.readSinceTick = false
            self.lastRead = .now()
        }
        if (try? context.channel.syncOptions?.getOption(ChannelOptions.autoRead)) == false {
            // Not reading on purpose (backpressure: the other side is slow): silence is not idleness.
            self.lastRead = .now()
        }
        if NIODeadline.now() - self.lastRead > self.configuration.idleTimeout {
            self.sendClose(
                context: context,
                code: WebSocketConnectionStateMachine.CloseCode.goingAway,
                reason: "no data or pong for \(self.configuration.idleTimeout.nanoseconds / 1_000_000_000) s"
            )
            return
        }
        guard self.machine.isOpen else { return }
        self.enqueueFrame(context: context, opcode: .ping, payload: ByteBuffer(string: "keepalive"), promise: nil)
        self.flushPending(context: context)
    }

    // MARK: inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.readSinceTick = true
        do {
            // Payloads come out copied (and unmasked), or borrowed where the configuration allows it:
            // NIOSSL writes its next plaintext into the same buffer, and a slice kept past this read would
            // make it copy the whole buffer (measured: a third of the agent's time).
            try self.reader.read(self.unwrapInboundIn(data)) { frame in
                self.frameReceived(frame, context: context)
            }
        } catch let error as WireError {
            let code: UInt16 = error.code == .webSocketFrameTooLarge ? 1009 : 1002
            self.fail(context: context, code: code, reason: error.reason)
        } catch {
            self.fail(context: context, code: 1002, reason: "\(error)")
        }
    }

    private func frameReceived(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        switch self.machine.frameReceived(frame) {
        case .none:
            break
        case .deliver(let opcode, let payload):
            context.fireChannelRead(self.wrapInboundOut(opcode == .text ? .text(payload) : .binary(payload)))
        case .sendPong(let payload):
            // Only while the peer reads what it is sent: a peer that pings and never reads would otherwise
            // pile up pongs without bound. RFC 6455 §5.5.3 allows answering only the latest ping.
            guard context.channel.isWritable else {
                self.deferredPong = payload
                return
            }
            self.enqueueFrame(context: context, opcode: .pong, payload: payload, promise: nil)
            self.flushPending(context: context)
        case .sendCloseAndClose(let code, let reason):
            // No close from the peer and not a normal close: this side is closing on the peer's violation
            // (a bad fragment sequence, an oversized message, a broken close frame).
            let violation =
                self.machine.peerCloseReason == nil && code != WebSocketConnectionStateMachine.CloseCode.normal
            let peerReason = self.machine.peerCloseReason ?? reason
            context.fireUserInboundEventTriggered(
                WebSocketClosedEvent(code: code, reason: peerReason, violation: violation)
            )
            self.writeCloseAndClose(context: context, code: code, reason: reason)
        case .close:
            context.close(promise: nil)
        }
    }

    private func fail(context: ChannelHandlerContext, code: UInt16, reason: String) {
        context.fireUserInboundEventTriggered(WebSocketClosedEvent(code: code, reason: reason, violation: true))
        if self.machine.closeInitiated(code: code, reason: reason) != nil {
            self.writeCloseAndClose(context: context, code: code, reason: reason)
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .binary(let payload):
            self.enqueueFrame(context: context, opcode: .binary, payload: payload, promise: promise)
        case .text(let payload):
            self.enqueueFrame(context: context, opcode: .text, payload: payload, promise: promise)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        self.flushPending(context: context)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let payload = self.deferredPong, self.machine.isOpen {
            self.deferredPong = nil
            self.enqueueFrame(context: context, opcode: .pong, payload: payload, promise: nil)
            self.flushPending(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let request = event as? WebSocketCloseRequest {
            self.sendClose(context: context, code: request.code, reason: request.reason)
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    private func sendClose(context: ChannelHandlerContext, code: UInt16, reason: String) {
        guard self.machine.closeInitiated(code: code, reason: reason) != nil else { return }
        self.enqueueFrame(
            context: context,
            opcode: .close,
            payload: .webSocketCloseBody(code: code, reason: reason),
            promise: nil
        )
        self.flushPending(context: context)
        // Give the peer a moment to answer, then close regardless.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    private func writeCloseAndClose(context: ChannelHandlerContext, code: UInt16, reason: String) {
        self.enqueueFrame(
            context: context,
            opcode: .close,
            payload: .webSocketCloseBody(code: code, reason: reason),
            promise: nil
        )
        let promise = context.eventLoop.makePromise(of: Void.self)
        self.flushPending(context: context, promise: promise)
        let channel = context.channel
        promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }

    private func nextMaskingKey() -> WebSocketMaskingKey {
        if let key = self.spareKey {
            self.spareKey = nil
            return WebSocketMaskingKey(networkWord: key)
        }
        let bits = self.rng.next() as UInt64
        self.spareKey = UInt32(truncatingIfNeeded: bits >> 32)
        return WebSocketMaskingKey(networkWord: UInt32(truncatingIfNeeded: bits))
    }

    /// Unmasked payloads at least this large (and, with ``Configuration/zeroMaskForLargeFrames``, a
    /// client's) are written as they are, behind their header, instead of copied into the batch buffer: a
    /// 64 KiB payload makes four full TLS records either way, and the copy was a fifth of the relay's work
    /// (docs/PERFORMANCE.md).
    static let zeroCopyThreshold = 16 * 1024

    private func enqueueFrame(
        context: ChannelHandlerContext,
        opcode: WebSocketOpcode,
        payload: ByteBuffer,
        promise: EventLoopPromise<Void>?
    ) {
        let length = payload.readableBytes
        let zeroCopy = !opcode.isControl && length >= Self.zeroCopyThreshold
        if zeroCopy, self.role == .server || self.configuration.zeroMaskForLargeFrames {
            let key: WebSocketMaskingKey? = self.role == .client ? .zero : nil
            let headerSize = WebSocketFrame.headerSize(payloadLength: length, masked: key != nil)
            // The header joins the batch if it fits, or goes in a buffer of its own size.
            self.reservePending(context: context, size: headerSize, newCapacity: headerSize)
            self.pending!.writeWebSocketFrameHeader(opcode: opcode, payloadLength: length, maskingKey: key)
            self.writePending(context: context)
            context.write(self.wrapOutboundOut(payload), promise: promise)
            return
        }
        let key = self.role == .client ? self.nextMaskingKey() : nil
        let size = WebSocketFrame.headerSize(payloadLength: length, masked: key != nil) + length
        self.reservePending(context: context, size: size, newCapacity: self.batchCapacity(opcode: opcode, size: size))
        self.pending!.writeWebSocketFrame(opcode: opcode, payload: payload, maskingKey: key)
        if let promise {
            if let existing = self.pendingPromise {
                existing.futureResult.cascade(to: promise)
            } else {
                self.pendingPromise = promise
            }
        }
        if self.pending!.readableBytes >= self.configuration.writeBatchSize {
            self.writePending(context: context)
        }
    }

    /// Makes room for `size` more bytes in the batch buffer, starting one of `newCapacity` bytes if there is
    /// none. A frame that does not fit sends the batch on first (growing it would copy everything in it
    /// again).
    private func reservePending(context: ChannelHandlerContext, size: Int, newCapacity: Int) {
        if let pending = self.pending, pending.writableBytes < size {
            self.writePending(context: context)
        }
        if self.pending == nil { self.pending = context.channel.allocator.buffer(capacity: newCapacity) }
    }

    /// A control frame or a small message alone gets a buffer of its own size class (a batch buffer per
    /// pong would make a ping flood cost a batch per frame); a large data frame means a bulk transfer, and
    /// gets room for a whole batch.
    private func batchCapacity(opcode: WebSocketOpcode, size: Int) -> Int {
        if opcode.isControl { return size }
        if size >= Self.zeroCopyThreshold { return max(size, self.configuration.writeBatchSize) }
        return max(size, min(self.configuration.writeBatchSize, 16 * 1024))
    }

    private func writePending(context: ChannelHandlerContext, promise extra: EventLoopPromise<Void>? = nil) {
        var promise = self.pendingPromise
        self.pendingPromise = nil
        if let extra {
            if let promise { promise.futureResult.cascade(to: extra) } else { promise = extra }
        }
        guard let buffer = self.pending else {
            promise?.succeed()
            return
        }
        self.pending = nil
        context.write(self.wrapOutboundOut(buffer), promise: promise)
    }

    private func flushPending(context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        self.writePending(context: context, promise: promise)
        context.flush()
    }
}
