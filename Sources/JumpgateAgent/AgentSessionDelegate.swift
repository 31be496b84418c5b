import Foundation
import JumpgateNIO
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The agent's end of a port session: dials each stream's destination through the allow-list.
final class AgentSessionDelegate: PortSessionDelegate, @unchecked Sendable {
    // Used only on `eventLoop`.
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

    func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        let dialer = TargetDialer(allowList: self.runner.allowList, timeout: self.runner.options.dialTimeout)
        let bound = NIOLoopBound(session, eventLoop: self.eventLoop)
        let (host, port, eventLoop) = (self.host, self.port, self.eventLoop)
        let (logger, sessionID, runner) = (self.runner.logger, self.sessionID, self.runner)
        var facts = ConnectionFacts(
            sessionID: sessionID,
            streamID: id.rawValue,
            destination: HostPort.text(host, port),
            address: "",
            openedMilliseconds: WallClock.nowMilliseconds()
        )
        Task {
            do {
                let channel = try await dialer.dial(host: host, port: port, eventLoop: eventLoop)
                facts.address = channel.remoteAddress.map { HostPort.text($0.ipAddress ?? "", $0.port ?? 0) } ?? ""
                facts.openedMilliseconds = WallClock.nowMilliseconds()
                let opened = facts
                eventLoop.execute {
                    do {
                        // First in the pipeline: it sees every byte count and the close.
                        try channel.pipeline.syncOperations.addHandler(
                            ConnectionRecorder(facts: opened, journal: runner.journal) { runner.scheduleReport() },
                            position: .first
                        )
                        runner.journal.append(opened.record("ConnectionOpened"))
                        // Closed before the recorder was in place: its close is recorded here.
                        if !channel.isActive {
                            runner.journal.append(
                                opened.record(
                                    "ConnectionClosed",
                                    [
                                        ("bytesToTarget", 0), ("bytesFromTarget", 0), ("durationMs", 0),
                                        ("reason", "closed by the target at once"),
                                    ]
                                )
                            )
                        }
                        try bound.value.attach(channel, to: id)
                    } catch {
                        channel.close(promise: nil)
                    }
                    runner.scheduleReport()
                }
            } catch let refusal as DialRefusal {
                logger.warning(
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
                eventLoop.execute { bound.value.refuse(id, reason: refusal.reason) }
            } catch {
                logger.info(
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
                eventLoop.execute { bound.value.refuse(id, reason: "\(error)") }
            }
        }
    }

    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {}

    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        self.runner.sessionFinished(self.sessionID)
        self.runner.logger.info(
            "session ended",
            metadata: ["jumpgate.session_id": "\(self.sessionID)", "reason": "\(reason)"]
        )
        let status = byPeer ? "Success" : (self.runner.draining.withLockedValue { $0 } ? "Cancelled" : "Failed")
        self.runner.reportComplete(sessionID: self.sessionID, status: status, output: byPeer ? "" : reason)
    }
}
