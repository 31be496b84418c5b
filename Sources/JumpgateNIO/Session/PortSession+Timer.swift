import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: timers

    /// The session's clock: its event loop's (virtual in tests), the system's before it has one.
    var now: NIODeadline { self.loop?.now ?? .now() }

    /// Schedules the timer for the earliest deadline of the handshake and of reliable delivery, unless one
    /// is already set at or before it (a timer that fires early finds nothing due and re-arms). Resends
    /// are not scheduled while the data channel is not writable or this end does not read it: a resend
    /// would only queue behind what the peer is not reading (backpressure, not loss), and acknowledgements
    /// wait unread in the socket; writability and the receive bound re-arm it.
    func armTimer() {
        guard let context = self.context, !self.ended else { return }
        var next: NIODeadline?
        if case .agent(let machine) = self.handshake, self.negotiated == nil { next = machine.deadline }
        if let deadline = self.reliability.acknowledgementDeadline { next = min(next ?? deadline, deadline) }
        if self.mayResend, let deadline = self.reliability.retransmitDeadline {
            next = min(next ?? deadline, deadline)
        }
        guard let next else { return }
        if let current = self.timerDeadline, current <= next { return }
        self.timer?.cancel()
        self.timerDeadline = next
        self.timerGeneration &+= 1
        let generation = self.timerGeneration
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(deadline: next) { bound.value.timerFired(generation) }
    }

    func cancelTimer() {
        self.timerGeneration &+= 1
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
    }

    /// Whether a resend may go now: the data channel is writable and this end reads it (see armTimer).
    var mayResend: Bool { (self.context?.channel.isWritable ?? false) && !self.table.receiveBound.isPaused }

    func timerFired(_ generation: UInt64) {
        guard generation == self.timerGeneration else { return }  // cancelled, and replaced since
        self.timer = nil
        self.timerDeadline = nil
        self.timerFirings += 1
        guard self.context != nil, !self.ended else { return }
        let now = self.now
        if case .agent(var machine) = self.handshake, self.negotiated == nil {
            let action = machine.timerFired(now: now)
            self.handshake = .agent(machine)
            self.runAgent(action)
        }
        let ack = self.reliability.acknowledgementTimerFired(now: now)
        self.sendAcknowledgement(ack)
        switch self.mayResend ? self.reliability.retransmitTimerFired(now: now) : .none {
        case .resend(let frame, _):
            self.context?.write(self.wrapOutboundOut(.binary(frame)), promise: nil)
        case .giveUp(let sequenceNumber):
            self.end(reason: "message \(sequenceNumber) was never acknowledged; giving up", byPeer: false)
        case .assumedDelivered(let count, let windowOpened):
            self.logger.info(
                "resent messages treated as delivered: the peer had them and does not acknowledge duplicates",
                metadata: ["count": "\(count)"]
            )
            if windowOpened { self.resumeBlockedStreams() }
        case .none:
            break
        }
        self.context?.flush()
        self.armTimer()
    }
}
