import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The laptop side of one port-forwarding session: connects the data channel, runs the handshake,
/// listens on the local port and opens a smux stream per accepted connection. Prints the official
/// plugin's lines word for word.
public final class PortForwarder: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Ended here, by the user (Ctrl+C, SIGTERM, the end of `--exec`): exit status 0.
        case endedByUser
        /// Ended by the other side (terminated from the API, the agent shut down or was lost, the
        /// gateway's idle timeout or maximum duration); `reason` is the gateway's or agent's text.
        case ended(reason: String)
        /// Could not start, or ended here because something broke (resuming gave up, a protocol error).
        case failed(String)
        /// A shell session's program ended with this status (a Jumpgate agent sends it: `exit-code`).
        case exited(Int32)

        /// The exit status of `jumpgate forward`, `jumpgate start-session` and the plugin (docs/CLIENT.md).
        public var exitStatus: Int32 {
            switch self {
            case .endedByUser: return 0
            case .failed: return 1
            case .ended: return 2
            case .exited(let status): return status
            }
        }
    }

    let grant: SessionGrant
    let localPort: Int
    let bindHost: String
    let caFile: String?
    /// The local address to reach the gateway from (nil: the system chooses).
    let sourceAddress: String?
    /// Signs the data channel's upgrade with the user's credentials, as the official plugin does since
    /// 1.2.764.0 (the opening frame's token still authenticates the session); nil sends it unsigned.
    let upgradeSigner: SigV4Signer?
    let console: any ForwarderConsole
    let logger: Logger
    let eventLoop: any EventLoop
    /// A listener bound before the session (jumpgate forward); nil binds after the handshake.
    let prebound: LocalListener?
    /// Called for each accepted local connection (on the event loop), e.g. for `--format json` events.
    let onAccept: (@Sendable (any Channel) -> Void)?
    /// Called when the agent could not connect a local connection's stream, with its reason if it gave one.
    let onConnectFailure: (@Sendable (String?) -> Void)?
    /// Called when the gateway says the session's agent went away or came back (see AgentStatusPayload).
    let onAgentStatus: (@Sendable (AgentStatusPayload) -> Void)?
    /// ResumeSession for this session (a new token and StreamUrl); nil: a dropped data channel ends it.
    /// ResumeSession: the session id, and whether to ask for the relay-blind path again.
    let resume: (@Sendable (String, Bool) async throws -> SessionGrant)?
    /// How long to keep trying to resume after the data channel drops.
    let resumeTimeout: TimeAmount
    let state = NIOLockedValueBox(State())

    /// The session object is only touched on `eventLoop` (`NIOLoopBound` checks it at every access); the
    /// box hands the rest between tasks.
    struct State: Sendable {
        var session: NIOLoopBound<PortSession>?
        /// ``terminate()`` ran (on the event loop): nothing resumes from now on.
        var terminated = false
        var listener: LocalListener?
        var dataChannel: (any Channel)?
        var printedFirstAccept = false
        /// When the current outage began (kept across reconnects that drop again within seconds).
        var basicMode = false
        var outageStart: NIODeadline?
        var lastResumed: NIODeadline?
        var resumes = 0
        /// A shell session's exit status, once the agent sent it.
        var exitStatus: Int32?
        /// A shell session: the task that sends the terminal's new sizes, and the terminal's channel.
        var resizes: Task<Void, Never>?
        var terminal: (any Channel)?
        /// Succeeds once what the terminal's channel wrote is out (a file behind standard output is written by
        /// a thread of its own).
        var terminalWritten: EventLoopFuture<Void>?
    }

    let outcome: EventLoopPromise<Outcome>
    let ready: EventLoopPromise<Int>

    public init(
        grant: SessionGrant,
        localPort: Int,
        bindHost: String = "127.0.0.1",
        caFile: String?,
        upgradeSigner: SigV4Signer? = nil,
        console: any ForwarderConsole = StandardOutputConsole(),
        logger: Logger,
        listener: LocalListener? = nil,
        onAccept: (@Sendable (any Channel) -> Void)? = nil,
        onConnectFailure: (@Sendable (String?) -> Void)? = nil,
        onAgentStatus: (@Sendable (AgentStatusPayload) -> Void)? = nil,
        resume: (@Sendable (String, Bool) async throws -> SessionGrant)? = nil,
        resumeTimeout: TimeAmount = .minutes(5),
        sourceAddress: String? = nil,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    ) {
        self.grant = grant
        self.sourceAddress = sourceAddress
        self.localPort = localPort
        self.bindHost = bindHost
        self.caFile = caFile
        self.upgradeSigner = upgradeSigner
        self.console = console
        self.logger = logger
        self.prebound = listener
        self.onAccept = onAccept
        self.onConnectFailure = onConnectFailure
        self.onAgentStatus = onAgentStatus
        self.resume = resume
        self.resumeTimeout = resumeTimeout
        self.eventLoop = listener?.eventLoop ?? eventLoop
        self.outcome = self.eventLoop.makePromise(of: Outcome.self)
        self.ready = self.eventLoop.makePromise(of: Int.self)
    }

    public var sessionID: String { self.grant.sessionID }

    /// The local port once listening.
    public var readyPort: EventLoopFuture<Int> { self.ready.futureResult }

    /// Connects and forwards until the session ends.
    public func run() async throws -> Outcome {
        self.console.write("\nStarting session with SessionId: \(self.grant.sessionID)\n")
        let (sessionID, logger) = (self.grant.sessionID, self.logger)
        let connected: (any Channel)?
        do {
            let connecting = self.eventLoop.makeFutureWithTask {
                try await self.connect(grant: self.grant) {
                    let session = PortSession(
                        sessionID: sessionID,
                        role: .client(.init(clientVersion: JumpgateVersion.clientProtocolVersion)),
                        logger: logger
                    )
                    session.delegate = self
                    // On the event loop, as terminate()'s work: a session connected after Ctrl+C never resumes.
                    if self.resume != nil, !self.state.withLockedValue({ $0.terminated }) {
                        session.onDisconnect = { [weak self] session in self?.dataChannelLost(session) }
                    }
                    self.state.withLockedValue { $0.session = NIOLoopBound(session, eventLoop: self.eventLoop) }
                    return session
                }
            }
            connected = try await self.unlessEnded(connecting)
        } catch {
            let failure =
                (error as? ClientError)
                ?? ClientError(
                    FailureText.reachingGateway(self.grant.streamURL, caFile: self.caFile, NetworkFailure(error))
                )
            // Whoever waits for the local port (`forward`'s readiness line, the status line) hears that it
            // will not open, instead of waiting for ever.
            self.ready.fail(failure)
            self.outcome.fail(failure)
            throw failure
        }
        guard let channel = connected else {
            // Ctrl+C while connecting: the user's end at once, not after the connect's own timeouts.
            self.ready.fail(ClientError("The session ended before its data channel was connected."))
            return try await self.outcome.futureResult.get()
        }
        self.state.withLockedValue { $0.dataChannel = channel }
        return try await self.outcome.futureResult.get()
    }

    /// The data channel once `connecting` gives it, or nil as soon as the session's outcome is known first
    /// (``terminate()``); a channel that connects after that is closed. Both callbacks run on this
    /// forwarder's event loop, which owns the box that says which came first.
    private func unlessEnded(_ connecting: EventLoopFuture<any Channel>) async throws -> (any Channel)? {
        let first = self.eventLoop.makePromise(of: (any Channel)?.self)
        let decided = NIOLoopBoundBox.makeEmptyBox(valueType: Bool.self, eventLoop: self.eventLoop)
        self.outcome.futureResult.whenComplete { _ in
            guard decided.value == nil else { return }
            decided.value = true
            first.succeed(nil)
        }
        connecting.hop(to: self.eventLoop).whenComplete { result in
            guard decided.value == nil else {
                guard case .success(let channel) = result else { return }
                // Ended already: no resume for this channel's close.
                self.state.withLockedValue { $0.session }?.value.onDisconnect = nil
                channel.close(promise: nil)
                return
            }
            decided.value = true
            first.completeWith(result.map { Optional($0) })
        }
        return try await first.futureResult.get()
    }

    /// Opens a data channel for `grant` on this forwarder's event loop, with the opening frame and the
    /// session handler `session()` returns (a new one, or the same one on resume).
    func connect(
        grant: SessionGrant,
        session: @escaping @Sendable () -> PortSession
    ) async throws -> any Channel {
        guard let (host, port, pathAndQuery) = HTTPSEndpoint.parse(url: grant.streamURL) else {
            throw ClientError("StreamUrl '\(grant.streamURL)' is not a wss:// URL.")
        }
        var endpoint = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: try JumpgateTLS.clientContext(caFile: self.caFile),
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
        endpoint.sourceAddress = self.sourceAddress
        let opening = OpenDataChannelInput(
            tokenValue: grant.tokenValue,
            clientID: SystemRandom.id().description,
            clientVersion: JumpgateVersion.clientProtocolVersion,
            jumpgateFeatures: OpenDataChannelInput.agentStatusFeature
        ).json
        var headers: [(name: String, value: String)] = []
        if let signer = self.upgradeSigner {
            let (path, query) = Self.split(pathAndQuery)
            headers = signer.signatureHeaders(
                for: SigV4Request(
                    method: "GET",
                    path: path,
                    query: query,
                    headers: [("Host", endpoint.hostHeader)],
                    body: []
                ),
                epochSeconds: WallClock.nowSeconds()
            )
        }
        if let offer = grant.blindPath {
            let ticket = BlindTicket(
                pairingToken: offer.pairingToken,
                side: .client(agentCertificateSHA256: offer.agentCertificateSHA256, clientSecret: offer.clientSecret)
            )
            do {
                let channel = try await endpoint.connectBlind(ticket, eventLoop: self.eventLoop) { _ in [session()] }
                self.logger.info("data path: relay-blind, encrypted end to end with the agent")
                return channel
            } catch {
                // The offer is used up either way; the WebSocket path below is always there. A peer that
                // answered with another certificate than the agent's is worth a warning.
                self.logger.log(
                    level: error is BlindPinMismatch ? .warning : .info,
                    "relay-blind path not taken; using the WebSocket path",
                    metadata: ["reason": "\(error)"]
                )
            }
        }
        return try await endpoint.connectWebSocket(
            pathAndQuery: pathAndQuery,
            headers: headers,
            eventLoop: self.eventLoop,
            configuration: .portSession
        ) { _ in
            [OpeningFrameWriter(json: opening), session()]
        }
    }

    /// `/path?query` into its two parts.
    static func split(_ pathAndQuery: String) -> (path: String, query: String) {
        guard let mark = pathAndQuery.firstIndex(of: "?") else { return (pathAndQuery, "") }
        return (String(pathAndQuery[..<mark]), String(pathAndQuery[pathAndQuery.index(after: mark)...]))
    }

    /// The local connections' traffic so far (zero before the session is up).
    public func traffic() async -> PortSessionTraffic {
        let loop = self.eventLoop
        return (try? await loop.submit { self.state.withLockedValue { $0.session }?.value.traffic ?? .init() }.get())
            ?? .init()
    }

    /// How many times the data channel was resumed.
    public var resumeCount: Int { self.state.withLockedValue { $0.resumes } }

    /// Ctrl+C: tell the agent (TerminateSession flag, once a session is connected) and stop: the local port
    /// closes (or is never opened: whoever waits for it hears so), and nothing resumes.
    public func terminate() {
        self.eventLoop.execute {
            let (session, listener) = self.state.withLockedValue { state in
                state.terminated = true
                return (state.session, state.listener)
            }
            if let session = session?.value {
                session.terminate()
                // A data channel that drops from now on ends the session instead of waiting for a resume.
                session.onDisconnect = nil
            }
            (listener ?? self.prebound)?.close()
            self.ready.fail(ClientError("The session ended before its local port opened."))
            self.outcome.succeed(.endedByUser)
        }
    }

    private func startListening(session: PortSession) {
        let bound = NIOLoopBound(session, eventLoop: self.eventLoop)
        let listening: EventLoopFuture<LocalListener>
        if let prebound = self.prebound {
            listening = self.eventLoop.makeSucceededFuture(prebound)
        } else {
            let (host, port, loop) = (self.bindHost, self.localPort, self.eventLoop)
            listening = self.eventLoop.makeFutureWithTask {
                try await LocalListener.bind(host: host, port: port, eventLoop: loop)
            }
        }
        listening.whenComplete { result in
            switch result {
            case .success(let listener):
                // Ended while the port was being bound: it never opens.
                guard !self.state.withLockedValue({ $0.terminated }) else {
                    listener.close()
                    return
                }
                self.state.withLockedValue { $0.listener = listener }
                self.console.write("Port \(listener.port) opened for sessionId \(self.grant.sessionID).")
                self.console.write("\nWaiting for connections...\n")
                listener.attach { channel in
                    do {
                        _ = try bound.value.openStream(for: channel)
                        self.accepted()
                        self.onAccept?(channel)
                    } catch {
                        channel.close(promise: nil)
                    }
                }
                self.ready.succeed(listener.port)
            case .failure(let error):
                self.ready.fail(error)
                self.outcome.succeed(.failed((error as? ClientError)?.description ?? "\(error)"))
            }
        }
    }

    private func accepted() {
        let (first, basic) = self.state.withLockedValue { state -> (Bool, Bool) in
            defer { state.printedFirstAccept = true }
            return (!state.printedFirstAccept, state.basicMode)
        }
        // The official plugin's lines: basic mode serves one connection at a time and says so for each
        // (when it starts being served); mux mode says it once.
        if basic {
            return  // printed by basicConnectionActivated, when the connection starts being served
        } else if first {
            self.console.write("\nConnection accepted for session [\(self.grant.sessionID)]\n")
        }
    }
}

