import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `jumpgate agent run`: keeps the control channel up (reconnecting with backoff and jitter forever),
/// starts a port session for each `interactive_shell`, and reports each session's end.
public final class AgentRunner: Sendable {
    public struct Options: Sendable {
        public var dialTimeout: TimeAmount = .seconds(10)
        /// Offer the Jumpgate fast-path extensions (`--no-extensions` turns them off).
        public var offerExtensions = true
        /// The AgentVersion to report (`--compat-version` makes the agent look older).
        public var reportedVersion = AgentRegistration.version
        /// How long a session whose data channel dropped keeps trying to reconnect it; target
        /// connections stay open meanwhile.
        public var resumeTimeout: TimeAmount = .minutes(5)
        /// Called each time the control channel connects (`agent run --detach` waits for the first).
        public var onConnected: (@Sendable () -> Void)?
        /// How often a session's refused messages are summarised in the log (one line per session per
        /// window); tests shorten it.
        public var refusalSummarySeconds: Int64 = 60
        /// The local address to reach the gateway from (nil: the system chooses); `jumpgate debug load`
        /// gives each simulated agent its own, as agents on many hosts would have.
        public var sourceAddress: String?
        /// Serve shell sessions (`--allow-shell`); without it they are refused: a compromised gateway must
        /// not get a shell on this host by default.
        public var allowShell = false
        /// The account shells run as (`--shell-user`); nil: ``ShellAccounts/defaultUser`` when the agent
        /// runs as root (created on first use), else the agent's own.
        public var shellUser: String?
        /// Accounts the gateway's session documents may ask shells to run as (`--allow-run-as`).
        public var allowedRunAs: Set<String> = []
        /// Serve the relay-blind path (`--no-blind-path` turns it off): sessions whose client asks for it
        /// are encrypted end to end, and the gateway only passes their bytes (docs/BLIND-RELAY.md).
        public var blindPath = true
        public init() {}
    }

    /// Identifies this agent process for its whole life (see docs/PROTOCOL.md §3).
    static let runID = SystemRandom.id().description

    let state: AgentStateDirectory
    /// The allow-list in force: from the state directory (reloaded on SIGHUP), or the command line's.
    let allowListBox: NIOLockedValueBox<AllowList>
    let allowListFromCommandLine: Bool
    var allowList: AllowList { self.allowListBox.withLockedValue { $0 } }
    let options: Options
    let gateway: HTTPSEndpoint
    /// The signed requests' connection (tokens, connection records, refusal reports, recordings), kept open
    /// between them: one TLS handshake instead of one a second while connections come and go.
    let requests: HTTPSKeptConnection
    let group: any EventLoopGroup
    let logger: Logger
    let control = NIOLockedValueBox<(any Channel)?>(nil)
    /// Set once SIGTERM arrived: sessions that end now end as Cancelled, not Failed.
    let draining = NIOLockedValueBox(false)
    /// Live sessions, so SIGTERM can end each with a reason.
    let live = NIOLockedValueBox<[String: LiveSession]>([:])
    /// agent_task_complete reports not yet acknowledged, by session id: retried 3 times, 1 s apart, and
    /// sent again when the control channel reconnects (so a gateway restart does not lose a session's end).
    let unacknowledgedCompletions = NIOLockedValueBox<[String: AgentTaskCompletePayload]>([:])
    /// Every connection's record until the gateway has it (``ConnectionJournal``), and the upload's state.
    let journal: ConnectionJournal
    let reporting = NIOLockedValueBox(UploadSlot())
    /// What sessions refused from their clients, until it is logged and reported (``AgentRefusals``).
    let refusals: NIOLockedValueBox<AgentRefusals>
    /// The recordings' upload (``RecordingUploads``).
    let recordingUploads = NIOLockedValueBox(RecordingUploads())
    /// This process's relay-blind identity (nil: `--no-blind-path`).
    let blind: BlindIdentity?

    /// A live session: `NIOLoopBound` checks at every access that it is touched on its own event loop.
    struct LiveSession: Sendable {
        let session: NIOLoopBound<PortSession>
        var eventLoop: any EventLoop { self.session.eventLoop }
    }

