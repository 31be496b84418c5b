import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The agent's end of a port session: dials each stream's destination through the allow-list.
final class AgentSessionDelegate: PortSessionDelegate, Sendable {
    let runner: AgentRunner
    let sessionID: String
    let host: String
    let port: Int
    let eventLoop: any EventLoop

    init(runner: AgentRunner, sessionID: String, properties: [(key: String, value: String)], eventLoop: any EventLoop) {
        self.runner = runner
        self.sessionID = sessionID
        let values = Dictionary(properties.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        self.host = values["host"] ?? "localhost"
        self.port = values["portNumber"].flatMap(Int.init) ?? 0
        self.eventLoop = eventLoop
    }

    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {
        self.runner.logger.info(
            "handshake complete",
            metadata: [
                "jumpgate.session_id": "\(self.sessionID)", "mode": "\(negotiated.mode)",
                "extensions": "\(negotiated.extensions)", "client": "\(negotiated.clientVersion)",
            ]
        )
    }

    /// Called on the session's event loop; the dial stays on it (see ``TargetDialer/dial(host:port:eventLoop:)``)
    /// and its outcome comes back to the session there, with no task or thread in between.
    func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        let dialer = TargetDialer(allowList: self.runner.allowList, timeout: self.runner.options.dialTimeout)
        let (host, port, runner, sessionID) = (self.host, self.port, self.runner, self.sessionID)
        var facts = ConnectionFacts(
            sessionID: sessionID,
            streamID: id.rawValue,
            destination: HostPort.text(host, port),
            address: "",
            opened: .now()
        )
        dialer.dial(host: host, port: port, eventLoop: self.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                facts.address =
                    channel.remoteAddress.map { HostPort.text($0.ipAddress ?? "", $0.port ?? 0) } ?? ""
                facts.opened = .now()
                Self.attach(channel, to: id, of: session, facts: facts, runner: runner)
            case .failure(let refusal as DialRefusal):
                runner.logger.warning(
                    "connection refused by the allow-list",
                    metadata: [
                        "jumpgate.session_id": "\(sessionID)", "jumpgate.stream_id": "\(id)",
                        "destination": "\(HostPort.text(host, port))", "reason": "\(refusal.reason)",
                    ]
                )
                runner.journal.append(
                    facts.record(
                        "ConnectionRefused",
                        [("refusedBy", "allow-list"), ("reason", .string(refusal.reason))]
                    )
                )
                runner.scheduleReport()
                session.refuse(id, reason: refusal.reason)
            case .failure(let error):
                runner.logger.info(
                    "connection to the destination failed",
                    metadata: [
                        "jumpgate.session_id": "\(sessionID)", "jumpgate.stream_id": "\(id)",
                        "destination": "\(HostPort.text(host, port))", "reason": "\(error)",
                    ]
                )
                runner.journal.append(
                    facts.record("ConnectionRefused", [("refusedBy", "destination"), ("reason", .string("\(error)"))])
                )
                runner.scheduleReport()
                session.refuse(id, reason: "\(error)")
            }
        }
    }

    /// The target is connected: its recorder goes first in the pipeline (it sees every byte count and the
    /// close) and journals the opening as it joins, before the session takes the connection and writes what
    /// the client sent meanwhile: no byte reaches a target before its record is in the journal.
    private static func attach(
        _ channel: any Channel,
        to id: SmuxStreamID,
        of session: PortSession,
        facts: ConnectionFacts,
        runner: AgentRunner
    ) {
        do {
            try session.attach(channel, to: id) { channel in
                do {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionRecorder(facts: facts, journal: runner.journal) { runner.scheduleReport() },
                        position: .first
                    )
                } catch {
                    // The pipeline is gone already: the session refuses the stream (PortSession.attach).
                    runner.journal.append(
                        facts.record(
                            "ConnectionRefused",
                            [("refusedBy", "destination"), ("reason", "the connection ended as it opened")]
                        )
                    )
                    throw error
                }
                // Closed before the recorder was in place: its close is recorded here.
                if !channel.isActive {
                    runner.journal.append(
                        facts.record(
                            "ConnectionClosed",
                            [
                                ("bytesToTarget", 0), ("bytesFromTarget", 0), ("durationMs", 0),
                                ("reason", "closed by the target at once"),
                            ]
                        )
                    )
                }
            }
        } catch {
            channel.close(promise: nil)
        }
        runner.scheduleReport()
    }

    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {}

    func messageRefused(_ session: PortSession, _ refusal: SessionRefusal) {
        self.runner.messageRefused(refusal, sessionID: self.sessionID)
    }

    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        self.runner.sessionDidEnd(self.sessionID, reason: reason, byPeer: byPeer)
    }
}
