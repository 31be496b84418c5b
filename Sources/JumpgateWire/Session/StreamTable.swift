import NIOCore

/// The streams of one port session, as a pure state machine: which local connection each smux stream
/// (or basic mode's one connection) is glued to, what waits to be sent on it, what arrived before its
/// connection was up, and how its two ends close. The smux session (``SmuxSession``), the receive bound
/// (``ReceiveBound``) and the agent's refusals (``StreamRefusals``) live inside it.
///
/// The session handler tells it what happened (a message from the peer, a read, an end of input or a
/// close on a local connection, a write it carried out) and carries out the ``Action``s it returns, in
/// order; local connections are named by ``ConnectionID`` (the handler keeps the sockets). Sending stream
/// data is a loop the handler drives, because reliable delivery decides how much may go: while it can
/// send, ``nextChunk(on:)`` says what the next message carries and ``writeChunk(_:into:)`` moves those
/// bytes into it; ``pumped(_:into:)`` then says what follows (a FIN, reading again).
///
/// A table is created before the handshake (with no mode) and configured by ``establish(_:into:)``.
public struct StreamTable: Sendable {
    /// One local connection. Basic mode serves several on stream 0, one after another; each has its own
    /// id, so a finished connection's late events never touch the next one.
    public typealias ConnectionID = UInt64

    /// How a local connection closes.
    public enum Closing: Sendable, Hashable {
        /// Half-close: no more writes (TCP FIN), reading goes on.
        case output
        /// Close it once what was written to it is on the socket.
        case all
    }

    public enum Action: Sendable, Hashable {
        /// Send this smux frame (SYN, FIN, UPD) in a control stream message.
        case sendFrame(SmuxFrame)
        /// Send this flag in a control stream message.
        case sendFlag(FlagPayload)
        /// Send the reason a stream could not be connected (`connect-errors`).
        case sendConnectError(ConnectErrorPayload)
        /// Write to the local connection. With `confirm`, report the write's completion through
        /// ``localWriteCompleted(_:count:success:into:)`` (smux v1 and basic mode: the receive bound counts
        /// it until then); without, report the socket's writability right after through
        /// ``localWritten(_:_:count:socketWritable:)`` (smux v2: the window bounds it).
        case write(ConnectionID, SmuxStreamID, ByteBuffer, confirm: Bool)
        /// Close the local connection (after what was written to it).
        case close(ConnectionID, Closing)
        /// The session ended with this connection open: reset it (RST), never a FIN that would look like
        /// a complete answer.
        case reset(ConnectionID)
        /// Read the local connection again (what it sent is on its way).
        case resumeReading(ConnectionID)
        /// Send what waits on this stream (its window opened).
        case pump(SmuxStreamID)
        /// Agent: connect this stream to its target (then ``attach(_:into:)`` or ``refuse(_:reason:into:)``).
        case dial(SmuxStreamID)
        /// Client: the agent could not connect this stream; `reason` is its own, when it sent one.
        case streamFailed(SmuxStreamID, reason: String?)
        /// Client, basic mode: the connection being served ended; serve the next waiting one
        /// (``open(into:)``), if any.
        case serveNextWaiting
        /// Stop (false) or restart (true) reading the data channel (the receive bound).
        case readDataChannel(Bool)
        /// The session cannot go on.
        case endSession(reason: String)
        /// Agent, terminal session: the terminal closed and its last output is sent; the session ends once
        /// the program's exit status is known.
        case terminalEnded
    }

    struct Stream: Sendable {
        /// Also the id of the local connection attached to it, if one is.
        let serial: ConnectionID
        var attached = false
        /// Bytes read from the local connection that could not be sent yet (window or buffer full).
        var backlog = ByteQueue()
        var readPaused = false
        /// The local connection sent its last byte (EOF or closed).
        var localEOF = false
        /// The local connection is gone; its backlog may still be draining into the window.
        var localGone = false
        /// Data (and a FIN) that arrived before the local connection was up; bounded by the smux window,
        /// and in smux v1 and basic mode by the receive bound.
        var early: [ByteBuffer] = []
        var earlyBytes = 0
        var earlyFIN = false
        /// smux v2: bytes written to the connection while it was not writable, not yet given back to the
        /// peer's window.
        var unconsumed = 0
        /// Client: the stream's opening frames (SYN, and in smux v2 its window), held to go ahead of its
        /// first data in one message, because the connection's first bytes were already waiting when it
        /// was accepted (``open(into:dataWaiting:)``). Empty once sent.
        var opening: [SmuxFrame] = []

        init(serial: ConnectionID) { self.serial = serial }
    }

    /// Basic mode's one stream.
    public static let basicStreamID = SmuxStreamID(0)

    public let isAgent: Bool
    /// Nil until the handshake negotiated it.
    public private(set) var mode: PortSessionMode?
    var halfClose = false
    var connectErrors = false
    /// The largest stream payload this end sends.
    var maximumPayload = JumpgateExtensions.officialPayloadSize
    var mux: SmuxSession?
    var streams: [SmuxStreamID: Stream] = [:]
    var refusals = StreamRefusals()
    var lastSerial: ConnectionID = 0
    /// What waits for local sockets; past its limit the data channel is not read (smux v1, basic mode).
    public internal(set) var receiveBound: ReceiveBound

