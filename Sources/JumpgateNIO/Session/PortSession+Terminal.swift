import JumpgateWire
import NIOCore

extension PortSession {
    // MARK: terminal sessions (shells)

    /// How long the agent waits for the client to acknowledge a program's last output before it ends the
    /// session anyway (as the official agent does).
    public static let terminalDrainTime = TimeAmount.seconds(2)
    /// The same for a non-interactive command, whose output must arrive whole however slowly its reader
    /// takes it: in practice, until delivered (a reader that stopped leaves the session idle, and the
    /// gateway's idle timeout and maximum duration end it).
    public static let commandOutputDrainTime = TimeAmount.hours(24)

    /// Client: the user's terminal has this size (sent at the start and after each change).
    public func sendTerminalSize(_ size: TerminalSize) {
        guard self.negotiated?.isTerminal == true else { return }
        self.sendStreamMessage(payloadType: .size, payload: size.encoded())
        self.flushDataChannel()
    }

    /// Whether the terminal's output waits for the session (the send window is full, or the data channel is
    /// being resumed): reading the terminal is paused meanwhile.
    public var terminalOutputWaits: Bool {
        self.table.isReadPaused(StreamTable.basicStreamID)
            || !self.inMachine({ machine in machine.reliability.canSend }) || self.context == nil
    }

    /// Agent: what a non-interactive command wrote to its standard error, sent as stderr payloads (type 11)
    /// in order with its standard output. Send only while ``standardErrorWaits`` is false; one read past the
    /// send window is the overshoot the window allows.
    public func sendStandardError(_ text: ByteBuffer) {
        guard let negotiated = self.negotiated, negotiated.isTerminal, self.isAgent else { return }
        var rest = text
        let limit = negotiated.maximumPayloadSize(sentByAgent: true)
        while let chunk = rest.readSlice(length: min(limit, rest.readableBytes)), chunk.readableBytes > 0 {
            self.sendStreamMessage(payloadType: .stdErr, payloadLength: chunk.readableBytes, isControl: false) {
                $0.writeImmutableBuffer(chunk)
            }
        }
        self.flushDataChannel()
    }

    /// Whether standard error's reading waits (the send window is full, or the data channel is being
    /// resumed).
    public var standardErrorWaits: Bool {
        !self.inMachine({ machine in machine.reliability.canSend }) || self.context == nil
    }

    /// Agent: the program on the terminal ended. Its exit status goes to a client that accepts it
    /// (`exit-code`), then the session ends once the client has everything, or after `within`
    /// (``terminalDrainTime`` for a program on a terminal, ``commandOutputDrainTime`` for a command's output). A normal end: reported as ended by the peer (the agent's status is Success).
    public func endTerminal(exitStatus: Int32?, reason: String, within: TimeAmount = PortSession.terminalDrainTime) {
        if let exitStatus, self.negotiated?.extensions.contains(.exitCodes) == true {
            self.sendStreamMessage(payloadType: .exitCode, payload: ExitCodePayload(code: exitStatus).encoded())
        }
        self.context?.flush()
        self.withSession { machine, actions in
            machine.endWhenDelivered(
                reason: reason,
                byPeer: true,
                now: self.now,
                within: within,
                into: &actions
            )
        }
        self.armTimer()
    }
}
