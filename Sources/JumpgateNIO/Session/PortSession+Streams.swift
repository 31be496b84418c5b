import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: streams (TCP side)

    /// Client: open a stream for an accepted local connection. In basic mode one connection is served at a
    /// time; later ones wait (unread) until it ends, as with the official plugin.
    public func openStream(for channel: any Channel) throws -> SmuxStreamID {
        if self.isBasic {
            if self.streams[Self.basicStreamID] == nil {
                try self.activateBasicConnection(channel)
            } else {
                self.basicWaiting.append(channel)
            }
            return Self.basicStreamID
        }
        guard var mux = self.mux else { throw WireError(.smuxProtocolViolation, "the session is not in mux mode") }
        guard self.reliability.canSendControl else {
            // The agent has acknowledged nothing for thousands of messages: refuse this connection only.
            throw WireError(.bufferFull, "the session's send buffer is full")
        }
        let (id, frames) = try mux.openStream()
        self.mux = mux
        let stream = StreamState()
        stream.channel = channel
        self.streams[id] = stream
        self.totalConnections += 1
        for frame in frames { self.sendMuxFrame(frame) }
        self.context?.flush()
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: id))
        return id
    }

    /// Agent: the target connection for stream `id` is up.
    public func attach(_ channel: any Channel, to id: SmuxStreamID) throws {
        guard let stream = self.streams[id] else {
            channel.close(promise: nil)
            return
        }
        stream.channel = channel
        self.totalConnections += 1
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: id))
        let early = stream.earlyData
        self.forgetEarlyData(of: stream)
        for data in early { self.writeToTCP(id, channel: channel, data) }
        if stream.earlyFIN {
            let halfClose = self.negotiated?.extensions.contains(.halfClose) == true
            if halfClose { Self.close(channel, mode: .output) } else { self.closeStream(id) }
        }
    }

    /// Agent: the target could not be reached: tell the client (ConnectToPortError, then FIN).
    /// The owner logs why, as the event it is (an allow-list refusal is a security warning).
    public func refuse(_ id: SmuxStreamID, reason: String) {
        self.logger.debug(
            "stream refused",
            metadata: ["jumpgate.stream_id": "\(id)", "reason": "\(reason)"]
        )
        if self.isBasic {
            // No per-connection error exists in basic mode (and no Flag may be sent): the session fails.
            self.end(reason: "Unable to connect to specified port: \(reason)", byPeer: false)
            return
        }
        if self.negotiated?.extensions.contains(.connectErrors) == true {
            let error = ConnectErrorPayload(streamID: id.rawValue, reason: reason)
            self.sendStreamMessage(payloadType: .jumpgateConnectError, payload: error.encoded())
        }
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.connectToPortError.encoded())
        if var mux = self.mux, let fin = mux.abortStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
        }
        if let stream = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: stream) }
        self.context?.flush()
    }

    /// The stream `id` if `channel` is still its connection (in basic mode one id serves one connection
    /// after another, and a finished connection's last events must not touch the next one).
    func stream(_ id: SmuxStreamID, of channel: any Channel) -> StreamState? {
        guard let stream = self.streams[id], stream.channel === channel else { return nil }
        return stream
    }

    func tcpRead(_ id: SmuxStreamID, channel: any Channel, _ data: ByteBuffer) {
        self.logger.trace(
            "tcp read",
            metadata: [
                "jumpgate.stream_id": "\(id)", "bytes": "\(data.readableBytes)", "known": "\(self.streams[id] != nil)",
            ]
        )
        guard let stream = self.stream(id, of: channel) else { return }
        self.bytesIn += Int64(data.readableBytes)
        stream.backlog.append(data)
        // A read burst (several reads of one socket) goes out as one flush, at tcpReadComplete.
        self.inTCPReadBurst = true
        self.pumpStream(id)
    }

    func tcpReadComplete() {
        self.inTCPReadBurst = false
        if self.flushAfterTCPReadBurst {
            self.flushAfterTCPReadBurst = false
            self.context?.flush()
        }
    }

    /// Flushes the data channel now, or at the end of the local read burst being handled.
    func flushDataChannel() {
        if self.inTCPReadBurst {
            self.flushAfterTCPReadBurst = true
        } else {
            self.context?.flush()
        }
    }

    func tcpEOF(_ id: SmuxStreamID, channel: any Channel) {
        self.tcpReadComplete()
        guard let stream = self.stream(id, of: channel) else { return }
        stream.localEOF = true
        self.pumpStream(id)
    }

    func tcpClosed(_ id: SmuxStreamID, channel: any Channel) {
        self.tcpReadComplete()
        guard let stream = self.stream(id, of: channel) else { return }
        stream.localEOF = true
        stream.channel = nil
        stream.tcpClosed = true
        if stream.unconsumed > 0 {
            // The connection is gone: what it took but never confirmed goes back to the peer's window, as
            // data arriving for a closed connection does, or a peer with a spent window would wait forever.
            let count = stream.unconsumed
            stream.unconsumed = 0
            self.consumed(id, count)
        }
        self.pumpStream(id)
        guard self.streams[id] != nil else { return }  // pumpStream sent the FIN and dropped it
        guard stream.backlog.isEmpty else {
            // The socket is gone but its last bytes wait for the smux window: they go as it opens, then
            // the FIN (pumpStream), and only then is the stream dropped.
            self.context?.flush()
            return
        }
        if var mux = self.mux, let fin = mux.abortStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
        }
        if self.streams[id] === stream { self.streams[id] = nil }
        self.context?.flush()
    }

    /// Moves a stream's backlog into SSM messages as far as the smux window and the outgoing buffer allow;
    /// stops reading the TCP connection when they do not.
    func pumpStream(_ id: SmuxStreamID) {
        if self.isBasic {
            self.pumpBasic()
            return
        }
        guard let stream = self.streams[id], let negotiated = self.negotiated else { return }
        let maximumPayload = negotiated.maximumPayloadSize(sentByAgent: self.isAgent)
        let maximumData = min(SmuxFrame.maximumDataSize, maximumPayload - SmuxFrame.headerSize)
        var sentSomething = false
        while !stream.backlog.isEmpty, self.reliability.canSend, var mux = self.mux {
            // As much as the window and the payload size allow: a 64 KiB fast-path payload carries two
            // PSH frames (smux caps one at 32 KiB), so per-message costs are paid half as often.
            let sendable = min(mux.sendableBytes(on: id), stream.backlog.readableBytes)
            let first = min(sendable, maximumData)
            guard first > 0 else { break }
            let room = maximumPayload - SmuxFrame.headerSize - first - SmuxFrame.headerSize
            let second = max(0, min(sendable - first, maximumData, room))
            do {
                try mux.dataWillBeSent(on: id, count: first + second)
            } catch {
                break
            }
            self.mux = mux
            let version = mux.configuration.version
            let length = SmuxFrame.headerSize + first + (second > 0 ? SmuxFrame.headerSize + second : 0)
            // One copy: the socket's bytes go straight into the frame behind the SSM and smux headers.
            self.sendStreamMessage(payloadType: .output, payloadLength: length, isControl: false) { frame in
                frame.writeSmuxHeader(version: version, command: .psh, length: UInt16(first), streamID: id)
                stream.backlog.move(first, into: &frame)
                guard second > 0 else { return }
                frame.writeSmuxHeader(version: version, command: .psh, length: UInt16(second), streamID: id)
                stream.backlog.move(second, into: &frame)
            }
            sentSomething = true
        }
        if stream.backlog.isEmpty {
            if stream.localEOF, var mux = self.mux, let fin = mux.closeStream(id) {
                self.mux = mux
                self.sendMuxFrame(fin)
                sentSomething = true
                // Nothing more can be delivered to a closed socket: the stream is done here. If the peer
                // still sends, the mux keeps the stream until its FIN, so what arrives is discarded but
                // counted as consumed (its window stays open and its end can finish and close).
                if self.mux?.isOpen(id) == true, stream.tcpClosed {
                    if let dropped = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: dropped) }
                } else if stream.tcpClosed || !(self.mux?.isOpen(id) ?? false) {
                    self.dropStream(id)
                }
            }
        }
        let blocked = !stream.backlog.isEmpty
        if blocked != stream.readPaused {
            stream.readPaused = blocked
            if !blocked { stream.channel?.read() }
        }
        if sentSomething { self.flushDataChannel() }
    }

    func resumeBlockedStreams() {
        for (id, stream) in self.streams where stream.readPaused || !stream.backlog.isEmpty {
            self.pumpStream(id)
        }
    }

    func isReadPaused(_ id: SmuxStreamID) -> Bool { self.streams[id]?.readPaused ?? false }

    func closeStream(_ id: SmuxStreamID) {
        guard let stream = self.streams[id] else { return }
        if var mux = self.mux, let fin = mux.closeStream(id) {
            self.mux = mux
            self.sendMuxFrame(fin)
            self.context?.flush()
        }
        if let channel = stream.channel {
            stream.channel = nil  // its close may report back at once; the stream is done either way
            Self.close(channel, mode: .all)
        }
        self.dropStream(id)
    }
}
