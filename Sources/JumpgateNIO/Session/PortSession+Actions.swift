import JumpgateWire
import Logging
import NIOCore
import NIOPosix

extension PortSession {
    // MARK: carrying out the stream table's actions

    /// Runs `body` on the stream table, then carries out the actions it returned, in order. The action list
    /// is reused (no allocation per frame); a call made while actions are carried out gets a list of its own.
    @discardableResult
    func withStreams<Result>(
        _ body: (inout StreamTable, inout [StreamTable.Action]) throws -> Result
    ) rethrows -> Result {
        var actions = self.spareActions
        self.spareActions = []
        let result = try body(&self.table, &actions)
        self.perform(actions)
        actions.removeAll(keepingCapacity: true)
        self.spareActions = actions
        return result
    }

    /// Carries out `actions` in order. Consecutive smux frames go in one message, up to ``framesPerMessage``
    /// bytes: one message, acknowledgement and relay instead of one each. Today that is a new stream's SYN
    /// and window update (smux v2), and the client's SYN, window update and FIN of a connection that ended
    /// before its first bytes were read (``StreamTable/open(into:dataWaiting:)``); another FIN is always
    /// followed by its connection's close or reset, or comes alone. smux is a byte stream over the messages,
    /// so any receiver takes several frames in one payload.
    func perform(_ actions: [StreamTable.Action]) {
        var sent = false
        var frames = ByteBuffer()
        for action in actions {
            if case .sendFrame(let frame) = action {
                if frames.readableBytes + SmuxFrame.headerSize + frame.data.readableBytes > Self.framesPerMessage {
                    self.sendGathered(&frames)
                }
                frames.writeSmuxFrame(frame)
                sent = true
                continue
            }
            // Everything else keeps its place after the frames before it.
            self.sendGathered(&frames)
            switch action {
            case .sendFrame:
                break  // gathered above
            case .sendFlag(let flag):
                self.sendStreamMessage(payloadType: .flag, payload: flag.encoded())
                sent = true
            case .sendConnectError(let error):
                self.sendStreamMessage(payloadType: .jumpgateConnectError, payload: error.encoded())
                sent = true
            case .write(let connection, let id, let data, let confirm):
                self.writeToLocal(connection, id, data, confirm: confirm)
            case .close(let connection, let closing):
                let channel =
                    closing == .all ? self.connections.removeValue(forKey: connection) : self.connections[connection]
                if let channel { Self.close(channel, mode: closing == .all ? .all : .output) }
            case .reset(let connection):
                if let channel = self.connections.removeValue(forKey: connection) { Self.reset(channel) }
            case .resumeReading(let connection):
                self.connections[connection]?.read()
            case .pump(let id):
                self.pumpStream(id)
            case .dial(let id):
                self.delegate?.streamRequested(self, id: id)
            case .streamFailed(let id, let reason):
                self.delegate?.streamFailed(self, id: id, reason: reason)
            case .serveNextWaiting:
                self.serveNextWaiting()
            case .readDataChannel(let reading):
                self.setDataChannelReading(reading)
            case .endSession(let reason):
                self.end(reason: reason, byPeer: false)
            case .terminalEnded:
                self.delegate?.terminalEnded(self)
            }
        }
        self.sendGathered(&frames)
        // Inside a data-channel read, what was sent goes out with the burst's acks (channelReadComplete).
        if sent, !self.reading { self.flushDataChannel() }
    }

    /// Sends the smux frames ``perform(_:)`` gathered, if any, as one message, and empties the buffer.
    private func sendGathered(_ frames: inout ByteBuffer) {
        guard frames.readableBytes > 0 else { return }
        self.sendStreamMessage(payloadType: .output, payload: frames)
        frames.clear()
    }

    /// Writes stream data to its local connection. Inside a data-channel read the flush waits for
    /// channelReadComplete, so a read burst becomes one socket write per connection.
    func writeToLocal(_ connection: StreamTable.ConnectionID, _ id: SmuxStreamID, _ data: ByteBuffer, confirm: Bool) {
        var data = data
        let count = data.readableBytes
        guard let channel = self.connections[connection] else {
            // Gone before the bytes could be written (a target's early data, when it closed as it was
            // attached): the peer's window gets them back all the same, or a peer that spent it would stall.
            self.withStreams { table, actions in
                if confirm {
                    table.localWriteCompleted(id, count: count, success: false, into: &actions)
                } else {
                    table.localWriteDropped(id, count: count, into: &actions)
                }
            }
            return
        }
        if self.reading, !self.lendsRead(count, to: channel) { data = data.ownedCopy() }
        if confirm {
            let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            channel.write(data).whenComplete { result in
                let success = (try? result.get()) != nil
                bound.value.withStreams { table, actions in
                    table.localWriteCompleted(id, count: count, success: success, into: &actions)
                }
            }
        } else {
            channel.write(data, promise: nil)
            if let update = self.table.localWritten(id, connection, count: count, socketWritable: channel.isWritable) {
                self.sendWindowUpdate(update)
            }
        }
        if !self.reading { channel.flush() }
    }

