import CoreMetrics
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The meeting point of one session's two data channels. Frames are relayed verbatim; a frame for a
/// side that is not attached (yet, or while it reconnects) is buffered up to ``bufferLimit`` bytes, and
/// past that the sender is told to pause publication (and what it still sends is dropped) until the
/// other side is back.
///
/// When a side attaches again (a resume), the other side may have lost frames: those in flight to the
/// old connection, and those dropped over the bound. So the other side gets `start_publication`, which
/// a Jumpgate peer on the fast path answers by resending everything unacknowledged (the receiver drops
/// duplicates); official peers recover the same frames with their retransmission timer.
public final class SessionRelay: Sendable {
    public enum Side: Sendable {
        case client
        case agent
        var other: Side { self == .client ? .agent : .client }
    }

    struct Inner {
        var client: (any Channel)?
        var agent: (any Channel)?
        var pendingToClient: [ByteBuffer] = []
        var pendingToAgent: [ByteBuffer] = []
        var pendingBytes = 0
        var agentPaused = false
        var clientPaused = false
        var terminated = false
        /// Bytes relayed toward each side (WebSocket payloads), for the session's record.
        var bytesToAgent: Int64 = 0
        var bytesToClient: Int64 = 0
        /// Read bursts relayed so far: the data path counts, and the once-a-second sweep notes the time
        /// it sees the count change (``lastActivity(now:)``), so no frame reads the clock.
        var activity: UInt64 = 0
        var activitySeen: UInt64 = 0
        /// When the sweep last saw the activity count change (epoch seconds): the idle timeout.
        var lastActivity: Int64 = 0
        /// Bytes handed to the other side's event loop and not yet written there, per receiving side.
        var hopQueuedToAgent = 0
        var hopQueuedToClient = 0
        /// The sender stopped reading because too much waited in hops toward the other side.
        var clientHopPaused = false
        var agentHopPaused = false
        /// Whether the agent's handshake_complete was seen (frames are inspected until it is). A session
        /// restored after a gateway restart had completed its handshake.
        var handshakeSeen = false
        /// Since when no agent data channel is attached (epoch seconds; set at creation, since the agent
        /// has not connected yet), whether one ever was, and whether the client was told it is gone.
        var agentAbsentSince: Int64?
        var agentEverAttached = false
        var agentLossNotified = false
        /// The attached client asked for `jumpgate_agent_status` messages (a Jumpgate client).
        var clientWantsAgentStatus = false
        /// The session's relay-blind pair, while one carries it (``BlindGlue``): client, then agent.
        var pair: (client: any Channel, agent: any Channel)?

        func isPaused(_ side: Side) -> Bool { side == .client ? self.clientPaused : self.agentPaused }

        mutating func setPaused(_ side: Side, _ paused: Bool) {
            if side == .client { self.clientPaused = paused } else { self.agentPaused = paused }
        }

        func channel(_ side: Side) -> (any Channel)? { side == .client ? self.client : self.agent }

        mutating func hopQueued(toward side: Side, _ delta: Int) -> Int {
            if side == .client {
                self.hopQueuedToClient += delta
                return self.hopQueuedToClient
            }
            self.hopQueuedToAgent += delta
            return self.hopQueuedToAgent
        }

        mutating func setHopPaused(_ side: Side, _ paused: Bool) -> Bool {
            let was = side == .client ? self.clientHopPaused : self.agentHopPaused
            if side == .client { self.clientHopPaused = paused } else { self.agentHopPaused = paused }
            return was
        }

        mutating func countRelayed(_ bytes: Int, toward side: Side) {
            if side == .client { self.bytesToClient += Int64(bytes) } else { self.bytesToAgent += Int64(bytes) }
        }
    }

    public let sessionID: String
    let inner = NIOLockedValueBox(Inner())
    private let bufferLimit: Int
    /// Held strongly: the state owns its relays and drops this one when the session ends
    /// (``GatewayState/removeRelay(sessionID:)``), which breaks the cycle.
    private let state: GatewayState
    /// How long a terminated session's relay-blind pair may stay open for the agent to pass the end on.
    static let pairEndGrace: TimeAmount = .seconds(2)
    /// At most this many bytes wait in event-loop hops toward one side before its sender stops reading.
    static let hopLimit = 1 << 20
    private let bytesToAgent: Counter
    private let bytesToClient: Counter
    private let blindBytesToAgent: Counter
    private let blindBytesToClient: Counter

