import JumpgateWire
import NIOCore

extension PortSession {
    // MARK: terminal sessions (shells)

    /// How long the agent waits for the client to acknowledge a program's last output before it ends the
    /// session anyway (as the official agent does).
    public static let terminalDrainTime = TimeAmount.seconds(2)

    /// Client: the user's terminal has this size (sent at the start and after each change).
    public func sendTerminalSize(_ size: TerminalSize) {
        guard self.negotiated?.isTerminal == true else { return }
        self.sendStreamMessage(payloadType: .size, payload: size.encoded())
        self.flushDataChannel()
    }

    /// Whether the terminal's output waits for the session (the send window is full, or the data channel is
    /// being resumed): reading the terminal is paused meanwhile.
    public var terminalOutputWaits: Bool {
        self.table.isReadPaused(StreamTable.basicStreamID) || !self.reliability.canSend || self.context == nil
    }

    /// Agent: the program on the terminal ended. Its exit status goes to a client that accepts it
    /// (`exit-code`), then the session ends once the client has everything, or after
    /// ``terminalDrainTime``. A normal end: reported as ended by the peer (the agent's status is Success).
    public func endTerminal(exitStatus: Int32?, reason: String) {
        if let exitStatus, self.negotiated?.extensions.contains(.exitCodes) == true {
            self.sendStreamMessage(payloadType: .exitCode, payload: ExitCodePayload(code: exitStatus).encoded())
        }
        self.context?.flush()
        self.withSession { machine, actions in
            machine.endWhenDelivered(
                reason: reason,
                byPeer: true,
                now: self.now,
                within: Self.terminalDrainTime,
                into: &actions
            )
        }
        self.armTimer()
    }
}
