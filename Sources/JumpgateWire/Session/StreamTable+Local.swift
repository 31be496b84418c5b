import NIOCore

extension StreamTable {
    // MARK: what local connections do

    /// `connection` read `data`: queued to be sent (then ``nextChunk(on:)``). False when the connection
    /// is no longer its stream's (a late event of a finished basic-mode connection): ignore it.
    @discardableResult
    public mutating func localRead(_ id: SmuxStreamID, _ connection: ConnectionID, _ data: ByteBuffer) -> Bool {
        guard self.owns(id, connection) else { return false }
        self.bytesIn += Int64(data.readableBytes)
        self.streams[id]!.backlog.append(data)  // in place: a copy of the stream would copy its queue
        return true
    }

    /// `connection` sent its last byte (EOF): its FIN follows what waits (then ``nextChunk(on:)``).
    @discardableResult
    public mutating func localEOF(_ id: SmuxStreamID, _ connection: ConnectionID) -> Bool {
        guard self.owns(id, connection) else { return false }
        if self.isTerminal, !self.isAgent {
            // The user's input ended (stdin from a file or a pipe): the terminal's end-of-file key (Ctrl+D)
            // goes to the shell, which exits at an empty line; its output still comes.
            self.streams[id]!.backlog.append(ByteBuffer(bytes: [Self.endOfFileKey]))
            return true
        }
        self.streams[id]!.localEOF = true
        return true
    }

    /// Ctrl+D, a terminal's end-of-file key (VEOF).
    public static let endOfFileKey: UInt8 = 0x04

    /// `connection` closed. What it took but never confirmed goes back to the peer's window (without
    /// growing it), as data arriving for a closed connection does, or a peer with a spent window would
    /// wait for ever. Then
    /// send what waits (``nextChunk(on:)``) and call ``localClosedAfterSending(_:_:into:)``. False when
    /// the connection is no longer its stream's.
    @discardableResult
    public mutating func localClosed(
        _ id: SmuxStreamID,
        _ connection: ConnectionID,
        into actions: inout [Action]
    ) -> Bool {
        guard self.owns(id, connection) else { return false }
        self.streams[id]!.localEOF = true
        self.streams[id]!.attached = false
        self.streams[id]!.localGone = true
        let unconsumed = self.streams[id]!.unconsumed
        if unconsumed > 0 {
            // Returned so that the peer's window stays open, but not grown for: they waited because the
            // reader was slow, and the socket may have dropped them as it closed.
            self.streams[id]!.unconsumed = 0
            self.consumed(unconsumed, on: id, grow: false, into: &actions)
        }
        return true
    }

    /// After a closed connection's stream was pumped: once its last bytes are sent (they may wait for the
    /// window: then the FIN follows them, from ``pumped(_:into:)``), the stream is forgotten here. smux
    /// keeps it while the peer's half is open, as ``pumped(_:into:)`` does, so that what the peer still
    /// sends is dropped but credited to its window until its FIN.
    public mutating func localClosedAfterSending(
        _ id: SmuxStreamID,
        _ connection: ConnectionID,
        into actions: inout [Action]
    ) {
        // Gone already (the pump sent its FIN), or another connection's now (basic mode).
        guard let stream = self.streams[id], stream.serial == connection, stream.backlog.isEmpty else { return }
        // Still here: its FIN went before it closed (EOF, then the close). Aborting the
        // smux stream would drop the peer's data uncredited, and a peer still sending would stall once its
        // window was spent.
        if let fin = self.mux?.closeStream(id) { actions.append(.sendFrame(fin)) }
        self.remove(id)  // smux forgot it already unless the peer's half is open
    }

    // MARK: sending stream data

    /// What the next data message on a stream carries: basic mode's raw bytes, or one or two smux PSH
    /// frames (a 64 KiB fast-path payload carries two, since smux caps a frame at 32 KiB, so per-message
    /// costs are paid half as often).
    public struct Chunk: Sendable, Hashable {
        public var streamID: SmuxStreamID
        /// Bytes of stream data in the first and second PSH frames (basic mode: `first` raw bytes).
        public var first: Int
        public var second: Int
        /// The smux version, or nil in basic mode (no smux header).
        public var smuxVersion: UInt8?
        /// smux v2, a stream the peer opened: this side's window, told to the peer in a UPD ahead of the
        /// stream's first data (``SmuxSession/takeWindowAnnouncement(on:)``).
        public var windowAnnouncement: SmuxFrame.WindowUpdate?
        /// Client: bytes of the stream's opening frames (SYN, UPD) that go ahead of its first data
        /// (``StreamTable/open(into:dataWaiting:)``); 0 for every other message.
        public var openingLength = 0

        /// The message's payload length.
        public var payloadLength: Int {
            guard self.smuxVersion != nil else { return self.first }
            return self.openingLength + (self.windowAnnouncement == nil ? 0 : SmuxFrame.windowUpdateSize)
                + SmuxFrame.headerSize + self.first + (self.second > 0 ? SmuxFrame.headerSize + self.second : 0)
        }
    }