    public init(
        sessionID: String,
        state: GatewayState,
        restored: Bool = false,
        relayedBytes: (Int64, Int64) = (0, 0),
        bufferLimit: Int = 8 << 20
    ) {
        self.sessionID = sessionID
        self.state = state
        self.bufferLimit = bufferLimit
        self.inner.withLockedValue { inner in
            inner.lastActivity = state.clock()  // at creation; then the sweep's clock
            inner.agentAbsentSince = state.clock()
            inner.handshakeSeen = restored
            (inner.bytesToAgent, inner.bytesToClient) = relayedBytes
        }
        self.bytesToAgent = state.metrics.bytesToAgent
        self.bytesToClient = state.metrics.bytesToClient
        self.blindBytesToAgent = state.metrics.blindBytesToAgent
        self.blindBytesToClient = state.metrics.blindBytesToClient
    }

    /// This session's buffered bytes: frames held for an absent side plus both sockets' outbound buffers.
    func sampleBufferedBytes(on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let (pending, channels) = self.inner.withLockedValue { inner in
            (inner.pendingBytes, [inner.client, inner.agent, inner.pair?.client, inner.pair?.agent].compactMap { $0 })
        }
        let outbound = channels.map { channel in
            channel.getOption(ChannelOptions.bufferedWritableBytes).recover { _ in 0 }.hop(to: eventLoop)
        }
        return EventLoopFuture.whenAllSucceed(outbound, on: eventLoop).map { sizes in
            pending + sizes.reduce(0, +)
        }
    }

    /// Attaches a channel; an older channel on the same side is closed (a resumed peer replaces it).
    /// Buffered frames for this side are written; then each side that must resend or may stop pausing
    /// gets `start_publication`.
    /// Returns the sides told to resend (`start_publication`).
    @discardableResult
    public func attach(_ side: Side, channel: any Channel, wantsAgentStatus: Bool = false) -> [Side] {
        var agentBack: (any Channel)?
        var stalePair: (client: any Channel, agent: any Channel)?
        let (previous, pending, wake) = self.inner.withLockedValue {
            inner -> ((any Channel)?, [ByteBuffer], [Side]) in
            // A side back on the WebSocket path: a relay-blind pair still open is half dead (its other
            // side may not know yet): closed, so that both sides resume here.
            stalePair = inner.pair
            inner.pair = nil
            let previous = inner.channel(side)
            var pending: [ByteBuffer] = []
            switch side {
            case .client:
                inner.client = channel
                inner.clientWantsAgentStatus = wantsAgentStatus
                swap(&pending, &inner.pendingToClient)
            case .agent:
                inner.agent = channel
                inner.agentAbsentSince = nil
                inner.agentEverAttached = true
                if inner.agentLossNotified {
                    inner.agentLossNotified = false
                    if inner.clientWantsAgentStatus { agentBack = inner.client }
                }
                swap(&pending, &inner.pendingToAgent)
            }
            let delivered = pending.reduce(0) { $0 + $1.readableBytes }
            inner.pendingBytes -= delivered
            self.state.connections?.release(delivered, http: false)
            inner.countRelayed(delivered, toward: side)
            guard inner.channel(side.other) != nil else { return (previous, pending, []) }
            var wake: [Side] = []
            // The other side resends what this side may have missed (nothing before the handshake ends).
            if inner.handshakeSeen || inner.isPaused(side.other) { wake.append(side.other) }
            // This side was paused while the other was away: both are here now.
            if inner.isPaused(side) { wake.append(side) }
            for woken in wake { inner.setPaused(woken, false) }
            return (previous, pending, wake)
        }
        if let previous, previous !== channel { previous.close(promise: nil) }
        stalePair?.client.close(promise: nil)
        stalePair?.agent.close(promise: nil)
        // The other side may have stopped reading because the old channel on this side was not writable;
        // that channel is gone (NIO reports no writability change for a closed channel): read again.
        self.resume(side.other)
        if let agentBack {
            let status = AgentStatusPayload(status: .back, reason: "The agent reconnected; the session continues.")
            agentBack.writeAndFlush(WebSocketMessage.binary(Self.agentStatusMessage(status)), promise: nil)
        }
        for frame in pending { channel.write(WebSocketMessage.binary(frame), promise: nil) }
        channel.flush()
        for woken in wake {
            self.channel(woken)?.writeAndFlush(
                WebSocketMessage.binary(Self.publicationMessage(.startPublication)),
                promise: nil
            )
        }
        return wake
    }