    public init(
        state: AgentStateDirectory,
        allow: [String]?,
        deny: [String]?,
        options: Options,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) throws {
        self.state = state
        self.journal = ConnectionJournal(directory: state.path)
        self.refusals = NIOLockedValueBox(AgentRefusals(windowSeconds: options.refusalSummarySeconds))
        self.allowListBox = NIOLockedValueBox(try AllowList(allow: allow ?? state.allow, deny: deny ?? state.deny))
        self.allowListFromCommandLine = allow != nil || deny != nil
        self.options = options
        guard let (host, port, _) = HTTPSEndpoint.parse(url: state.endpoint) else {
            throw AgentError("the stored endpoint '\(state.endpoint)' is not an https URL; register again.")
        }
        if let problem = FailureText.caFileProblem(state.caFile) {
            throw AgentError(problem + " It was stored by 'jumpgate agent register': register again with --force.")
        }
        var gateway = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: try JumpgateTLS.clientContext(caFile: state.caFile),
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
        gateway.sourceAddress = options.sourceAddress
        self.gateway = gateway
        self.requests = HTTPSKeptConnection(endpoint: gateway, group: group)
        self.blind = options.blindPath ? try BlindIdentity.make() : nil
        self.group = group
        var logger = logger
        logger[metadataKey: "jumpgate.instance_id"] = "\(state.instanceID)"
        self.logger = logger
    }

    var signer: SigV4Signer {
        SigV4Signer(
            credentials: AWSCredentials(accessKeyID: self.state.instanceID, secretAccessKey: self.state.secret),
            region: "us-east-1",
            service: "ssmmessages"
        )
    }

    /// Runs until the task is cancelled.
    public func run() async {
        self.closeRecordingsOfEarlierRun()
        var failures = 0
        while !Task.isCancelled {
            var problem: String
            do {
                let channel = try await self.connectControlChannel()
                self.logger.info("control channel connected", metadata: ["endpoint": "\(self.state.endpoint)"])
                self.options.onConnected?()
                failures = 0
                for payload in self.unacknowledgedCompletions.withLockedValue({ Array($0.values) }) {
                    self.sendCompletion(payload)
                }
                // Records journalled while the gateway was away.
                self.reportConnections()
                self.uploadRecordings()
                try await channel.closeFuture.get()
                if Task.isCancelled {
                    self.logger.info("control channel closed; stopping")
                    break
                }
                problem = "the gateway closed the control channel"
            } catch {
                problem = self.explain(error)
            }
            self.control.withLockedValue { $0 = nil }
            // First retry within a second, then exponential backoff with jitter, capped at 60 s.
            let base = failures == 0 ? 1.0 : min(60.0, pow(2.0, Double(failures)))
            failures += 1
            let delay = Double.random(in: (base / 2)...base)
            // One line per retry: what happened and when the next attempt is.
            self.logger.warning(
                "control channel down; retrying",
                metadata: ["problem": "\(problem)", "retry_in": "\(DecimalText.fixed(delay, 1))s"]
            )
            try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
        }
    }

    /// Re-reads the allow- and deny-lists from the state directory (SIGHUP, sent by `jumpgate agent
    /// allow-list`): new connections follow them; open ones stay. Lists given on the command line stay
    /// in force (they replace the registered ones for this run).
    public func reloadAllowList() {
        guard !self.allowListFromCommandLine else {
            self.logger.warning("allow-list not reloaded: this agent runs with --allow/--deny, which stay in force")
            return
        }
        do {
            let state = try AgentStateDirectory.load(from: self.state.path)
            let list = try AllowList(allow: state.allow, deny: state.deny)
            self.allowListBox.withLockedValue { $0 = list }
            self.logger.info(
                "allow-list reloaded",
                metadata: [
                    "allow": "\(state.allow.joined(separator: ","))", "deny": "\(state.deny.joined(separator: ","))",
                ]
            )
        } catch {
            self.logger.error("allow-list not reloaded; the previous one stays", metadata: ["error": "\(error)"])
        }
    }

    /// An error as the operator and the client should read it: the agent's own text, or what went wrong
    /// reaching the gateway.
    func explain(_ error: any Error) -> String {
        if let error = error as? AgentError { return error.description }
        return FailureText.reachingGateway(self.state.endpoint, caFile: self.state.caFile, NetworkFailure(error))
    }

    /// A signed POST to a token endpoint; returns the token from the 201 XML reply.
    /// A channel's token. `kept` false sends the request on a connection of its own: the control channel's
    /// token, once per (re)connect, would otherwise leave every agent an idle connection for 30 s after a
    /// gateway restart.
    func channelToken(path: String, kept: Bool = true) async throws -> String {
        try await self.channelTokenReply(path: path, kept: kept).token
    }

