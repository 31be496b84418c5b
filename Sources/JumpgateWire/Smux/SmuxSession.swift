import NIOCore

/// The smux session of one side of a port session, as a pure state machine: stream ids, open and
/// half-closed states, and in version 2 the per-stream windows that keep one slow stream from
/// stalling the others.
///
/// Version 1 (the official peers) has no per-stream flow control: a receiver can only stop reading the
/// whole session. Version 2 follows xtaci/smux: the sender may have at most `peerWindow` bytes in flight
/// per stream (written minus what the peer reported consumed), and the receiver reports consumption
/// with UPD frames once a quarter of its window has been consumed; Jumpgate's receiver grows a stream's
/// window at each report (``dataConsumed(on:count:grow:)``).
public struct SmuxSession: Sendable {
    public enum Role: Sendable, Hashable {
        /// Opens streams (3, 5, 7, ...): the laptop side.
        case client
        /// Accepts streams: the agent side.
        case server
    }

    public struct Configuration: Sendable, Hashable {
        public var version: UInt8
        public var role: Role
        /// The receive window a stream starts with (version 2).
        public var streamReceiveWindow: UInt32
        /// A stream whose data is being consumed doubles its window at each update, up to this (version 2):
        /// the bytes in flight on a tunnel of three TCP hops and two relays are more than a 2 MiB window
        /// covers at a few Gbit/s (docs/PERFORMANCE.md, "Stream windows that grow").
        public var maximumStreamReceiveWindow: UInt32
        /// What all of a session's streams with a reader together may grow beyond ``streamReceiveWindow``:
        /// what one end may have to hold for readers that stop, past the starting windows (a stream whose
        /// reader is gone holds nothing: what arrives for it is dropped, ``readerGone(_:)``).
        public var windowGrowthBudget: UInt32
        /// The window assumed for the peer until its first UPD (smux's initialPeerWindow).
        public var initialPeerWindow: UInt32
        public var maximumFrameSize: Int
        /// At most this many streams at once; a SYN beyond it is refused with a FIN.
        public var maximumStreams: Int

        public init(
            version: UInt8,
            role: Role,
            streamReceiveWindow: UInt32 = 2 << 20,
            maximumStreamReceiveWindow: UInt32 = 16 << 20,
            windowGrowthBudget: UInt32 = 32 << 20,
            initialPeerWindow: UInt32 = 262_144,
            maximumFrameSize: Int = SmuxFrame.maximumDataSize,
            maximumStreams: Int = 4096
        ) {
            self.version = version
            self.role = role
            // A peer may send the initial window's worth before it hears of this side's window (in version 2
            // it hears of it with this side's first data on the stream): no window is smaller.
            self.streamReceiveWindow = max(streamReceiveWindow, initialPeerWindow)
            self.maximumStreamReceiveWindow = max(self.streamReceiveWindow, maximumStreamReceiveWindow)
            self.windowGrowthBudget = windowGrowthBudget
            self.initialPeerWindow = initialPeerWindow
            self.maximumFrameSize = maximumFrameSize
            self.maximumStreams = maximumStreams
        }
    }

    struct Stream: Sendable {
        var localClosed = false
        var remoteClosed = false
        /// The peer sent data on it (a stream the agent refused never gets any: ``StreamRefusals``). Kept here,
        /// not in the stream table, because smux keeps a stream until the peer's FIN after the table forgot it.
        var receivedData = false
        /// Its local reader is gone (``readerGone(_:)``): its window no longer grows, and its growth no
        /// longer counts against the session's budget.
        var readerGone = false
        // Version 2 accounting; counters wrap as smux's uint32 counters do.
        var written: UInt32 = 0
        var peerConsumed: UInt32 = 0
        var peerWindow: UInt32
        var received: UInt32 = 0
        var consumed: UInt32 = 0
        var consumedSinceUpdate: UInt32 = 0
        /// The receive window this side advertises for the stream; it only grows.
        var window: UInt32
        /// Version 2: whether the peer has been told ``window`` (until then it assumes
        /// ``Configuration/initialPeerWindow``). A stream this side opens announces it with its SYN. A stream
        /// the peer opens announces it in the first data message back that has room for the UPD (ahead of
        /// that message's data), or alone once a quarter of the initial window has been consumed
        /// (``dataConsumed(on:count:grow:)``), whichever comes first, and never once the peer has finished
        /// the stream: a setup that answers costs no message of its own for it.
        var windowAnnounced: Bool
    }

