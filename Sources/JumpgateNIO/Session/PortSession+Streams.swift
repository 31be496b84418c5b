import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: streams: opening, attaching, refusing (the decisions are StreamTable's)

    /// Client: open a stream for an accepted local connection. In basic mode one connection is served at a
    /// time; later ones wait (unread) until it ends, as with the official plugin. Whether the connection's
    /// first bytes are waiting (its SYN then rides with them: ``StreamTable/open(into:dataWaiting:)``) is
    /// asked of its socket (``StreamSocketReads/bytesWaiting(on:)``) unless `bytesWaiting` says (tests, whose
    /// connections are not sockets).
    public func openStream(for channel: any Channel, bytesWaiting: Bool? = nil) throws -> SmuxStreamID {
        if !self.table.isBasic {
            guard self.inMachine({ machine in machine.reliability.canSendControl }) else {
                // The agent has acknowledged nothing for thousands of messages: refuse this connection only.
                throw WireError(.bufferFull, "the session's send buffer is full")
            }
        }
        let dataWaiting = !self.table.isBasic && (bytesWaiting ?? StreamSocketReads.bytesWaiting(on: channel))
        guard
            let opened = try self.withStreams({ table, actions in
                try table.open(into: &actions, dataWaiting: dataWaiting)
            })
        else {
            self.basicWaiting.append(channel)
            return StreamTable.basicStreamID
        }
        let (id, connection) = opened
        try self.glue(channel, id, connection)
        if self.table.isBasic { self.delegate?.basicConnectionActivated(self, channel: channel) }
        return id
    }

    /// Agent: the target connection for stream `id` is up. `prepare` runs first (the agent puts its
    /// connection recorder in the pipeline); if it throws (the pipeline is gone: the target closed as it
    /// opened), the connection is closed and the stream refused, as a failed dial is, and the error
    /// rethrown. Otherwise the stream would wait for a dial that is over, with the client's early data.
    public func attach(
        _ channel: any Channel,
        to id: SmuxStreamID,
        prepare: (any Channel) throws -> Void = { _ in }
    ) throws {
        do {
            try prepare(channel)
        } catch {
            channel.close(promise: nil)
            self.refuse(id, reason: "the connection to the destination ended as it opened")
            throw error
        }
        var actions: [StreamTable.Action] = []
        guard let connection = self.table.attach(id, into: &actions) else {
            channel.close(promise: nil)
            return
        }
        // What arrived early is written once the connection is known here.
        defer { self.perform(actions) }
        try self.glue(channel, id, connection)
    }

    /// Agent: the target could not be reached: tell the client (ConnectToPortError, then FIN).
    /// The owner logs why, as the event it is (an allow-list refusal is a security warning).
    public func refuse(_ id: SmuxStreamID, reason: String) {
        self.logger.debug("stream refused", metadata: ["jumpgate.stream_id": "\(id)", "reason": "\(reason)"])
        self.withStreams { table, actions in table.refuse(id, reason: reason, into: &actions) }
    }

    /// Glues a local connection to its stream: `StreamTCPHandler` reports its reads, EOF and close.
    func glue(_ channel: any Channel, _ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) throws {
        self.connections[connection] = channel
        do {
            try channel.pipeline.syncOperations.addHandler(
                StreamTCPHandler(session: self, id: id, connection: connection)
            )
        } catch {
            self.tcpClosed(id, connection)  // nothing will report it: the stream ends here
            throw error
        }
    }

    /// Client, basic mode: the connection being served ended; the next waiting one that is still open
    /// is served.
    func serveNextWaiting() {
        while !self.basicWaiting.isEmpty {
            let next = self.basicWaiting.removeFirst()
            guard next.isActive else { continue }
            do {
                _ = try self.openStream(for: next)
                return
            } catch {
                next.close(promise: nil)
            }
        }
    }

    // MARK: what local connections do (StreamTCPHandler)

    func tcpRead(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID, _ data: ByteBuffer) {
        guard self.table.localRead(id, connection, data) else { return }
        // What one wake-up read (one read on local and target connections: StreamSocketReads), on this and
        // every other connection of the session, goes out as one flush at the wake-up's end (flushDataChannel
        // queues it: flushAfterLoopTick).
        self.inTCPReadBurst = true
        self.pumpStream(id)
    }

    func tcpReadComplete() {
        self.inTCPReadBurst = false
    }

    /// Flushes the data channel once the event loop has handled every socket that was ready in this
    /// wake-up: NIO runs tasks queued meanwhile after the wake-up's I/O, so the messages of several local
    /// connections read in one wake-up (four database connections of one application, say) leave in one
    /// write instead of one each, and the gateway and the peer read them together. A lone connection's message
    /// leaves at the end of the wake-up that read it, after that wake-up's other events (a data-channel read,
    /// say); a session that ends first flushes it before its close.
    func flushAfterLoopTick() {
        guard !self.loopTickFlushQueued else { return }
        guard let loop = self.loop else { return self.context?.flush() ?? () }
        self.loopTickFlushQueued = true
        // The same closure every time: NIO's loop queues it as it is, with no allocation.
        loop.assumeIsolated().execute(self.loopTickFlush)
    }

    func tcpEOF(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) {
        self.tcpReadComplete()
        guard self.table.localEOF(id, connection) else { return }
        self.pumpStream(id)
    }

    func tcpClosed(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) {
        self.tcpReadComplete()
        self.connections[connection] = nil
        guard self.withStreams({ table, actions in table.localClosed(id, connection, into: &actions) }) else { return }
        self.pumpStream(id)
        self.withStreams { table, actions in table.localClosedAfterSending(id, connection, into: &actions) }
        self.flushAfterLoopTick()
    }

    /// A local connection became writable again: what it took meanwhile counts as consumed now.
    func tcpWritable(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) {
        guard let update = self.table.localWritable(id, connection) else { return }
        self.sendWindowUpdate(update)
    }

    /// Sends a window update now; inside a data-channel read it goes out with the burst's acks.
    func sendWindowUpdate(_ update: SmuxFrame) {
        self.sendMuxFrame(update)
        if !self.reading { self.flushDataChannel() }
    }

    func isReadPaused(_ id: SmuxStreamID) -> Bool { self.table.isReadPaused(id) }

    // MARK: sending stream data

    /// Moves a stream's waiting bytes into SSM messages as far as the window and the outgoing buffer
    /// allow; reading its connection stops while bytes wait.
    func pumpStream(_ id: SmuxStreamID) {
        guard self.inMachine({ machine in machine.negotiated != nil }) else { return }
        var sent = false
        while !self.ended, self.inMachine({ machine in machine.reliability.canSend }),
            let chunk = self.table.nextChunk(on: id)
        {
            // One copy: the socket's bytes go straight into the frame behind the SSM and smux headers.
            self.sendStreamMessage(payloadType: .output, payloadLength: chunk.payloadLength, isControl: false) {
                self.table.writeChunk(chunk, into: &$0)
            }
            sent = true
        }
        self.withStreams { table, actions in table.pumped(id, into: &actions) }
        if sent { self.flushDataChannel() }
    }

    func resumeBlockedStreams() {
        for id in self.table.blockedStreams { self.pumpStream(id) }
    }

    /// Flushes the data channel now or, while a local read burst is handled, at the end of the event-loop
    /// wake-up (``flushAfterLoopTick()``).
    func flushDataChannel() {
        if self.inTCPReadBurst {
            self.flushAfterLoopTick()
        } else {
            self.context?.flush()
        }
    }
}
