import JumpgateTestUtilities
import JumpgateWire
import Logging
import NIOCore
import NIOEmbedded

@testable import JumpgateNIO

/// What a port session told its owner. On the agent side, `answer` decides what happens to a requested
/// stream (attach a target, refuse it, or leave it dialling).
final class SessionEvents: PortSessionDelegate {
    var established: NegotiatedSession?
    var requested: [SmuxStreamID] = []
    var failed: [(id: SmuxStreamID, reason: String?)] = []
    var ended: (reason: String, byPeer: Bool)?
    var activated = 0
    /// What the session refused from its peer, by type (honest traffic: nothing).
    var refused: [SessionRefusal: Int] = [:]
    var answer: (PortSession, SmuxStreamID) -> Void = { _, _ in }
    /// Terminal sessions: sizes the agent was given, exit codes the client was given, and what the agent
    /// does when its terminal ends (`onTerminalEnded`).
    var sizes: [TerminalSize] = []
    var exitCodes: [Int32] = []
    /// Standard error text as it arrived (a non-interactive command's).
    var standardError = ""
    var terminalEnds = 0
    var onTerminalEnded: (PortSession) -> Void = { _ in }

    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {
        self.established = negotiated
    }
    func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        self.requested.append(id)
        self.answer(session, id)
    }
    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {
        self.failed.append((id, reason))
    }
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        self.ended = (reason, byPeer)
    }
    func basicConnectionActivated(_ session: PortSession, channel: any Channel) {
        self.activated += 1
    }
    func messageRefused(_ session: PortSession, _ refusal: SessionRefusal) {
        self.refused[refusal, default: 0] += 1
    }
    func terminalResized(_ session: PortSession, to size: TerminalSize) {
        self.sizes.append(size)
    }
    func standardErrorReceived(_ session: PortSession, _ text: ByteBuffer) {
        self.standardError += String(buffer: text)
    }

    func exitCodeReceived(_ session: PortSession, _ code: Int32) {
        self.exitCodes.append(code)
    }
    func terminalEnded(_ session: PortSession) {
        self.terminalEnds += 1
        self.onTerminalEnded(session)
    }
}

/// The outbound end of a stand-in TCP socket: EmbeddedChannel has no half-close, so a close of the output
/// is recorded here (and succeeds) instead of failing.
final class SocketEnd: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var outputClosed = false

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .output {
            self.outputClosed = true
            promise?.succeed()
            return
        }
        context.close(mode: mode, promise: promise)
    }
}

/// A stand-in TCP connection (a laptop's local connection or an agent's target) on the shared loop.
final class FakeSocket {
    let channel: EmbeddedChannel
    let end = SocketEnd()
    /// Everything the session wrote to it so far.
    var received = ByteBuffer()

    let loop: EmbeddedEventLoop

    init(loop: EmbeddedEventLoop) throws {
        self.loop = loop
        self.channel = EmbeddedChannel(loop: loop)
        try self.channel.pipeline.syncOperations.addHandler(self.end)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
    }

    /// Bytes arriving from the socket's far end, read in one event-loop wake-up: the tasks it queued (the
    /// session's flush of the data channel) run at its end, as NIO runs them after a wake-up's I/O.
    func send(_ bytes: ByteBuffer) throws {
        try self.channel.writeInbound(bytes)
        self.loop.run()
    }

    /// The far end closed its output (TCP FIN).
    func sendEOF() {
        self.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        self.loop.run()
    }

    /// Collects what the session wrote; returns the new bytes' count.
    @discardableResult
    func collect() throws -> Int {
        var count = 0
        while var bytes = try self.channel.readOutbound(as: ByteBuffer.self) {
            count += bytes.readableBytes
            self.received.writeBuffer(&bytes)
        }
        return count
    }
}

/// A client and an agent port session back to back over EmbeddedChannels on one EmbeddedEventLoop, with
/// the gateway's part played by ``pump(_:)``: no sockets, no threads, time only when a test moves it.
final class BackToBack {
    enum Side { case client, agent }