    public let configuration: Configuration
    private var streams: [SmuxStreamID: Stream] = [:]
    private var lastOpenedID: UInt32
    /// The sum over open streams with a reader of what each window grew beyond the starting one.
    public private(set) var grownWindowBytes: UInt32 = 0
    /// Open streams whose window is still to be announced: while there are none (the steady state), a
    /// sender looks no stream up for it (``hasPendingWindowAnnouncements``).
    private var unannouncedStreams = 0

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.lastOpenedID = configuration.role == .client ? 1 : 0
    }

    public var openStreamCount: Int { self.streams.count }

    public func isOpen(_ id: SmuxStreamID) -> Bool { self.streams[id] != nil }

    private func frame(_ command: SmuxCommand, _ id: SmuxStreamID) -> SmuxFrame {
        SmuxFrame(version: self.configuration.version, command: command, streamID: id)
    }

    // MARK: - Local operations

    /// Opens a stream (client role): returns its id and the frames to send: the SYN and, in version 2,
    /// a UPD advertising this side's receive window at once (the peer otherwise assumes
    /// ``Configuration/initialPeerWindow`` until its first update).
    public mutating func openStream() throws(WireError) -> (SmuxStreamID, [SmuxFrame]) {
        guard self.streams.count < self.configuration.maximumStreams else {
            throw WireError(.smuxProtocolViolation, "too many smux streams open (\(self.streams.count))")
        }
        self.lastOpenedID &+= 2
        let id = SmuxStreamID(self.lastOpenedID)
        // A stream of the peer's own at this id (a peer that opened one with this side's parity) is replaced.
        if let replaced = self.streams[id], !replaced.windowAnnounced { self.unannouncedStreams -= 1 }
        self.streams[id] = self.newStream(windowAnnounced: true)
        return (id, [self.frame(.syn, id)] + [self.initialWindowUpdate(id)].compactMap { $0 })
    }

    private func newStream(windowAnnounced: Bool) -> Stream {
        Stream(
            peerWindow: self.configuration.initialPeerWindow,
            window: self.configuration.streamReceiveWindow,
            windowAnnounced: windowAnnounced || self.configuration.version != 2
        )
    }

    /// The receive window this side currently advertises for `id` (version 2), nil for no such stream.
    public func receiveWindow(of id: SmuxStreamID) -> UInt32? { self.streams[id]?.window }

    /// What of `stream`'s window counts against the session's ``Configuration/windowGrowthBudget``.
    private func charged(_ stream: Stream) -> UInt32 {
        stream.readerGone ? 0 : stream.window - self.configuration.streamReceiveWindow
    }

    /// Forgets `id`, giving back what its window grew to the session's budget.
    private mutating func remove(_ id: SmuxStreamID) {
        guard let stream = self.streams.removeValue(forKey: id) else { return }
        if !stream.windowAnnounced { self.unannouncedStreams -= 1 }
        self.grownWindowBytes -= self.charged(stream)
    }

    /// Stream `id`'s local connection is gone while smux keeps the stream for the peer's FIN: whatever still
    /// arrives is dropped as it comes (and credited without growth), so nothing is held for it and what its
    /// window grew goes back to the session's budget at once, for the streams that still have readers.
    public mutating func readerGone(_ id: SmuxStreamID) {
        guard var stream = self.streams[id], !stream.readerGone else { return }
        self.grownWindowBytes -= self.charged(stream)
        stream.readerGone = true
        self.streams[id] = stream
    }

    /// Version 2: whether any stream's window has yet to be told to the peer.
    public var hasPendingWindowAnnouncements: Bool { self.unannouncedStreams > 0 }

    /// Version 2: whether `id`'s window has yet to be told to the peer (a stream the peer opened, before
    /// this side's first data on it), and the peer may still send.
    public func announcesWindow(on id: SmuxStreamID) -> Bool {
        guard let stream = self.streams[id] else { return false }
        return !stream.windowAnnounced && !stream.remoteClosed
    }

    /// Version 2, a stream the peer opened: the UPD that tells the peer this side's window, if it has not
    /// been sent yet (and the peer may still send); it is counted as sent. The caller puts it in a data
    /// message ahead of its data (``StreamTable/nextChunk(on:)``), which goes out at once (a message the
    /// session holds back keeps its sequence number and goes later, in order).
    public mutating func takeWindowAnnouncement(on id: SmuxStreamID) -> SmuxFrame.WindowUpdate? {
        guard var stream = self.streams[id], !stream.windowAnnounced else { return nil }
        let update = self.announce(&stream)
        self.streams[id] = stream
        return update
    }

    /// Marks `stream`'s window told (the next regular update counts from here) and returns what to tell,
    /// nil when the peer has finished the stream and will send nothing more.
    private mutating func announce(_ stream: inout Stream) -> SmuxFrame.WindowUpdate? {
        stream.windowAnnounced = true
        self.unannouncedStreams -= 1
        stream.consumedSinceUpdate = 0
        return stream.remoteClosed ? nil : .init(consumed: stream.consumed, window: stream.window)
    }

    /// Version 2: the window this side advertises for a new stream.
    private func initialWindowUpdate(_ id: SmuxStreamID) -> SmuxFrame? {
        guard self.configuration.version == 2 else { return nil }
        return .windowUpdate(
            version: 2,
            streamID: id,
            .init(consumed: 0, window: self.configuration.streamReceiveWindow)
        )
    }

    /// How many bytes may be sent on `id` now: 0 when the stream is closed for writing or (version 2)
    /// its window is full; then wait for ``Event/writable(_:)``.
    public func sendableBytes(on id: SmuxStreamID) -> Int {
        guard let stream = self.streams[id], !stream.localClosed else { return 0 }
        guard self.configuration.version == 2 else { return self.configuration.maximumFrameSize }
        let inFlight = stream.written &- stream.peerConsumed
        guard inFlight < stream.peerWindow else { return 0 }
        return min(Int(stream.peerWindow - inFlight), self.configuration.maximumFrameSize)
    }

    /// Records data about to be sent on `id` and returns the PSH header fields; `count` must not exceed
    /// ``sendableBytes(on:)``.
    public mutating func dataWillBeSent(on id: SmuxStreamID, count: Int) throws(WireError) {
        let allowed = self.sendableBytes(on: id)
        guard count <= allowed else {
            throw WireError(
                .smuxProtocolViolation,
                "stream \(id): \(count) bytes exceed the \(allowed) that may be sent"
            )
        }
        self.streams[id]!.written &+= UInt32(count)
    }

    /// The local side consumed `count` bytes of `id` (written them to the TCP connection). In version 2
    /// returns a UPD to send once a quarter of the window has been consumed. Each update also doubles the
    /// stream's window, up to ``Configuration/maximumStreamReceiveWindow`` and while the session's
    /// ``Configuration/windowGrowthBudget`` lasts: only a stream whose reader takes data grows (a stopped
    /// reader stops consuming once its socket buffers are full, so it sends no more updates), a stream the
    /// peer has finished does not, and what a session may be made to hold stays bounded however many
    /// streams it has.
    ///
    /// `grow` false credits the window without growing it: data dropped because its local connection is
    /// gone, and what a closed connection had taken but not confirmed, is counted as consumed (so the peer
    /// is not stalled until its FIN), but it says nothing about a reader keeping up.
    public mutating func dataConsumed(on id: SmuxStreamID, count: Int, grow: Bool = true) -> SmuxFrame? {
        guard self.configuration.version == 2, var stream = self.streams[id] else { return nil }
        stream.consumed &+= UInt32(count)
        stream.consumedSinceUpdate &+= UInt32(count)
        var update: SmuxFrame?
        if !stream.windowAnnounced {
            // Nothing went back on the stream yet: the peer still counts on the initial window. Tell it
            // this side's window (without growing it) once a quarter of that is consumed, so that it is
            // never stalled waiting for data this side would have to send first.
            if stream.consumed >= self.configuration.initialPeerWindow / 4, let told = self.announce(&stream) {
                update = .windowUpdate(version: 2, streamID: id, told)
            }
        } else if stream.consumedSinceUpdate >= stream.window / 4 {
            stream.consumedSinceUpdate = 0
            let grown = min(
                stream.window.multipliedReportingOverflow(by: 2).partialValue,
                self.configuration.maximumStreamReceiveWindow
            )
            if grow, !stream.remoteClosed, !stream.readerGone, grown > stream.window,
                grown - stream.window <= self.configuration.windowGrowthBudget - self.grownWindowBytes
            {
                self.grownWindowBytes += grown - stream.window
                stream.window = grown
            }
            update = .windowUpdate(version: 2, streamID: id, .init(consumed: stream.consumed, window: stream.window))
        }
        self.streams[id] = stream
        return update
    }

    /// The local side closed its half of `id` (TCP EOF): returns the FIN to send, or nil if already sent.
    public mutating func closeStream(_ id: SmuxStreamID) -> SmuxFrame? {
        guard var stream = self.streams[id], !stream.localClosed else { return nil }
        stream.localClosed = true
        if stream.remoteClosed {
            self.remove(id)
        } else {
            self.streams[id] = stream
        }
        return self.frame(.fin, id)
    }

    /// Forget a stream entirely (its TCP connection was reset or the dial failed), returning the FIN to
    /// send if one was not sent yet.
    public mutating func abortStream(_ id: SmuxStreamID) -> SmuxFrame? {
        guard let stream = self.streams[id] else { return nil }
        self.remove(id)
        return stream.localClosed ? nil : self.frame(.fin, id)
    }

    // MARK: - Peer frames

    public enum Event: Sendable, Equatable {
        case none
        /// The peer opened a stream (server role): dial the target for it. In version 2 this side's window
        /// goes back with the stream's first data (``takeWindowAnnouncement(on:)``).
        case streamOpened(SmuxStreamID)
        /// The peer refused or exceeded the stream limit: send this FIN.
        case refuse(SmuxFrame)
        /// Data for the stream's local TCP connection.
        case data(SmuxStreamID, ByteBuffer)
        /// The peer will send no more on this stream (half-close); `fullyClosed` when both halves are done,
        /// `receivedData` when the peer sent data on it first.
        case remoteClosed(SmuxStreamID, fullyClosed: Bool, receivedData: Bool)
        /// Version 2: the peer consumed data, the stream may send again.
        case writable(SmuxStreamID)
    }

    public mutating func frameReceived(_ frame: SmuxFrame) throws(WireError) -> Event {
        guard frame.version == self.configuration.version else {
            throw WireError(
                .smuxProtocolViolation,
                "smux frame version \(frame.version) in a version \(self.configuration.version) session"
            )
        }
        let id = frame.streamID
        switch frame.command {
        case .nop:
            return .none
        case .syn:
            if self.streams[id] != nil { return .none }
            guard self.streams.count < self.configuration.maximumStreams else {
                return .refuse(self.frame(.fin, id))
            }
            // The window goes back with the stream's first data (``takeWindowAnnouncement(on:)``).
            let stream = self.newStream(windowAnnounced: false)
            self.streams[id] = stream
            if !stream.windowAnnounced { self.unannouncedStreams += 1 }
            return .streamOpened(id)
        case .fin:
            guard var stream = self.streams[id] else { return .none }
            stream.remoteClosed = true
            if stream.localClosed {
                self.remove(id)
                return .remoteClosed(id, fullyClosed: true, receivedData: stream.receivedData)
            }
            self.streams[id] = stream
            return .remoteClosed(id, fullyClosed: false, receivedData: stream.receivedData)
        case .psh:
            // smux drops data for streams it does not know (already closed locally).
            guard var stream = self.streams[id], !stream.remoteClosed else { return .none }
            if self.configuration.version == 2 {
                let buffered = (stream.received &+ UInt32(frame.data.readableBytes)) &- stream.consumed
                guard buffered <= stream.window else {
                    throw WireError(
                        .smuxProtocolViolation,
                        "stream \(id): peer sent past the \(stream.window)-byte window"
                    )
                }
                stream.received &+= UInt32(frame.data.readableBytes)
                stream.receivedData = true
                self.streams[id] = stream
            } else if !stream.receivedData {
                // Written once per stream in version 1 (which keeps no counters), not at every frame.
                stream.receivedData = true
                self.streams[id] = stream
            }
            return .data(id, frame.data)
        case .upd:
            guard self.configuration.version == 2 else {
                throw WireError(.smuxProtocolViolation, "UPD frame in a version 1 session")
            }
            guard var stream = self.streams[id], let update = frame.windowUpdate else { return .none }
            let wasBlocked = self.sendableBytes(on: id) == 0
            stream.peerConsumed = update.consumed
            stream.peerWindow = update.window
            self.streams[id] = stream
            return wasBlocked && self.sendableBytes(on: id) > 0 ? .writable(id) : .none
        default:
            throw WireError(.smuxProtocolViolation, "unknown smux command \(frame.command.rawValue)")
        }
    }
}
