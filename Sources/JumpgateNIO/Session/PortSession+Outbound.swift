import JumpgateWire
import NIOCore

extension PortSession {
    // MARK: outbound messages

    func sendMuxFrame(_ frame: SmuxFrame) {
        var payload = ByteBuffer()
        payload.writeSmuxFrame(frame)
        self.sendStreamMessage(payloadType: .output, payload: payload)
    }

    /// Sends a control message (handshake, flags, smux SYN/FIN/UPD, connect errors): it may use the
    /// reserve above the data bound, so a full send window pauses the sources but never ends the session.
    func sendStreamMessage(payloadType: PayloadType, payload: ByteBuffer) {
        self.sendStreamMessage(payloadType: payloadType, payloadLength: payload.readableBytes, isControl: true) {
            $0.writeImmutableBuffer(payload)
        }
    }

    /// Sends the next stream message; `writePayload` writes its `payloadLength` bytes straight into the frame.
    /// Data (`isControl` false) is only sent after checking ``ReliableDeliveryStateMachine/canSend``.
    func sendStreamMessage(
        payloadType: PayloadType,
        payloadLength: Int,
        isControl: Bool,
        writePayload: (inout ByteBuffer) -> Void
    ) {
        guard !self.ended else { return }
        let frame = self.writer.streamMessage(
            sequenceNumber: self.reliability.nextSequenceNumber,
            createdDate: WallClock.nowMilliseconds(),
            payloadType: payloadType,
            payloadLength: payloadLength,
            writePayload: writePayload
        )
        do {
            if case .write(let bytes) = try self.reliability.send(frame, now: self.now, isControl: isControl) {
                self.context?.write(self.wrapOutboundOut(.binary(bytes)), promise: nil)
                // Only a message that became the head can move the resend deadline earlier; an older head's
                // deadline is already set (and re-armed at channelReadComplete when acks change the RTO).
                if self.reliability.unacknowledgedCount == 1 { self.armTimer() }
            }
        } catch {
            // Data is sent only when canSend; the control reserve is exhausted only by a peer that opened
            // thousands of streams and acknowledged nothing.
            self.end(
                reason:
                    "the peer acknowledged nothing while \(self.reliability.unacknowledgedCount) messages waited: \(error)",
                byPeer: false
            )
        }
    }

    func sendAcknowledgement(_ ack: ReliableDeliveryStateMachine.Acknowledgement) {
        guard let context = self.context,
            let frame = self.writer.acknowledgement(ack, createdDate: WallClock.nowMilliseconds())
        else { return }
        context.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
    }

    func sendAgentSessionState() {
        guard let context = self.context else { return }
        let frame = SessionMessageWriter.agentSessionState(
            sessionID: self.sessionID,
            createdDate: WallClock.nowMilliseconds()
        )
        context.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
    }

    func writeFrames(_ frames: [ByteBuffer]) {
        guard let context = self.context, !frames.isEmpty else { return }
        for frame in frames { context.write(self.wrapOutboundOut(.binary(frame)), promise: nil) }
        context.flush()
    }
}
