import Foundation
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where a forwarder writes the lines a person (or a tool waiting on a pipe) reads. Every line is
/// flushed as it is written.
public protocol ForwarderConsole: Sendable {
    func write(_ text: String)
}

public struct StandardOutputConsole: ForwarderConsole {
    public init() {}
    public func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// The response of StartSession or ResumeSession.
public struct SessionGrant: Sendable {
    public var sessionID: String
    public var tokenValue: String
    public var streamURL: String

    public init(sessionID: String, tokenValue: String, streamURL: String) {
        self.sessionID = sessionID
        self.tokenValue = tokenValue
        self.streamURL = streamURL
    }

    public init(json: JSONValue) throws {
        guard let id = json["SessionId"]?.stringValue, let token = json["TokenValue"]?.stringValue,
            let url = json["StreamUrl"]?.stringValue,
            !id.isEmpty, !token.isEmpty, !url.isEmpty
        else { throw ClientError("The StartSession response lacks SessionId, TokenValue or StreamUrl.") }
        self.init(sessionID: id, tokenValue: token, streamURL: url)
    }
}

/// The laptop side of one port-forwarding session: connects the data channel, runs the handshake,
/// listens on the local port and opens a smux stream per accepted connection. Prints the official
/// plugin's lines word for word.
public final class PortForwarder: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The session ended; `reason` is the gateway's or agent's text (empty for a normal end).
        case ended(reason: String)
        case failed(String)
    }

    let grant: SessionGrant
    let localPort: Int
    let bindHost: String
    let caFile: String?
    let console: any ForwarderConsole
    let logger: Logger
    let eventLoop: any EventLoop
    /// A listener bound before the session (jumpgate forward); nil binds after the handshake.
    let prebound: LocalListener?
    /// Called for each accepted local connection (on the event loop), e.g. for `--format json` events.
    let onAccept: (@Sendable (any Channel) -> Void)?
    let state = NIOLockedValueBox(State())

    /// The session object is only touched on `eventLoop`; the box hands it between tasks.
    struct State: @unchecked Sendable {
        var session: PortSession?
        var listener: LocalListener?
        var dataChannel: (any Channel)?
        var printedFirstAccept = false
    }

    let outcome: EventLoopPromise<Outcome>
    let ready: EventLoopPromise<Int>

    public init(
        grant: SessionGrant,
        localPort: Int,
        bindHost: String = "127.0.0.1",
        caFile: String?,
        console: any ForwarderConsole = StandardOutputConsole(),
        logger: Logger,
        listener: LocalListener? = nil,
        onAccept: (@Sendable (any Channel) -> Void)? = nil,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    ) {
        self.grant = grant
        self.localPort = localPort
        self.bindHost = bindHost
        self.caFile = caFile
        self.console = console
        self.logger = logger
        self.prebound = listener
        self.onAccept = onAccept
        self.eventLoop = listener?.eventLoop ?? eventLoop
        self.outcome = self.eventLoop.makePromise(of: Outcome.self)
        self.ready = self.eventLoop.makePromise(of: Int.self)
    }

    public var sessionID: String { self.grant.sessionID }

    /// The local port once listening.
    public var readyPort: EventLoopFuture<Int> { self.ready.futureResult }

    /// Connects and forwards until the session ends.
    public func run() async throws -> Outcome {
        guard let (host, port, pathAndQuery) = HTTPSEndpoint.parse(url: self.grant.streamURL) else {
            throw ClientError("StreamUrl '\(self.grant.streamURL)' is not a wss:// URL.")
        }
        let endpoint = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: try JumpgateTLS.clientContext(caFile: self.caFile),
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
        self.console.write("\nStarting session with SessionId: \(self.grant.sessionID)\n")
        let opening = OpenDataChannelInput(
            tokenValue: self.grant.tokenValue,
            clientID: MessageID.random().description,
            clientVersion: JumpgateVersion.clientProtocolVersion
        ).json
        let (sessionID, logger) = (self.grant.sessionID, self.logger)
        let channel = try await endpoint.connectWebSocket(pathAndQuery: pathAndQuery, eventLoop: self.eventLoop) { _ in
            let session = PortSession(
                sessionID: sessionID,
                role: .client(.init(clientVersion: JumpgateVersion.clientProtocolVersion)),
                logger: logger
            )
            session.delegate = self
            self.state.withLockedValue { $0.session = session }
            return [OpeningFrameWriter(json: opening), session]
        }
        self.state.withLockedValue { $0.dataChannel = channel }
        return try await self.outcome.futureResult.get()
    }

    /// Ctrl+C: tell the agent (TerminateSession flag) and stop.
    public func terminate() {
        self.eventLoop.execute {
            let (session, listener) = self.state.withLockedValue { ($0.session, $0.listener) }
            session?.terminate()
            listener?.close()
            self.outcome.succeed(.ended(reason: ""))
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
                self.outcome.succeed(.failed("\(error)"))
            }
        }
    }

    private func accepted() {
        let first = self.state.withLockedValue { state -> Bool in
            defer { state.printedFirstAccept = true }
            return !state.printedFirstAccept
        }
        if first { self.console.write("\nConnection accepted for session [\(self.grant.sessionID)]\n") }
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
        guard case .mux = negotiated.mode else {
            self.outcome.succeed(.failed("The agent chose basic mode, which this client does not support yet."))
            return
        }
        self.startListening(session: session)
    }

    public func streamRequested(_ session: PortSession, id: SmuxStreamID) {}

    public func streamFailed(_ session: PortSession, id: SmuxStreamID) {
        self.console.write("\nConnection to destination port failed, check SSM Agent logs.\n")
    }

    public func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        let listener = self.state.withLockedValue { $0.listener }
        listener?.close()
        self.ready.fail(ClientError(reason.isEmpty ? "The session ended before the port opened." : reason))
        self.outcome.succeed(.ended(reason: reason))
    }
}
