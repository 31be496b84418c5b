import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: carrying out the session state machine's actions

    /// Runs `body` on the session state machine, then carries out the actions it returned, in order. The
    /// action list is reused (no allocation per message); a call made while actions are carried out gets a
    /// list of its own.
    func withSession(_ body: (inout SessionStateMachine, inout [SessionStateMachine.Action]) -> Void) {
        var actions = self.spareSessionActions
        self.spareSessionActions = []
        body(&self.machine, &actions)
        self.perform(actions)
        actions.removeAll(keepingCapacity: true)
        self.spareSessionActions = actions
    }

    func perform(_ actions: [SessionStateMachine.Action]) {
        for action in actions {
            // Once the end is carried out, what the same batch still holds (a stream payload after the one
            // whose smux violation ended the session) is dropped with the session.
            guard !self.finished else { return }
            switch action {
            case .write(let frame):
                self.context?.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
            case .flush:
                self.context?.flush()
            case .established(let negotiated, let customerMessage):
                self.established(negotiated, customerMessage: customerMessage)
            case .streamData(let payload):
                if self.inTable({ table in table.isBasic }) {
                    self.withStreams { table, actions in table.basicDataReceived(payload, into: &actions) }
                } else {
                    self.muxBytesReceived(payload)
                }
            case .streamFlag(let flag):
                if flag == .connectToPortError {
                    // The official agent sends this before the FIN of the failed stream; the FIN names it.
                    self.table.connectToPortErrorReceived()
                } else if flag == .disconnectToPort {
                    // Basic mode: the client's connection ended; close the target's (dialled again on new data).
                    self.withStreams { table, actions in table.peerDisconnected(into: &actions) }
                }
            case .connectError(let error):
                _ = self.table.connectErrorReceived(error)
            case .agentStatus(let status):
                self.delegate?.agentStatusChanged(self, status: status)
            case .terminalSize(let size):
                self.delegate?.terminalResized(self, to: size)
            case .standardError(let text):
                self.delegate?.standardErrorReceived(self, text)
            case .exitCode(let code):
                self.delegate?.exitCodeReceived(self, code)
            case .refused(let refusal, let detail):
                self.refused(refusal, detail)
            case .sendWindowOpened:
                self.resumeBlockedStreams()
            case .notice(let notice):
                self.log(notice)
            case .awaitResume(let unacknowledged):
                self.logger.info(
                    "data channel lost; holding streams while it is resumed",
                    metadata: ["unacknowledged": "\(unacknowledged)"]
                )
                self.onDisconnect?(self)
            case .ended(let reason, let byPeer):
                self.finish(reason: reason, byPeer: byPeer)
            }
        }
    }

    /// The handshake's result: the streams start (basic mode's agent dials the destination right away,
    /// spec §7.5), and the owner hears of it.
    func established(_ negotiated: NegotiatedSession, customerMessage: String) {
        if case .mux(let version, _) = negotiated.mode {
            self.muxParser = SmuxFrameParser(version: version)
        }
        self.withStreams { table, actions in table.establish(negotiated, into: &actions) }
        self.delegate?.sessionEstablished(self, negotiated: negotiated, customerMessage: customerMessage)
    }

    func log(_ notice: SessionStateMachine.Notice) {
        switch notice {
        case .resumed(let resent):
            self.logger.info("data channel resumed", metadata: ["resent": "\(resent)"])
        case .publicationPaused:
            self.logger.info("the gateway paused publication: the other side is away and its buffer is full")
        case .publicationResumed(let resent):
            self.logger.info("the gateway resumed publication", metadata: ["resent": "\(resent)"])
        case .assumedDelivered(let count):
            self.logger.info(
                "resent messages treated as delivered: the peer had them and does not acknowledge duplicates",
                metadata: ["count": "\(count)"]
            )
        }
    }
}