extension PortForwarder: PortSessionDelegate {
    public func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {
        if !customerMessage.isEmpty { self.console.write(customerMessage + "\n") }
        self.logger.info(
            "handshake complete",
            metadata: [
                "mode": "\(negotiated.mode)", "extensions": "\(negotiated.extensions)",
                "agent": "\(negotiated.agentVersion)",
            ]
        )
        self.state.withLockedValue { $0.basicMode = negotiated.mode == .basic }
        // A shell's stream is the user's terminal (``streamRequested(_:id:)``); a port session without
        // LocalPortForwarding (AWS-StartSSHSession) uses standard input and output, as the official plugin.
        if negotiated.isTerminal { return }
        if negotiated.isLocalPortForwarding {
            self.startListening(session: session)
        } else {
            self.startStandardStream(session: session)
        }
    }

    public func agentStatusChanged(_ session: PortSession, status: AgentStatusPayload) {
        self.logger.warning(
            status.status == .lost ? "the agent is unreachable" : "the agent is back",
            metadata: ["jumpgate.session_id": "\(self.grant.sessionID)", "reason": "\(status.reason)"]
        )
        self.onAgentStatus?(status)
    }

    public func basicConnectionActivated(_ session: PortSession, channel: any Channel) {
        self.console.write("Connection accepted for session \(self.grant.sessionID).\n")
    }