    /// Local connections opened (client) or dialled (agent) since the session started.
    public internal(set) var totalConnections = 0
    /// Bytes read from local connections (into the tunnel), and written to them (out of it).
    public internal(set) var bytesIn: Int64 = 0
    public internal(set) var bytesOut: Int64 = 0

    public init(isAgent: Bool, receiveBound: ReceiveBound = ReceiveBound()) {
        self.isAgent = isAgent
        self.receiveBound = receiveBound
    }

    public var isBasic: Bool { self.mode == .basic }
    /// A terminal session (a shell): basic mode's one stream is a PTY on the agent and the user's terminal
    /// on the client, both attached at the start, and the session ends with the program.
    public private(set) var isTerminal = false

    /// Local connections attached now.
    public var openConnections: Int { self.streams.values.count(where: \.attached) }

    /// What this end's smux v2 stream windows grew beyond their starting size, all together: what it may
    /// have to hold for readers that stop, past the starting windows (bounded by the growth budget).
    public var grownWindowBytes: UInt32 { self.mux?.grownWindowBytes ?? 0 }

    /// Whether reading stream `id`'s local connection waits for the window or the send buffer.
    public func isReadPaused(_ id: SmuxStreamID) -> Bool { self.streams[id]?.readPaused ?? false }

    /// Whether `connection` is still stream `id`'s local connection.
    public func owns(_ id: SmuxStreamID, _ connection: ConnectionID) -> Bool {
        guard let stream = self.streams[id] else { return false }
        return stream.attached && stream.serial == connection
    }

    /// Streams with something to send or a paused reader: pumped again when the send buffer reopens.
    public var blockedStreams: [SmuxStreamID] {
        self.streams.compactMap { $0.value.readPaused || !$0.value.backlog.isEmpty ? $0.key : nil }
    }

    /// Whether smux knows stream `id` (open in at least one direction).
    public func isMuxStreamOpen(_ id: SmuxStreamID) -> Bool { self.mux?.isOpen(id) ?? false }

    /// The handshake is done: the mode and extensions decide how streams work from now on.
    public mutating func establish(_ negotiated: NegotiatedSession, into actions: inout [Action]) {
        self.mode = negotiated.mode
        self.halfClose = negotiated.extensions.contains(.halfClose)
        self.connectErrors = negotiated.extensions.contains(.connectErrors)
        self.maximumPayload = negotiated.maximumPayloadSize(sentByAgent: self.isAgent)
        self.isTerminal = negotiated.isTerminal && negotiated.mode == .basic
        switch negotiated.mode {
        case .basic:
            // The agent dials the destination right after the handshake (spec §7.5); a terminal session's
            // agent starts the program and its client opens the user's terminal (what arrives first waits).
            if self.isAgent || self.isTerminal {
                self.streams[Self.basicStreamID] = Stream(serial: self.newSerial())
                actions.append(.dial(Self.basicStreamID))
            }
        case .mux(let version, _):
            // smux v2 bounds each stream with its window; v1 and basic mode need the session-wide bound.
            self.receiveBound.isEnabled = version < 2
            self.mux = SmuxSession(configuration: .init(version: version, role: self.isAgent ? .server : .client))
        }
        self.evaluateReceiveBound(into: &actions)
    }

    mutating func newSerial() -> ConnectionID {
        self.lastSerial &+= 1
        return self.lastSerial
    }

    // MARK: opening, attaching, refusing

    /// Client: a local connection was accepted. Returns its stream and connection id, or nil in basic
    /// mode while another connection is served (it waits, unread, as with the official plugin; serve it
    /// at ``Action/serveNextWaiting``). Throws when the session is not in a mode that takes connections.
    ///
    /// `dataWaiting`: the connection's first bytes had arrived when it was accepted (an application that
    /// speaks first: HTTP, TLS, PostgreSQL). Its SYN then goes in one message with them, at the first
    /// ``nextChunk(on:)``, instead of a message of its own: one message fewer per connection through the
    /// gateway and the agent. The read that takes them is the next one, so the SYN waits no longer than
    /// that: if the connection ends first, the SYN goes ahead of its FIN, and if the data cannot go (the
    /// window or the send buffer is full), it goes alone at ``pumped(_:into:)``. An application that waits
    /// for the server (MySQL, SMTP, FTP) has sent nothing, and its SYN goes at once, so the dial is never
    /// held.
    public mutating func open(
        into actions: inout [Action],
        dataWaiting: Bool = false
    ) throws(WireError) -> (SmuxStreamID, ConnectionID)? {
        if self.isBasic {
            guard self.streams[Self.basicStreamID] == nil else { return nil }
            var stream = Stream(serial: self.newSerial())
            stream.attached = true
            self.streams[Self.basicStreamID] = stream
            self.totalConnections += 1
            return (Self.basicStreamID, stream.serial)
        }
        guard self.mux != nil else { throw WireError(.smuxProtocolViolation, "the session is not in mux mode") }
        // Mutated in place (a copy would copy smux's stream dictionary).
        let (id, frames) = try self.mux!.openStream()
        var stream = Stream(serial: self.newSerial())
        stream.attached = true
        if dataWaiting {
            stream.opening = frames
        } else {
            for frame in frames { actions.append(.sendFrame(frame)) }
        }
        self.streams[id] = stream
        self.totalConnections += 1
        return (id, stream.serial)
    }

