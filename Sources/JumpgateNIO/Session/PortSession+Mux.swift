import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: smux

    func muxBytesReceived(_ bytes: ByteBuffer) {
        guard let parser = self.muxParser else { return }
        do {
            try parser.process(buffer: bytes) { frame in
                try self.muxFrameReceived(frame)
            }
        } catch {
            self.refused(.smuxProtocolError, "\(error)")
            self.end(reason: "smux protocol error: \(error)", byPeer: false)
        }
    }

    func muxFrameReceived(_ frame: SmuxFrame) throws {
        guard var mux = self.mux else { return }
        let event = try mux.frameReceived(frame)
        self.mux = mux
        self.logger.trace(
            "smux frame",
            metadata: [
                "command": "\(frame.command)", "jumpgate.stream_id": "\(frame.streamID)",
                "bytes": "\(frame.data.readableBytes)",
            ]
        )
        switch event {
        case .none:
            break
        case .streamOpened(let id, let update):
            if let update { self.sendMuxFrame(update) }
            self.streams[id] = StreamState()
            self.delegate?.streamRequested(self, id: id)
        case .refuse(let fin):
            self.sendMuxFrame(fin)
        case .data(let id, let data):
            self.streams[id]?.receivedData = true
            guard let stream = self.streams[id], !stream.tcpClosed else {
                // The local connection is gone: its data is dropped but counted as consumed, so the peer's
                // window stays open until its FIN comes. Otherwise a peer still sending (a target echoing a
                // killed transfer) stalls for ever and its connection never closes.
                self.consumed(id, data.readableBytes)
                return
            }
            guard let channel = stream.channel else {
                self.holdEarly(data, in: stream)
                return
            }
            self.writeToTCP(id, channel: channel, data)
        case .remoteClosed(let id, let fullyClosed):
            let refusal = self.refusals.finReceived(for: id, streamGotData: self.streams[id]?.receivedData ?? false)
            let refused = refusal != nil
            if let refusal { self.delegate?.streamFailed(self, id: id, reason: refusal.reason) }
            guard let stream = self.streams[id] else { return }
            if stream.channel == nil {
                stream.earlyFIN = true
                return
            }
            let halfClose = self.negotiated?.extensions.contains(.halfClose) == true
            // A refused stream never had a far end: its connection closes, as ssh -L closes one whose
            // channel could not be opened.
            if halfClose, !fullyClosed, !refused, let channel = stream.channel {
                Self.close(channel, mode: .output)
            } else {
                self.closeStream(id)
            }
        case .writable(let id):
            self.pumpStream(id)
        }
    }

    /// Writes stream data to its TCP connection. Inside a data-channel read the flush waits for
    /// channelReadComplete, so a read burst becomes one socket write per connection.
    func writeToTCP(_ id: SmuxStreamID, channel: any Channel, _ data: ByteBuffer) {
        let count = data.readableBytes
        self.bytesOut += Int64(count)
        if self.receiveBound.isEnabled {
            // smux v1 and basic mode: nothing but this bound limits what waits for a local socket, so each
            // write is counted until it completes.
            self.receiveBound.queued(count)
            let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            channel.write(data).whenComplete { result in
                bound.value.written(id, count, counted: true, success: (try? result.get()) != nil)
            }
            self.applyReceiveBound()
        } else {
            // smux v2: the stream's window bounds what the peer sends. Bytes a writable socket took count as
            // consumed at once (no promise per write); while the socket is not writable they are held back
            // from the window until it is (tcpWritable), so the peer stops at the window: the GlueHandler
            // pattern, with the window as the partner's read.
            channel.write(data, promise: nil)
            if channel.isWritable, self.streams[id]?.unconsumed ?? 0 == 0 {
                self.consumed(id, count)
            } else {
                self.streams[id]?.unconsumed += count
            }
        }
        if self.reading {
            if !self.unflushed.contains(where: { $0 === channel }) { self.unflushed.append(channel) }
        } else {
            channel.flush()
        }
    }

    /// A local connection became writable again: what it took meanwhile counts as consumed now.
    func tcpWritable(_ id: SmuxStreamID, channel: any Channel) {
        guard let stream = self.stream(id, of: channel), channel.isWritable, stream.unconsumed > 0 else { return }
        let count = stream.unconsumed
        stream.unconsumed = 0
        self.consumed(id, count)
    }

    /// A write to a local connection completed (or failed with its connection): the bytes leave the
    /// receive bound, and on success they count as consumed for the smux window.
    func written(_ id: SmuxStreamID, _ count: Int, counted: Bool, success: Bool) {
        if counted {
            self.receiveBound.written(count)
            self.applyReceiveBound()
        }
        if success { self.consumed(id, count) }
    }

    func consumed(_ id: SmuxStreamID, _ count: Int) {
        guard var mux = self.mux else { return }
        let update = mux.dataConsumed(on: id, count: count)
        self.mux = mux
        if let update {
            self.sendMuxFrame(update)
            // Inside a data-channel read the update goes out with the burst's acks (channelReadComplete).
            if !self.reading { self.context?.flush() }
        }
    }

    // MARK: receive bound (smux v1 and basic mode: nothing else bounds what waits for a local socket)

    /// Data for a stream whose connection is still being dialled: held, and counted in the bound.
    func holdEarly(_ data: ByteBuffer, in stream: StreamState) {
        stream.earlyData.append(data)
        stream.earlyBytes += data.readableBytes
        self.receiveBound.queued(data.readableBytes)
        self.applyReceiveBound()
    }

    func forgetEarlyData(of stream: StreamState) {
        guard stream.earlyBytes > 0 else { return }
        self.receiveBound.written(stream.earlyBytes)
        stream.earlyData = []
        stream.earlyBytes = 0
        self.applyReceiveBound()
    }

    /// Stops or restarts reading the data channel as the bound decides. Stopping leaves the peer's
    /// messages unacknowledged in TCP and the gateway, so its own send window fills and it stops reading
    /// its sources: backpressure end to end, as the official plugin's smux v1 session buffer does.
    func applyReceiveBound() {
        guard let change = self.receiveBound.evaluate() else { return }
        guard let channel = self.context?.channel else { return }  // applied when a channel attaches
        self.logger.debug(
            change == .pause ? "local connections are slow; pausing the data channel" : "resuming the data channel",
            metadata: ["queued": "\(self.receiveBound.queuedBytes)"]
        )
        Self.setReading(channel, change == .resume)
        if change == .resume { self.armTimer() }
    }

    static func setReading(_ channel: any Channel, _ reading: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: reading).whenSuccess {
            if reading { channel.read() }
        }
    }
}