    func detach(_ side: Side, channel: any Channel) {
        let now = self.state.clock()
        self.inner.withLockedValue { inner in
            switch side {
            case .client where inner.client === channel: inner.client = nil
            case .agent where inner.agent === channel:
                inner.agent = nil
                inner.agentAbsentSince = now
            default: break
            }
        }
        // What the other side sends now is held for this one (bounded, then paused): read it again.
        self.resume(side.other)
    }

    /// A relay-blind pair now carries the session: both sides are present, the agent's handshake is
    /// taken as done (a later resume on the WebSocket path asks each side to resend). False if the
    /// session has ended.
    func attachPair(client: any Channel, agent: any Channel) -> Bool {
        let attached = self.inner.withLockedValue { inner -> Bool in
            guard !inner.terminated else { return false }
            inner.pair = (client, agent)
            inner.agentAbsentSince = nil
            inner.agentEverAttached = true
            inner.handshakeSeen = true
            inner.activity &+= 1
            return true
        }
        return attached
    }

    /// The pair ended (either connection closed): the agent is absent until it comes back, and the
    /// session is Disconnected until its client resumes, as when a client's data channel drops.
    func detachPair(client: any Channel) {
        _ = self.endPair { $0.client === client }
    }

    /// The pair, whichever it is, taken off the session for the caller to close (a side left it and asked
    /// for a new one), as ``detachPair(client:)`` ends it.
    func takePair() -> (client: any Channel, agent: any Channel)? {
        self.endPair { _ in true }
    }

    private func endPair(
        _ matches: ((client: any Channel, agent: any Channel)) -> Bool
    ) -> (client: any Channel, agent: any Channel)? {
        let now = self.state.clock()
        let (ended, disconnected) = self.inner.withLockedValue {
            inner -> ((client: any Channel, agent: any Channel)?, Bool) in
            guard let pair = inner.pair, matches(pair) else { return (nil, false) }
            inner.pair = nil
            if inner.agent == nil { inner.agentAbsentSince = now }
            return (pair, inner.client == nil)
        }
        if disconnected, self.state.session(id: self.sessionID)?.status == .connected {
            self.state.setStatus(sessionID: self.sessionID, .disconnected)
        }
        return ended
    }

    /// One read burst of `bytes` went through the pair toward `side` (TLS bytes: the pair's record says
    /// so): the session's byte counts, the metrics and the idle timeout's activity.
    func countBlind(_ bytes: Int, toward side: Side) {
        self.inner.withLockedValue { inner in
            inner.activity &+= 1
            inner.countRelayed(bytes, toward: side)
        }
        (side == .agent ? self.bytesToAgent : self.bytesToClient).increment(by: bytes)
        (side == .agent ? self.blindBytesToAgent : self.blindBytesToClient).increment(by: bytes)
    }

    /// Whether a relay-blind pair carries the session now.
    var isPaired: Bool { self.inner.withLockedValue { $0.pair != nil } }

    /// Whether the session has ended here (``terminate(reason:)``).
    var isTerminated: Bool { self.inner.withLockedValue { $0.terminated } }

    /// Whether `side` is attached on the WebSocket path.
    func isOnWebSocket(_ side: Side) -> Bool { self.inner.withLockedValue { $0.channel(side) != nil } }

    /// How long no agent data channel has been attached, or nil while one is.
    func agentAbsence(now: Int64) -> AgentLoss.Absence? {
        self.inner.withLockedValue { inner in
            guard let since = inner.agentAbsentSince else { return nil }
            return AgentLoss.Absence(
                seconds: now - since,
                everAttached: inner.agentEverAttached,
                clientNotified: inner.agentLossNotified
            )
        }
    }

    /// The agent waits in a relay-blind pairing for this session: present (``AgentLoss/absentSince(_:waitingInPairing:now:)``).
    func agentWaitingInPairing(now: Int64) {
        self.inner.withLockedValue { inner in
            inner.agentAbsentSince = AgentLoss.absentSince(inner.agentAbsentSince, waitingInPairing: true, now: now)
        }
    }