    public func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {
        self.console.write("\nConnection to destination port failed, check SSM Agent logs.\n")
        // A Jumpgate agent says why; the official line stays word for word for the tools that parse it.
        if let reason { self.console.write("The agent says: \(reason)\n") }
        self.onConnectFailure?(reason)
    }

    public func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        let (terminal, written, resizes) = self.state.withLockedValue { ($0.terminal, $0.terminalWritten, $0.resizes) }
        resizes?.cancel()
        guard let terminal else { return self.finish(session, reason: reason, byPeer: byPeer) }
        // A shell: the end of its output is written out first (the session's end flushes, then closes the
        // terminal's channel; 2 s at most for a reader that takes nothing), then the terminal is itself again
        // before anything more is printed. A command's output is all written, however slow its reader (one
        // that goes away closes the channel).
        let loop = self.eventLoop
        let bound = NIOLoopBound(session, eventLoop: loop)
        let timeout =
            session.negotiatedSession?.needsTerminal == false
            ? nil : loop.scheduleTask(in: .seconds(2)) { terminal.close(promise: nil) }
        terminal.closeFuture.whenComplete { _ in
            timeout?.cancel()
            (written ?? loop.makeSucceededVoidFuture()).whenComplete { _ in
                UserTerminal.restore()
                self.finish(bound.value, reason: reason, byPeer: byPeer)
            }
        }
    }

    private func finish(_ session: PortSession, reason: String, byPeer: Bool) {
        if session.negotiatedSession?.isTerminal == true { UserTerminal.restore() }
        let (listener, started, exitStatus) = self.state.withLockedValue {
            ($0.listener, $0.basicMode || $0.listener != nil, $0.exitStatus)
        }
        listener?.close()
        if byPeer, let exitStatus {
            self.outcome.succeed(.exited(exitStatus))
            return
        }
        self.ready.fail(ClientError(reason.isEmpty ? "The session ended before the port opened." : reason))
        if session.negotiatedSession == nil, !started {
            // It never started (refused token, handshake failure): an error, not an ordinary end.
            self.outcome.succeed(
                .failed(reason.isEmpty ? "The data channel closed before the session started." : reason)
            )
        } else if !byPeer {
            // Ended here, not by the gateway or the agent: resuming gave up, or the protocol broke.
            self.outcome.succeed(.failed(reason))
        } else {
            self.outcome.succeed(
                .ended(reason: reason.isEmpty ? "The session was ended by the gateway or the agent." : reason)
            )
        }
    }
}