    /// The next data message to send on stream `id`, as far as its window allows (counted as sent), or nil
    /// when nothing waits or the window is spent. Call only while reliable delivery can send, and write it
    /// at once with ``writeChunk(_:into:)``.
    public mutating func nextChunk(on id: SmuxStreamID) -> Chunk? {
        guard let backlog = self.streams[id]?.backlog.readableBytes, backlog > 0, let mode = self.mode else {
            return nil
        }
        switch mode {
        case .basic:
            return Chunk(streamID: id, first: min(self.maximumPayload, backlog), second: 0, smuxVersion: nil)
        case .mux(let version, _):
            // smux's sendable bytes are capped at one frame (32 KiB): the second frame asks again.
            guard self.mux != nil else { return nil }
            let openingLength = self.streams[id]!.opening.reduce(0) {
                $0 + SmuxFrame.headerSize + $1.data.readableBytes
            }
            let maximumData = min(
                SmuxFrame.maximumDataSize,
                self.maximumPayload - openingLength - SmuxFrame.headerSize
            )
            let first = min(self.mux!.sendableBytes(on: id), backlog, maximumData)
            guard first > 0, (try? self.mux!.dataWillBeSent(on: id, count: first)) != nil else { return nil }
            var chunk = Chunk(streamID: id, first: first, second: 0, smuxVersion: version)
            chunk.openingLength = openingLength
            let room = self.maximumPayload - openingLength - SmuxFrame.headerSize - first - SmuxFrame.headerSize
            let second = max(0, min(self.mux!.sendableBytes(on: id), backlog - first, maximumData, room))
            if second > 0, (try? self.mux!.dataWillBeSent(on: id, count: second)) != nil { chunk.second = second }
            // The window's announcement rides along where it fits: a full message stays full (its rest would
            // cost a message of its own), and the announcement then waits for a shorter one, or goes alone
            // once the peer's data needs it (SmuxSession.dataConsumed).
            if version == 2, self.mux!.hasPendingWindowAnnouncements,
                chunk.payloadLength + SmuxFrame.windowUpdateSize <= self.maximumPayload
            {
                chunk.windowAnnouncement = self.mux!.takeWindowAnnouncement(on: id)
            }
            return chunk
        }
    }

    /// Writes `chunk` (from ``nextChunk(on:)``) into a message's payload: the one copy of the local
    /// connection's bytes, straight behind the SSM and smux headers.
    public mutating func writeChunk(_ chunk: Chunk, into payload: inout ByteBuffer) {
        let id = chunk.streamID
        guard let version = chunk.smuxVersion else {
            self.streams[id]!.backlog.move(chunk.first, into: &payload)
            return
        }
        if chunk.openingLength > 0 {
            for frame in self.streams[id]!.opening { payload.writeSmuxFrame(frame) }
            self.streams[id]!.opening = []
        }
        if let update = chunk.windowAnnouncement {
            payload.writeSmuxWindowUpdate(version: version, streamID: id, update)
        }
        payload.writeSmuxHeader(version: version, command: .psh, length: UInt16(chunk.first), streamID: id)
        self.streams[id]!.backlog.move(chunk.first, into: &payload)
        guard chunk.second > 0 else { return }
        payload.writeSmuxHeader(version: version, command: .psh, length: UInt16(chunk.second), streamID: id)
        self.streams[id]!.backlog.move(chunk.second, into: &payload)
    }

    /// After sending what could be sent on stream `id`: reading its connection stops while bytes still
    /// wait and restarts when none do; once a connection at EOF has sent everything, its FIN goes (basic
    /// mode: the connection is finished).
    public mutating func pumped(_ id: SmuxStreamID, into actions: inout [Action]) {
        guard let stream = self.streams[id] else { return }
        let blocked = !stream.backlog.isEmpty
        // A held opening (StreamTable.open(into:dataWaiting:)) goes alone, as a control message may, when the
        // first data could not go (the window or the send buffer is full: the agent dials now, not once the
        // session can send data), or ahead of the FIN of a connection that ended before its bytes were read.
        if !stream.opening.isEmpty, blocked || stream.localEOF { self.sendOpening(id, into: &actions) }
        if blocked != stream.readPaused {
            self.streams[id]!.readPaused = blocked
            if !blocked, stream.attached { actions.append(.resumeReading(stream.serial)) }
        }
        guard !blocked, stream.localEOF else { return }
        if self.isBasic {
            self.basicConnectionFinished(stream.serial, into: &actions)
            return
        }
        guard let fin = self.mux?.closeStream(id) else { return }
        actions.append(.sendFrame(fin))
        // Nothing more can be delivered to a closed socket: the stream is done here. If the peer still
        // sends, smux keeps the stream until its FIN, so what arrives is discarded but counted as consumed
        // (its window stays open and its end can finish and close).
        // (smux forgets a stream by itself once both halves are closed.)
        if stream.localGone || !self.isMuxStreamOpen(id) { self.remove(id) }
    }

    /// Basic mode: the connection's last bytes are sent. Client: DisconnectToPort, then the next waiting
    /// connection. Agent: close the target connection and wait (new data from the client dials again).
    mutating func basicConnectionFinished(_ serial: ConnectionID, into actions: inout [Action]) {
        guard let stream = self.streams[Self.basicStreamID], stream.serial == serial else { return }
        self.remove(Self.basicStreamID)
        if stream.attached { actions.append(.close(serial, .all)) }
        if self.isTerminal {
            // Agent: the program's terminal closed. Client: its terminal went away; the session goes on
            // until the program ends or the user stops the client.
            if self.isAgent { actions.append(.terminalEnded) }
            return
        }
        guard !self.isAgent else { return }
        actions.append(.sendFlag(.disconnectToPort))
        actions.append(.serveNextWaiting)
    }
}