    /// Tells a Jumpgate client that the agent is gone (once per absence); official clients are not told.
    func notifyAgentLost(reason: String, waitSeconds: Int64) {
        let client = self.inner.withLockedValue { inner -> (any Channel)? in
            // No client attached (it is resuming): try again at the next sweep.
            guard !inner.agentLossNotified, let client = inner.client else { return nil }
            inner.agentLossNotified = true
            return inner.clientWantsAgentStatus ? client : nil
        }
        guard let client else { return }
        let status = AgentStatusPayload(status: .lost, reason: reason, seconds: waitSeconds)
        client.writeAndFlush(WebSocketMessage.binary(Self.agentStatusMessage(status)), promise: nil)
    }

    static func agentStatusMessage(_ status: AgentStatusPayload) -> ByteBuffer {
        SSMMessage(
            messageType: .jumpgateAgentStatus,
            createdDate: Self.nowMilliseconds(),
            flags: 0,
            payload: status.encoded()
        ).encoded()
    }

    func channel(_ side: Side) -> (any Channel)? {
        self.inner.withLockedValue { $0.channel(side) }
    }

    /// Relays one read burst of frames from `side`, carried out with one lock, one count and one write
    /// burst: on the receiving channel's event loop directly, or with one hop per burst when that channel
    /// lives on another loop. Returns false when the sender should stop reading until
    /// ``SessionRelay/resume(_:)``: the receiver is not writable, or too much waits in hops toward it.
    public func forward(_ frames: [ByteBuffer], from side: Side) -> Bool {
        let bytes = frames.reduce(0) { $0 + $1.readableBytes }
        var handshakeNowSeen = false
        let (target, pause) = self.inner.withLockedValue { inner -> ((any Channel)?, Bool) in
            // Ended: what still arrives is dropped (and never takes from the shared budget).
            guard !inner.terminated else { return (nil, false) }
            inner.activity &+= 1
            if side == .agent, !inner.handshakeSeen, frames.contains(where: Self.isHandshakeComplete) {
                inner.handshakeSeen = true
                handshakeNowSeen = true
            }
            if let target = inner.channel(side.other) {
                inner.countRelayed(bytes, toward: side.other)
                return (target, false)
            }
            for frame in frames {
                guard inner.pendingBytes + frame.readableBytes <= self.bufferLimit,
                    self.state.connections?.reserve(frame.readableBytes, http: false) ?? true
                else {
                    // Full: the sender is asked to stop, and the rest is dropped. It is resent when the
                    // other side is back (start_publication, see attach), or by an official peer's timer.
                    guard !inner.isPaused(side) else { return (nil, false) }
                    inner.setPaused(side, true)
                    return (nil, true)
                }
                inner.pendingBytes += frame.readableBytes
                // Held past the read: a copy, not a slice of the sender's TLS buffer, which the TLS
                // handler reuses for its next read (frames written to the partner at once need no copy).
                let held = frame.ownedCopy()
                if side == .agent { inner.pendingToClient.append(held) } else { inner.pendingToAgent.append(held) }
            }
            return (nil, false)
        }
        if handshakeNowSeen { self.state.handshakeCompleted(sessionID: self.sessionID) }
        if pause, let sender = self.channel(side) {
            self.state.metrics.framesPaused.increment()
            sender.writeAndFlush(WebSocketMessage.binary(Self.publicationMessage(.pausePublication)), promise: nil)
        }
        guard let target else { return true }
        (side == .client ? self.bytesToAgent : self.bytesToClient).increment(by: bytes)
        if target.eventLoop.inEventLoop {
            Self.write(frames, to: target)
            return target.isWritable
        }
        // Another loop: one hop for the whole burst, counted until it is written, so the sender's
        // backpressure sees what waits in the hop as well as what waits in the socket.
        let receiver = side.other
        let queued = self.inner.withLockedValue { $0.hopQueued(toward: receiver, bytes) }
        let overLimit = queued > Self.hopLimit
        if overLimit { _ = self.inner.withLockedValue { $0.setHopPaused(side, true) } }
        let frames = frames.map { $0.ownedCopy() }  // handed to another loop: past the read
        target.eventLoop.execute {
            Self.write(frames, to: target)
            let resumeSender = self.inner.withLockedValue { inner -> Bool in
                let left = inner.hopQueued(toward: receiver, -bytes)
                // Not also waiting for the target to be writable: a target replaced meanwhile reports no
                // writability change. A sender resumed too early forwards one burst, is told to stop again
                // (forward returns false) and is resumed by the target's writability change.
                guard left <= Self.hopLimit / 2 else { return false }
                return inner.setHopPaused(side, false)
            }
            if resumeSender { self.resume(side) }
        }
        return !overLimit && target.isWritable
    }

