import NIOCore

extension StreamTable {
    // MARK: what the peer sends

    /// A smux frame from the peer. Throws on a smux protocol violation (the session must end).
    public mutating func frameReceived(_ frame: SmuxFrame, into actions: inout [Action]) throws(WireError) {
        guard self.mux != nil else { return }
        let event = try self.mux!.frameReceived(frame)  // in place: a copy would copy its stream dictionary
        switch event {
        case .none:
            break
        case .streamOpened(let id):
            self.streams[id] = Stream(serial: self.newSerial())
            actions.append(.dial(id))
        case .refuse(let fin):
            actions.append(.sendFrame(fin))
        case .data(let id, let data):
            guard let stream = self.streams[id], !stream.localGone else {
                // The local connection is gone: its data is dropped but counted as consumed, so the peer's
                // window stays open until its FIN comes. Otherwise a peer still sending (a target echoing a
                // killed transfer) stalls for ever and its connection never closes.
                self.consumed(data.readableBytes, on: id, grow: false, into: &actions)
                return
            }
            if stream.attached {
                self.deliver(data, to: id, stream.serial, into: &actions)
            } else {
                self.holdEarly(data, on: id)
            }
        case .remoteClosed(let id, let fullyClosed, let receivedData):
            // smux knows whether data came, also for a stream this table forgot (its connection closed
            // first): the official agent's flag and FIN for a refused stream can come after such a FIN.
            let refusal = self.refusals.finReceived(for: id, streamGotData: receivedData)
            if let refusal { actions.append(.streamFailed(id, reason: refusal.reason)) }
            guard var stream = self.streams[id] else { break }
            guard stream.attached else {
                stream.earlyFIN = true
                self.streams[id] = stream
                break
            }
            // A refused stream never had a far end: its connection closes, as ssh -L closes one whose
            // channel could not be opened.
            if self.halfClose, !fullyClosed, refusal == nil {
                actions.append(.close(stream.serial, .output))
            } else {
                self.closeStream(id, into: &actions)
            }
        case .writable(let id):
            actions.append(.pump(id))
        }
        self.evaluateReceiveBound(into: &actions)
    }

    /// Basic mode: the peer's bytes for the one connection.
    public mutating func basicDataReceived(_ data: ByteBuffer, into actions: inout [Action]) {
        if let stream = self.streams[Self.basicStreamID], !stream.localGone {
            if stream.attached {
                self.deliver(data, to: Self.basicStreamID, stream.serial, into: &actions)
            } else {
                self.holdEarly(data, on: Self.basicStreamID)  // the agent's dial is still in progress
            }
        } else if self.isAgent, !self.isTerminal {
            // Agent: the target connection ended earlier; new data dials it again (a terminal, never).
            self.streams[Self.basicStreamID] = Stream(serial: self.newSerial())
            self.holdEarly(data, on: Self.basicStreamID)
            actions.append(.dial(Self.basicStreamID))
        }
        // A client without a connection withheld the acknowledgement for this; it comes again.
        self.evaluateReceiveBound(into: &actions)
    }

    /// Whether a basic-mode client must withhold the acknowledgement of an Output message: it has no local
    /// connection to deliver it to yet (the agent resends), as the official plugin does.
    public var withholdsBasicOutput: Bool {
        self.isBasic && !self.isAgent && !self.isTerminal && self.streams[Self.basicStreamID] == nil
    }

    /// Agent, basic mode: the client's connection ended (DisconnectToPort): the target's closes too, and
    /// new data from the client dials it again.
    public mutating func peerDisconnected(into actions: inout [Action]) {
        guard self.isAgent, self.isBasic, !self.isTerminal,
            var stream = self.streams.removeValue(forKey: Self.basicStreamID)
        else {
            return
        }
        self.forgetEarlyData(of: &stream)
        if stream.attached { actions.append(.close(stream.serial, .all)) }
        self.evaluateReceiveBound(into: &actions)
    }

    /// Client: a ConnectToPortError flag arrived (it belongs to the next FIN of a stream that got no data).
    public mutating func connectToPortErrorReceived() {
        self.refusals.flagReceived()
    }

