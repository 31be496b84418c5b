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
        let result = self.machine.sendStreamMessage(
            payloadType: payloadType,
            payloadLength: payloadLength,
            isControl: isControl,
            now: self.now,
            writePayload: writePayload
        )
        switch result {
        case .write(let bytes, let headChanged, let acknowledgement):
            // A cumulative acknowledgement that was due goes just ahead, a message of its own in the same flush.
            if let acknowledgement { self.context?.write(self.wrapOutboundOut(.binary(acknowledgement)), promise: nil) }
            self.context?.write(self.wrapOutboundOut(.binary(bytes)), promise: nil)
            // Only a message that became the head can move the resend deadline earlier; an older head's
            // deadline is already set (and re-armed at channelReadComplete when acks change the RTO).
            if headChanged { self.armTimer() }
        case .held, .dropped:
            break
        case .overflow(let reason):
            // Data is sent only when canSend; the control reserve is exhausted only by a peer that opened
            // thousands of streams and acknowledged nothing.
            self.end(reason: reason, byPeer: false)
        }
    }
}