    private static func write(_ frames: [ByteBuffer], to channel: any Channel) {
        for frame in frames { channel.write(WebSocketMessage.binary(frame), promise: nil) }
        channel.flush()
    }

    /// The channel on `side` may read again (its partner became writable).
    func resume(_ side: Side) {
        guard let channel = self.channel(side) else { return }
        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in channel.read() }
    }

    /// Bytes relayed so far toward the agent and toward the client.
    var relayedBytes: (toAgent: Int64, toClient: Int64) {
        self.inner.withLockedValue { ($0.bytesToAgent, $0.bytesToClient) }
    }

    /// When a frame last went through (epoch seconds), as the once-a-second sweep saw it: it notes `now`
    /// when the burst count changed since its last look.
    func lastActivity(now: Int64) -> Int64 {
        self.inner.withLockedValue { inner in
            if inner.activity != inner.activitySeen {
                inner.activitySeen = inner.activity
                inner.lastActivity = now
            }
            return inner.lastActivity
        }
    }

    /// Bytes waiting for an absent side: the per-session buffered-bytes figure.
    public var bufferedBytes: Int { self.inner.withLockedValue { $0.pendingBytes } }

    /// Ends the session: `channel_closed` with the reason to both sides, then the sockets close. A
    /// relay-blind pair is closed (the gateway cannot write into it): both sides then find the session
    /// ended when they try to resume.
    func terminate(reason: String) {
        var pair: (client: any Channel, agent: any Channel)?
        let channels = self.inner.withLockedValue { inner -> [(Side, any Channel)] in
            guard !inner.terminated else { return [] }
            inner.terminated = true
            pair = inner.pair
            inner.pendingToAgent = []
            inner.pendingToClient = []
            self.state.connections?.release(inner.pendingBytes, http: false)
            inner.pendingBytes = 0
            return [(.client, inner.client), (.agent, inner.agent)].compactMap { side, channel in
                channel.map { (side, $0) }
            }
        }
        if let pair {
            // The agent passes the end on inside the pair (it has channel_closed on its control channel,
            // below in GatewayAPI.terminate) and closes it; the gateway closes it after a grace if not.
            pair.client.eventLoop.scheduleTask(in: Self.pairEndGrace) {
                pair.client.close(promise: nil)
                pair.agent.close(promise: nil)
            }
        }
        for (_, channel) in channels {
            let closed = ChannelClosedPayload(
                createdDate: Self.isoNow(),
                destinationID: "",
                sessionID: self.sessionID,
                output: reason
            )
            let message = SSMMessage(
                messageType: .channelClosed,
                createdDate: Self.nowMilliseconds(),
                flags: 0,
                payload: closed.encoded()
            )
            let frame = message.encoded()
            channel.writeAndFlush(WebSocketMessage.binary(frame)).whenComplete { _ in
                channel.triggerUserOutboundEvent(
                    WebSocketCloseRequest(code: 1000, reason: "session ended"),
                    promise: nil
                )
            }
        }
        self.state.removeRelay(sessionID: self.sessionID)
    }

    /// An agent's output_stream_data carrying handshake_complete, read from the header without decoding.
    static func isHandshakeComplete(_ frame: ByteBuffer) -> Bool {
        SSMMessage.peekMessageType(frame) == .outputStreamData
            && SSMMessage.peekPayloadType(frame) == .handshakeComplete
    }

    static func publicationMessage(_ type: MessageType) -> ByteBuffer {
        let message = SSMMessage(
            messageType: type,
            createdDate: nowMilliseconds(),
            flags: SSMMessageFlags.acknowledge,
            payload: ByteBuffer()
        )
        let frame = message.encoded()
        return frame
    }

    static func nowMilliseconds() -> UInt64 { WallClock.nowMilliseconds() }

    static func isoNow() -> String { WallClock.iso8601(epochSeconds: WallClock.nowSeconds()) }
}