    /// Inside a data-channel read: whether `count` bytes the read carries for `channel` may be written as
    /// they are, possibly a slice of TLS's read buffer (borrowed), rather than copied; also notes the
    /// channel for the flush at channelReadComplete. They may when nothing was queued on `channel` before
    /// this read: that flush then puts them on the socket before TLS reads again (a socket that takes only
    /// part costs TLS's next read a copy of its buffer, no more). A connection that still had bytes queued
    /// (a slow reader) would keep them past the read, so it gets copies. Below ``smallestLent`` bytes are
    /// copied without asking: a copy of a few KiB costs less than the look-up (`bufferedWritableBytes`), which
    /// is made once per read and connection.
    func lendsRead(_ count: Int, to channel: any Channel) -> Bool {
        let index: Int
        if let found = self.unflushed.firstIndex(where: { $0.channel === channel }) {
            index = found
        } else {
            index = self.unflushed.count
            self.unflushed.append(UnflushedConnection(channel: channel))
        }
        defer { self.unflushed[index].written += count }
        guard count >= Self.smallestLent else { return false }
        if let lends = self.unflushed[index].lends { return lends }
        // What this read wrote to it so far is queued, unflushed; anything beyond that was there before.
        let queued = (try? channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? nil
        let lends = channel.isWritable && queued == self.unflushed[index].written
        self.unflushed[index].lends = lends
        return lends
    }

    /// Payloads below this size are copied rather than lent to a local connection (``lendsRead(_:to:)``).
    static let smallestLent = 16 * 1024
    /// The most bytes of smux frames ``perform(_:)`` gathers into one message: the official payload size,
    /// which every peer takes.
    static let framesPerMessage = JumpgateExtensions.officialPayloadSize

    /// smux bytes from the peer: parsed into frames (they are not aligned with messages), each handed to
    /// the table. A smux violation ends the session.
    func muxBytesReceived(_ bytes: ByteBuffer) {
        // Taken out while its frames are handled, and put back after. Nothing handling a frame delivers
        // more of the peer's output (data-channel reads are not re-entered), which would find no parser.
        guard var parser = self.muxParser else { return }
        self.muxParser = nil
        defer { self.muxParser = parser }
        do {
            try parser.parse(bytes) { frame in
                guard !self.finished else { return }  // a frame before it ended the session
                self.logger.trace(
                    "smux frame",
                    metadata: [
                        "command": "\(frame.command)", "jumpgate.stream_id": "\(frame.streamID)",
                        "bytes": "\(frame.data.readableBytes)",
                    ]
                )
                try self.withStreams { table, actions in try table.frameReceived(frame, into: &actions) }
            }
        } catch {
            self.refused(.smuxProtocolError, "\(error)")
            self.end(reason: "smux protocol error: \(error)", byPeer: false)
        }
    }

    /// The receive bound stops or restarts reading the data channel (applied when one attaches, if none is).
    func setDataChannelReading(_ reading: Bool) {
        guard let channel = self.context?.channel else { return }
        self.logger.debug(
            reading ? "resuming the data channel" : "local connections are slow; pausing the data channel",
            metadata: ["queued": "\(self.table.receiveBound.queuedBytes)"]
        )
        Self.setReading(channel, reading)
        if reading { self.armTimer() }
    }

    static func setReading(_ channel: any Channel, _ reading: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: reading).whenSuccess {
            if reading { channel.read() }
        }
    }

    /// Closes a stream's TCP channel once everything already written to it is on the socket: NIO fails
    /// pending writes on a full close (and a close of the output escalates to one when the input is
    /// already closed), which would cut off the end of the data the peer sent before its FIN.
    static func close(_ channel: any Channel, mode: CloseMode) {
        channel.writeAndFlush(ByteBuffer()).whenComplete { _ in
            channel.close(mode: mode, promise: nil)
        }
    }

    /// Closes a connection with RST (SO_LINGER 0). A channel that is not a socket (a terminal: the user's, or
    /// a shell's PTY) has no RST: what was written to it is flushed, then it closes.
    static func reset(_ channel: any Channel) {
        guard let provider = channel as? any SocketOptionProvider else {
            Self.close(channel, mode: .all)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { result in
            switch result {
            case .success: channel.close(promise: nil)
            // Not a socket after all (a pipe: the client's standard input and output for
            // AWS-StartSSHSession): no RST there; what was written is flushed first.
            case .failure: Self.close(channel, mode: .all)
            }
        }
    }
}