    /// Client: the agent's reason for refusing stream `id` (`connect-errors`); false when the session
    /// did not negotiate it (the message is unexpected).
    public mutating func connectErrorReceived(_ error: ConnectErrorPayload) -> Bool {
        guard !self.isAgent, self.connectErrors else { return false }
        self.refusals.reasonReceived(error.reason, for: SmuxStreamID(error.streamID))
        return true
    }

    // MARK: writes to local connections

    /// Writes `data` to stream `id`'s connection, counting it.
    mutating func deliver(
        _ data: ByteBuffer,
        to id: SmuxStreamID,
        _ connection: ConnectionID,
        into actions: inout [Action]
    ) {
        let count = data.readableBytes
        self.bytesOut += Int64(count)
        // smux v1 and basic mode: nothing but the receive bound limits what waits for a local socket, so
        // each write is counted until it completes. smux v2: the stream's window bounds it.
        let confirm = self.receiveBound.isEnabled
        if confirm { self.receiveBound.queued(count) }
        actions.append(.write(connection, id, data, confirm: confirm))
    }

    /// Data for a stream whose connection is still being dialled: held (a copy: it outlives the read it
    /// came in, which may have lent it), and counted in the bound. Appended in place: a copy of the stream
    /// would copy its list at every frame.
    mutating func holdEarly(_ data: ByteBuffer, on id: SmuxStreamID) {
        self.streams[id]!.early.append(data.ownedCopy())
        self.streams[id]!.earlyBytes += data.readableBytes
        self.receiveBound.queued(data.readableBytes)
    }

    /// smux v2, after an unconfirmed ``Action/write(_:_:_:confirm:)``: bytes a writable socket took count as
    /// consumed at once (no promise per write); while it is not writable they are held back from the
    /// window until it is (``localWritable(_:_:)``), so the peer stops at the window: the GlueHandler
    /// pattern, with the window as the partner's read. Returns the window update to send, if one is due.
    public mutating func localWritten(
        _ id: SmuxStreamID,
        _ connection: ConnectionID,
        count: Int,
        socketWritable: Bool
    ) -> SmuxFrame? {
        guard var stream = self.streams[id], stream.serial == connection else { return nil }
        if socketWritable, stream.unconsumed == 0 {
            return self.consumed(count, on: id)
        }
        stream.unconsumed += count
        self.streams[id] = stream
        return nil
    }

    /// A local connection became writable again: what it took meanwhile counts as consumed now.
    public mutating func localWritable(_ id: SmuxStreamID, _ connection: ConnectionID) -> SmuxFrame? {
        guard self.owns(id, connection), let count = self.streams[id]?.unconsumed, count > 0 else { return nil }
        self.streams[id]!.unconsumed = 0
        return self.consumed(count, on: id)
    }

    /// A confirmed write completed (or failed with its connection): the bytes leave the receive bound, and
    /// on success they count as consumed.
    public mutating func localWriteCompleted(
        _ id: SmuxStreamID,
        count: Int,
        success: Bool,
        into actions: inout [Action]
    ) {
        self.receiveBound.written(count)
        if success { self.consumed(count, on: id, into: &actions) }
        self.evaluateReceiveBound(into: &actions)
    }

    /// Bytes for a local connection that was gone before they could be written (an attaching target's early
    /// data, when it closed at once): dropped, but credited to the peer's window without growing it.
    public mutating func localWriteDropped(_ id: SmuxStreamID, count: Int, into actions: inout [Action]) {
        self.consumed(count, on: id, grow: false, into: &actions)
    }

    /// `grow` false: counted as consumed without growing the window (``SmuxSession/dataConsumed(on:count:grow:)``).
    mutating func consumed(_ count: Int, on id: SmuxStreamID, grow: Bool = true, into actions: inout [Action]) {
        if let update = self.mux?.dataConsumed(on: id, count: count, grow: grow) { actions.append(.sendFrame(update)) }
    }

    mutating func consumed(_ count: Int, on id: SmuxStreamID) -> SmuxFrame? {
        self.mux?.dataConsumed(on: id, count: count) ?? nil
    }
}
