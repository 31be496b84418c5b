import JumpgateWire
import NIOCore
import NIOPosix

extension PortSession {
    // MARK: basic mode (one connection at a time, raw bytes in Output payloads; spec §7.5)

    static let basicStreamID = SmuxStreamID(0)
    var isBasic: Bool { self.negotiated?.mode == .basic }

    func activateBasicConnection(_ channel: any Channel) throws {
        let stream = StreamState()
        stream.channel = channel
        self.streams[Self.basicStreamID] = stream
        self.totalConnections += 1
        try channel.pipeline.syncOperations.addHandler(StreamTCPHandler(session: self, id: Self.basicStreamID))
        self.delegate?.basicConnectionActivated(self, channel: channel)
    }

    func basicBytesReceived(_ data: ByteBuffer) {
        if let stream = self.streams[Self.basicStreamID], !stream.tcpClosed {
            if let channel = stream.channel {
                self.bytesOut += Int64(data.readableBytes)
                let count = data.readableBytes
                self.receiveBound.queued(count)
                let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
                channel.writeAndFlush(data).whenComplete { _ in
                    bound.value.receiveBound.written(count)
                    bound.value.applyReceiveBound()
                }
                self.applyReceiveBound()
            } else {
                self.holdEarly(data, in: stream)  // the agent's dial is still in progress
            }
            return
        }
        guard self.isAgent else { return }  // the client withheld the ack for this; it comes again
        // Agent: the target connection ended earlier; new data re-dials it.
        let stream = StreamState()
        self.holdEarly(data, in: stream)
        self.streams[Self.basicStreamID] = stream
        self.delegate?.streamRequested(self, id: Self.basicStreamID)
    }

    /// Sends the connection's bytes as Output payloads as far as the outgoing buffer allows.
    func pumpBasic() {
        guard let stream = self.streams[Self.basicStreamID], let negotiated = self.negotiated else { return }
        var sentSomething = false
        while !stream.backlog.isEmpty, self.reliability.canSend {
            let n = min(negotiated.maximumPayloadSize(sentByAgent: self.isAgent), stream.backlog.readableBytes)
            self.sendStreamMessage(payloadType: .output, payloadLength: n, isControl: false) {
                stream.backlog.move(n, into: &$0)
            }
            sentSomething = true
        }
        if stream.backlog.isEmpty {
            if stream.localEOF {
                self.basicConnectionFinished(stream)
                sentSomething = true
            }
        }
        let blocked = !stream.backlog.isEmpty
        if blocked != stream.readPaused {
            stream.readPaused = blocked
            if !blocked { stream.channel?.read() }
        }
        if sentSomething { self.flushDataChannel() }
    }

    /// The connection's last bytes are sent. Client: DisconnectToPort, then the next waiting connection.
    /// Agent: close the target connection and wait (new data from the client re-dials).
    func basicConnectionFinished(_ stream: StreamState) {
        // Detach first: closing can deliver the channel's last events right away (re-entrantly).
        guard self.streams[Self.basicStreamID] === stream else { return }
        self.streams[Self.basicStreamID] = nil
        self.forgetEarlyData(of: stream)
        if let channel = stream.channel {
            stream.channel = nil
            Self.close(channel, mode: .all)
        }
        guard !self.isAgent else { return }
        self.sendStreamMessage(payloadType: .flag, payload: FlagPayload.disconnectToPort.encoded())
        while !self.basicWaiting.isEmpty {
            let next = self.basicWaiting.removeFirst()
            guard next.isActive else { continue }
            do {
                try self.activateBasicConnection(next)
                return
            } catch {
                next.close(promise: nil)
            }
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

    /// Closes a connection with RST (SO_LINGER 0).
    static func reset(_ channel: any Channel) {
        guard let provider = channel as? any SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    func dropStream(_ id: SmuxStreamID) {
        if var mux = self.mux {
            _ = mux.abortStream(id)
            self.mux = mux
        }
        if let stream = self.streams.removeValue(forKey: id) { self.forgetEarlyData(of: stream) }
    }
}