    let loop = EmbeddedEventLoop()
    var clientData: EmbeddedChannel
    var agentData: EmbeddedChannel
    let client: PortSession
    let agent: PortSession
    let clientEvents = SessionEvents()
    let agentEvents = SessionEvents()
    /// Targets the agent attached, by stream.
    var targets: [SmuxStreamID: FakeSocket] = [:]
    /// Every channel the pair made, finished when the pair goes: a session handler and its channel hold
    /// each other until the channel closes, so an unfinished one leaks both (LeakSanitizer reported it).
    private var channels: [EmbeddedChannel] = []
    /// The sessions talk through ``SSMStreamFramer`` on a plain byte stream (the relay-blind path), not
    /// in WebSocket messages; ``pump(_:)`` then delivers the bytes in seeded random cuts.
    let framed: Bool
    var cuts = HostileFrames.Generator(state: 1)

    static let forwarding: [(key: String, value: String)] = [
        ("portNumber", "5432"), ("type", "LocalPortForwarding"), ("localPortNumber", "0"),
    ]
    static let standardStream: [(key: String, value: String)] = [("portNumber", "5432")]

    init(
        clientExtensions: JumpgateExtensions = .all,
        agentExtensions: JumpgateExtensions = .all,
        properties: [(key: String, value: String)] = BackToBack.forwarding,
        sessionType: String = "Port",
        resumable: Bool = false,
        framed: Bool = false
    ) throws {
        self.framed = framed
        var logger = Logger(label: "back-to-back")
        logger.logLevel = .critical
        self.client = PortSession(
            sessionID: "s-1",
            role: .client(
                .init(clientVersion: JumpgateVersion.clientProtocolVersion, supportedExtensions: clientExtensions)
            ),
            logger: logger
        )
        self.agent = PortSession(
            sessionID: "s-1",
            role: .agent(
                .init(
                    agentVersion: "3.3.9999.0",
                    sessionType: sessionType,
                    properties: properties,
                    offeredExtensions: agentExtensions
                )
            ),
            logger: logger
        )
        self.client.delegate = self.clientEvents
        self.agent.delegate = self.agentEvents
        if resumable {
            self.client.onDisconnect = { _ in }
            self.agent.onDisconnect = { _ in }
        }
        self.clientData = EmbeddedChannel(loop: self.loop)
        self.agentData = EmbeddedChannel(loop: self.loop)
        self.channels = [self.clientData, self.agentData]
        // The agent dials each requested stream at once unless a test says otherwise.
        self.agentEvents.answer = Self.attachAnswer(self)
        try self.attach(self.client, to: self.clientData)
        try self.attach(self.agent, to: self.agentData)
    }

    private func attach(_ session: PortSession, to channel: EmbeddedChannel) throws {
        if self.framed { try channel.pipeline.syncOperations.addHandler(SSMStreamFramer()) }
        try channel.pipeline.syncOperations.addHandler(session)
    }

    /// Carries messages between the data channels, as the gateway does, until neither has more to send.
    /// `filter` sees each message and returns what to deliver instead (nothing: lost; twice: duplicated).
    @discardableResult
    func pump(_ filter: (Side, ByteBuffer) -> [ByteBuffer] = { [$1] }) throws -> Int {
        if self.framed { return try self.pumpBytes(filter) }
        var moved = 0
        while true {
            var progress = false
            while let message = try self.clientData.readOutbound(as: WebSocketMessage.self) {
                progress = true
                moved += 1
                guard case .binary(let frame) = message else { continue }
                for delivered in filter(.client, frame) {
                    try self.agentData.writeInbound(WebSocketMessage.binary(delivered))
                }
            }
            while let message = try self.agentData.readOutbound(as: WebSocketMessage.self) {
                progress = true
                moved += 1
                guard case .binary(let frame) = message else { continue }
                // The gateway consumes the agent's session state; it never reaches the client.
                if SSMMessage.peekMessageType(frame) == .agentSessionState { continue }
                for delivered in filter(.agent, frame) {
                    try self.clientData.writeInbound(WebSocketMessage.binary(delivered))
                }
            }
            if !progress { return moved }
        }
    }

