import JumpgateWire
import Logging
import NIOCore

extension PortSession {
    // MARK: timers

    /// The session's clock: its event loop's (virtual in tests), the system's before it has one.
    var now: NIODeadline { self.loop?.now ?? .now() }

    /// Schedules the timer for the earliest deadline the session state machine returns, unless one
    /// is already set at or before it (a timer that fires early finds nothing due and re-arms). Resends
    /// are not scheduled while the data channel is not writable or this end does not read it: a resend
    /// would only queue behind what the peer is not reading (backpressure, not loss), and acknowledgements
    /// wait unread in the socket; writability and the receive bound re-arm it.
    func armTimer() {
        guard let context = self.context else { return }
        let mayResend = self.mayResend
        guard
            let next = self.inMachine({ machine in machine.deadline(mayResend: mayResend) })
        else { return }
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
        let mayResend = self.mayResend
        self.withSession { machine, actions in machine.timerFired(now: self.now, mayResend: mayResend, into: &actions) }
        self.armTimer()
    }
}
