/// How a port session moves bytes, decided separately on each side from the other's version (spec §7.3).
public enum PortSessionMode: Hashable, Sendable {
    /// One TCP connection at a time, raw bytes in Output payloads.
    case basic
    /// smux over Output payloads, any number of connections.
    case mux(smuxVersion: UInt8, keepAlive: Bool)
}

extension PortSessionMode: CustomStringConvertible {
    /// `basic`, `smux v2`, `smux v1 with keep-alive`: for logs.
    public var description: String {
        switch self {
        case .basic: return "basic"
        case .mux(let version, let keepAlive): return "smux v\(version)" + (keepAlive ? " with keep-alive" : "")
        }
    }
}

/// What both ends agreed in the handshake.
public struct NegotiatedSession: Hashable, Sendable {
    public var sessionType: String
    /// The resolved session document properties (portNumber, host, type, localPortNumber...).
    public var properties: [String: String]
    public var agentVersion: String
    public var clientVersion: String
    public var mode: PortSessionMode
    public var extensions: JumpgateExtensions

    public init(
        sessionType: String,
        properties: [String: String],
        agentVersion: String,
        clientVersion: String,
        mode: PortSessionMode,
        extensions: JumpgateExtensions
    ) {
        self.sessionType = sessionType
        self.properties = properties
        self.agentVersion = agentVersion
        self.clientVersion = clientVersion
        self.mode = mode
        self.extensions = extensions
    }

    /// The largest stream payload a side may send: 64 KiB of a connection's bytes both ways with the
    /// large-payloads extension, plus, in mux mode, the headers of the two smux frames that carry them
    /// (65,552 bytes). A read of a local or target connection returns at most 64 KiB (`StreamSocketReads`),
    /// so a full read is one message; with the headers counted inside 64 KiB it was a message of 65,520
    /// bytes and another of 16, each sent, relayed, acknowledged and written on its own. Every Jumpgate receiver
    /// takes payloads up to the SSM decoder's 1 MiB, older Jumpgate peers included.
    ///
    /// Without the extension (an official peer), a client sends 1024 bytes, headers included, as the
    /// official plugin does and as AWS's relay expects of clients; an agent still sends the large
    /// payloads, since the official plugin writes whatever Output payload arrives into its connection
    /// (session-manager-plugin's mux and basic `WriteStream`; it sets no WebSocket read limit), and a
    /// Jumpgate agent only ever talks to a Jumpgate gateway. So downloads to the official plugin are not
    /// held to 1 KiB messages.
    public func maximumPayloadSize(sentByAgent: Bool) -> Int {
        guard self.extensions.contains(.largePayloads) || sentByAgent else {
            return JumpgateExtensions.officialPayloadSize
        }
        guard case .mux = self.mode else { return JumpgateExtensions.largePayloadSize }
        return JumpgateExtensions.largePayloadSize + 2 * SmuxFrame.headerSize
    }

    /// The session types whose stream is a program's (a shell, an interactive command, a non-interactive
    /// command): raw bytes both ways in basic mode, standard error and the exit code to the client, and the
    /// session ending when the program does.
    public static let terminalSessionTypes: Set<String> = [
        "Standard_Stream", "InteractiveCommands", "NonInteractiveCommands",
    ]

    /// Whether the stream is a program's (see ``terminalSessionTypes``) rather than forwarded connections.
    public var isTerminal: Bool { Self.terminalSessionTypes.contains(self.sessionType) }

    /// Whether the program runs on a terminal (a shell, an interactive command): the client's terminal goes
    /// into raw mode and sends its size. A non-interactive command's output is read through pipes instead.
    public var needsTerminal: Bool { self.isTerminal && self.sessionType != "NonInteractiveCommands" }

    /// Whether `type` selects TCP listening (basic or mux) rather than standard-stream forwarding.
    public var isLocalPortForwarding: Bool { self.properties["type"] == "LocalPortForwarding" }
}