    /// Agent: the target connection for stream `id` is up. Returns its connection id, or nil when the
    /// stream is gone meanwhile (close the connection). What arrived early is written to it now.
    public mutating func attach(_ id: SmuxStreamID, into actions: inout [Action]) -> ConnectionID? {
        guard var stream = self.streams[id], !stream.attached else { return nil }
        stream.attached = true
        let early = stream.early
        self.forgetEarlyData(of: &stream)
        self.streams[id] = stream
        self.totalConnections += 1
        for data in early { self.deliver(data, to: id, stream.serial, into: &actions) }
        if stream.earlyFIN {
            if self.halfClose {
                actions.append(.close(stream.serial, .output))
            } else {
                self.closeStream(id, into: &actions)
            }
        }
        self.evaluateReceiveBound(into: &actions)
        return stream.serial
    }

    /// Agent: the target of stream `id` could not be reached. The client hears of it (ConnectToPortError
    /// and the FIN; with `connect-errors` the reason first); in basic mode, which has no per-connection
    /// error, the session fails.
    public mutating func refuse(_ id: SmuxStreamID, reason: String, into actions: inout [Action]) {
        if self.isTerminal {
            actions.append(.endSession(reason: (self.isAgent ? "Unable to start the shell: " : "") + reason))
            return
        }
        if self.isBasic {
            actions.append(.endSession(reason: "Unable to connect to specified port: \(reason)"))
            return
        }
        if self.connectErrors {
            actions.append(.sendConnectError(ConnectErrorPayload(streamID: id.rawValue, reason: reason)))
        }
        actions.append(.sendFlag(.connectToPortError))
        if let fin = self.mux?.abortStream(id) { actions.append(.sendFrame(fin)) }
        self.remove(id)
        self.evaluateReceiveBound(into: &actions)
    }

    /// The session is over: every attached connection is reset and every stream forgotten. A terminal
    /// session's stream (the user's terminal or a command's output, the program's terminal or pipes) is not
    /// a connection whose end could look complete: it is closed once what was written to it is out, so the
    /// end of a program's output that the client has received is never dropped.
    public mutating func endAll(into actions: inout [Action]) {
        for stream in self.streams.values where stream.attached {
            actions.append(self.isTerminal ? .close(stream.serial, .all) : .reset(stream.serial))
        }
        self.streams.removeAll()
    }

    // MARK: closing and forgetting

    /// Sends stream `id`'s FIN (if not sent yet), closes its connection and forgets it.
    mutating func closeStream(_ id: SmuxStreamID, into actions: inout [Action]) {
        guard let stream = self.streams[id] else { return }
        self.sendOpening(id, into: &actions)
        if let fin = self.mux?.closeStream(id) { actions.append(.sendFrame(fin)) }
        if stream.attached { actions.append(.close(stream.serial, .all)) }
        self.drop(id)
    }

    /// Client: stream `id`'s opening frames, held for its first data, go now (alone): a FIN must not
    /// precede the SYN.
    mutating func sendOpening(_ id: SmuxStreamID, into actions: inout [Action]) {
        guard let opening = self.streams[id]?.opening, !opening.isEmpty else { return }
        self.streams[id]!.opening = []
        for frame in opening { actions.append(.sendFrame(frame)) }
    }

    /// Forgets stream `id` here and in smux (no FIN).
    mutating func drop(_ id: SmuxStreamID) {
        _ = self.mux?.abortStream(id)
        self.remove(id)
    }

    /// Forgets stream `id` here only (smux may keep it for the peer's FIN; it then holds nothing for it, so
    /// its window's growth goes back to the session's budget).
    mutating func remove(_ id: SmuxStreamID) {
        guard var stream = self.streams.removeValue(forKey: id) else { return }
        self.forgetEarlyData(of: &stream)
        self.mux?.readerGone(id)
    }

    mutating func forgetEarlyData(of stream: inout Stream) {
        guard stream.earlyBytes > 0 else { return }
        self.receiveBound.written(stream.earlyBytes)
        stream.early = []
        stream.earlyBytes = 0
    }

    // MARK: receive bound

    /// Appends the data channel's reading change, if the bound makes one. Stopping leaves the peer's
    /// messages unacknowledged in TCP and the gateway, so its own send window fills and it stops reading
    /// its sources: backpressure end to end, as the official plugin's smux v1 session buffer does.
    mutating func evaluateReceiveBound(into actions: inout [Action]) {
        guard let change = self.receiveBound.evaluate() else { return }
        actions.append(.readDataChannel(change == .resume))
    }
}