    /// ``channelToken(path:kept:)`` with the reply's text. `askingBlind`: the request also asks for the
    /// relay-blind path again (a session whose pair broke), with this agent's certificate hash.
    func channelTokenReply(
        path: String,
        kept: Bool = true,
        askingBlind: Bool = false
    ) async throws -> (token: String, reply: String) {
        var members: [(key: String, value: JSONValue)] = [
            ("MessageSchemaVersion", "1.0"), ("RequestId", .string(SystemRandom.id().description)), ("ClientId", ""),
        ]
        if askingBlind, let blind = self.blind {
            members.append(("JumpgateBlindPath", ["AgentCertificateSHA256": .string(blind.certificateSHA256)]))
        }
        let body = JSONValue.object(members)
        let response = try await self.signedPost(path: path, body: body.serializedBytes(), kept: kept)
        let text = String(buffer: response.body)
        guard response.status == 201, let token = ChannelTokenResponse.token(fromXML: text) else {
            // As the official agent: "Session is already terminated" is not retried; nor is a refusal to
            // this instance (403), which no retry changes.
            throw AgentError(
                "the gateway refused \(path): HTTP \(response.status) \(text)",
                isFinal: response.status == 403 || text.contains("Session is already terminated")
            )
        }
        return (token, text)
    }

    /// A JSON POST to the gateway signed by this instance (service `ssmmessages`).
    /// A POST signed by the instance, on the kept connection (``requests``) unless `kept` is false.
    func signedPost(path: String, query: String = "", body: [UInt8], kept: Bool = true) async throws -> HTTPSResponse {
        var headers: [(name: String, value: String)] = [
            ("Host", self.gateway.hostHeader), ("Content-Type", "application/json"),
        ]
        headers += self.signer.signatureHeaders(
            for: SigV4Request(method: "POST", path: path, query: query, headers: headers, body: body),
            epochSeconds: WallClock.nowSeconds()
        )
        let target = query.isEmpty ? path : path + "?" + query
        guard kept else {
            return try await self.gateway.request(
                method: "POST",
                path: target,
                headers: headers,
                body: ByteBuffer(bytes: body),
                group: self.group
            )
        }
        return try await self.requests.request(
            method: "POST",
            path: target,
            headers: headers,
            body: ByteBuffer(bytes: body)
        )
    }

    func signedUpgradeHeaders(path: String, query: String) -> [(name: String, value: String)] {
        let request = SigV4Request(
            method: "GET",
            path: path,
            query: query,
            headers: [("Host", self.gateway.hostHeader)],
            body: []
        )
        return self.signer.signatureHeaders(for: request, epochSeconds: WallClock.nowSeconds())
    }

    func connectControlChannel() async throws -> any Channel {
        let path = "/v1/control-channel/\(self.state.instanceID)"
        // A (re)connect starts on a new HTTPS connection: after a network loss the kept one may be dead
        // without knowing it, and its request would wait for the whole timeout.
        await self.requests.close()
        let token = try await self.channelToken(path: path, kept: false)
        let query = "role=subscribe&stream=input"
        let opening: JSONValue = [
            "Cookie": nil, "MessageSchemaVersion": "1.0", "RequestId": .string(SystemRandom.id().description),
            "TokenValue": .string(token), "AgentVersion": .string(self.options.reportedVersion),
            "PlatformType": "linux",
            "PlatformName": .string(AgentPlatform.name), "IPAddress": .string(AgentPlatform.primaryAddress()),
            "Hostname": .string(ProcessInfo.processInfo.hostName),
            // Jumpgate's own: this process's run id, so the gateway can tell a reconnect (the same process,
            // whose sessions resume) from a restart (a new process: the old one's sessions are gone).
            "JumpgateRunId": .string(Self.runID),
            // The relay-blind path's certificate, which clients pin (docs/BLIND-RELAY.md).
            "JumpgateBlindCertificateSHA256": self.blind.map { .string($0.certificateSHA256) } ?? .null,
        ]
        let channel = try await self.gateway.connectWebSocket(
            pathAndQuery: "\(path)?\(query)",
            headers: self.signedUpgradeHeaders(path: path, query: query),
            eventLoop: self.group.next()
        ) { _ in
            [OpeningFrameWriter(json: opening), AgentControlHandler(runner: self)]
        }
        self.control.withLockedValue { $0 = channel }
        return channel
    }
}