    /// ``pump(_:)`` for framed sessions: each buffer a session writes is one whole message (the filter
    /// sees it as such); what is delivered goes over as one byte stream, cut at random places. Nothing is
    /// taken out: on this path no gateway reads the stream (the agent sends no session state here).
    private func pumpBytes(_ filter: (Side, ByteBuffer) -> [ByteBuffer]) throws -> Int {
        var moved = 0
        while true {
            var progress = false
            for side in [Side.client, .agent] {
                let (from, to) = side == .client ? (self.clientData, self.agentData) : (self.agentData, self.clientData)
                var stream = ByteBuffer()
                while let message = try from.readOutbound(as: ByteBuffer.self) {
                    progress = true
                    moved += 1
                    for var delivered in filter(side, message) { stream.writeBuffer(&delivered) }
                }
                while stream.readableBytes > 0 {
                    let cut = min(stream.readableBytes, 1 + Int(self.cuts.next() % 20_000))
                    try to.writeInbound(stream.readSlice(length: cut)!)
                }
            }
            if !progress { return moved }
        }
    }

    /// Pumps, lets the sessions' timers run (acknowledgement intervals) and pumps again until quiet.
    func settle(_ filter: (Side, ByteBuffer) -> [ByteBuffer] = { [$1] }) throws {
        for _ in 0..<50 {
            let moved = try self.pump(filter)
            self.loop.advanceTime(by: .milliseconds(25))
            if moved == 0, try self.pump(filter) == 0 { return }
        }
    }

    deinit {
        for channel in self.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
        // Closing runs the sessions' close work; shutting the loop down drops any timer still scheduled
        // (a scheduled task holds its closure, and with it the session).
        try? self.loop.syncShutdownGracefully()
    }

    /// A stand-in socket on the pair's loop, finished with the pair.
    func socket() throws -> FakeSocket {
        let socket = try FakeSocket(loop: self.loop)
        self.channels.append(socket.channel)
        return socket
    }

    /// Client: a new local connection, opened as a stream.
    /// `speaksFirst`: its first bytes count as already waiting when it was accepted (the client asks a real
    /// socket; a stand-in one has none).
    func connect(speaksFirst: Bool = false) throws -> (FakeSocket, SmuxStreamID) {
        let socket = try self.socket()
        let id = try self.client.openStream(for: socket.channel, bytesWaiting: speaksFirst)
        return (socket, id)
    }

    /// Replaces one side's data channel, as a resume does: the old channel closes, the same session handler
    /// goes onto a new one (and resends what was not acknowledged).
    func reconnect(_ side: Side) throws {
        let old = side == .client ? self.clientData : self.agentData
        _ = try? old.finish()
        let fresh = EmbeddedChannel(loop: self.loop)
        self.channels.append(fresh)
        try self.attach(side == .client ? self.client : self.agent, to: fresh)
        if side == .client { self.clientData = fresh } else { self.agentData = fresh }
    }
}

extension BackToBack {
    /// The default answer to a stream request: attach a fresh target.
    static func attachAnswer(_ pair: BackToBack) -> (PortSession, SmuxStreamID) -> Void {
        { [unowned pair] session, id in
            do {
                let target = try pair.socket()
                pair.targets[id] = target
                try session.attach(target.channel, to: id)
            } catch {
                session.refuse(id, reason: "\(error)")
            }
        }
    }
}

extension ByteBuffer {
    /// `count` bytes of a pattern that depends on the position, so a lost, repeated or reordered piece
    /// shows.
    static func pattern(_ count: Int, seed: UInt8 = 0) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        for i in 0..<count { buffer.writeInteger(UInt8(truncatingIfNeeded: i &* 31 &+ i >> 8) &+ seed) }
        return buffer
    }
}
