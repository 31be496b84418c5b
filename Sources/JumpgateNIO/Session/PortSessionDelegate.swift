import JumpgateWire
import NIOCore

/// What a port session tells its owner (the agent or the client program).
public protocol PortSessionDelegate: AnyObject {
    /// The handshake finished: the client starts listening, the agent starts accepting streams.
    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String)
    /// Agent: a stream was opened; connect it (call ``PortSession/attach(_:to:)`` or ``PortSession/refuse(_:reason:)``).
    func streamRequested(_ session: PortSession, id: SmuxStreamID)
    /// Client: the agent could not connect a stream to the destination; `reason` is the agent's, when it
    /// sends one (the `connect-errors` extension; official agents say nothing).
    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?)
    /// The session is over (terminated, channel closed, protocol error); `reason` says why.
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool)
    /// Client, basic mode: a waiting local connection is now the one being served.
    func basicConnectionActivated(_ session: PortSession, channel: any Channel)
    /// Client: the gateway says the agent went away (its connections may be lost) or came back.
    func agentStatusChanged(_ session: PortSession, status: AgentStatusPayload)
    /// Something from the peer was refused (dropped; a smux violation also ends the session). Called on
    /// the session's event loop, once per refusal: the owner counts and summarises.
    func messageRefused(_ session: PortSession, _ refusal: SessionRefusal)
    /// Agent, terminal session: the client's terminal has a new size.
    func terminalResized(_ session: PortSession, to size: TerminalSize)
    /// Agent, terminal session: the program's terminal closed and its output is sent; find its exit status
    /// and call ``PortSession/endTerminal(exitStatus:reason:)``.
    func terminalEnded(_ session: PortSession)
    /// Client, terminal session: text the agent sent for standard error.
    func standardErrorReceived(_ session: PortSession, _ text: ByteBuffer)
    /// Client, terminal session: the program's exit status (the session ends next).
    func exitCodeReceived(_ session: PortSession, _ code: Int32)
}

extension PortSessionDelegate {
    public func basicConnectionActivated(_ session: PortSession, channel: any Channel) {}
    public func agentStatusChanged(_ session: PortSession, status: AgentStatusPayload) {}
    public func messageRefused(_ session: PortSession, _ refusal: SessionRefusal) {}
    public func terminalResized(_ session: PortSession, to size: TerminalSize) {}
    public func terminalEnded(_ session: PortSession) {}
    public func standardErrorReceived(_ session: PortSession, _ text: ByteBuffer) {}
    public func exitCodeReceived(_ session: PortSession, _ code: Int32) {}
}

/// What went through a port session's local connections (client: the laptop's; agent: the targets').
public struct PortSessionTraffic: Sendable, Equatable {
    /// Connections open now, and accepted (or dialled) since the session started.
    public var openConnections = 0
    public var totalConnections = 0
    /// Bytes read from local connections (sent into the tunnel), and written to them (out of the tunnel).
    public var bytesIn: Int64 = 0
    public var bytesOut: Int64 = 0
    public init() {}
}
