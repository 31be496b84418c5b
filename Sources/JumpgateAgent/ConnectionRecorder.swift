import JumpgateNIO
import JumpgateWire
import NIOCore

/// What the agent knows about one connection to a target, for its record.
struct ConnectionFacts: Sendable {
    var sessionID: String
    var streamID: UInt32
    /// `host:port` the session asked for, and the address the agent dialled.
    var destination: String
    var address: String
    /// When the connection opened, on the monotonic clock: its duration is not moved by a step of the
    /// wall clock.
    var opened: NIODeadline

    /// The common members of this connection's records.
    func record(_ event: String, _ extra: [(key: String, value: JSONValue)] = []) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("id", .string(SystemRandom.id().description)), ("event", .string(event)),
            ("time", .integer(Int64(WallClock.nowMilliseconds()))), ("sessionId", .string(self.sessionID)),
            ("streamId", .integer(Int64(self.streamID))), ("destination", .string(self.destination)),
        ]
        if !self.address.isEmpty { members.append(("address", .string(self.address))) }
        return .object(members + extra)
    }
}

/// First in a target connection's pipeline: journals the connection's opening as it joins the pipeline
/// (before any byte can be written through it), counts the bytes each way (written: once the socket took
/// them) and, when the connection closes, journals its record with the bytes, duration and why it closed.
/// It reads nothing of the bytes themselves.
final class ConnectionRecorder: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    let facts: ConnectionFacts
    let journal: ConnectionJournal
    let onRecord: @Sendable () -> Void
    private var bytesToTarget: Int64 = 0
    private var bytesFromTarget: Int64 = 0
    private var closedByClient = false
    private var targetClosedInput = false
    private var error: String?

    init(facts: ConnectionFacts, journal: ConnectionJournal, onRecord: @escaping @Sendable () -> Void) {
        self.facts = facts
        self.journal = journal
        self.onRecord = onRecord
    }

    /// The opening is journalled here, so that nothing written to the target can precede its record (an
    /// agent that stops between the two leaves a record of a connection that carried nothing, never bytes
    /// without a record).
    func handlerAdded(context: ChannelHandlerContext) {
        self.journal.append(self.facts.record("ConnectionOpened"))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.bytesFromTarget += Int64(self.unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let count = Int64(self.unwrapOutboundIn(data).readableBytes)
        let written = promise ?? context.eventLoop.makePromise(of: Void.self)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.futureResult.whenSuccess { bound.value.bytesToTarget += count }
        context.write(data, promise: written)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !self.targetClosedInput { self.closedByClient = true }
        context.close(mode: mode, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, !self.closedByClient { self.targetClosedInput = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.error == nil {
            switch NetworkFailure(error) {
            case .closed, .closedEarly: self.error = "reset by the target"
            case .timedOut: self.error = "timed out"
            case .unreachable: self.error = "the target became unreachable"
            case .other(let text), .answered(let text): self.error = text
            default: self.error = "the connection failed"
            }
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let reason: String
        if let error = self.error {
            reason = "connection error: \(error)"
        } else if self.targetClosedInput {
            reason = "closed by the target"
        } else if self.closedByClient {
            reason = "closed by the client (or its session ended)"
        } else {
            reason = "connection lost"
        }
        let duration = (NIODeadline.now() - self.facts.opened).nanoseconds / 1_000_000
        self.journal.append(
            self.facts.record(
                "ConnectionClosed",
                [
                    ("bytesToTarget", .integer(self.bytesToTarget)),
                    ("bytesFromTarget", .integer(self.bytesFromTarget)),
                    ("durationMs", .integer(max(0, duration))), ("reason", .string(reason)),
                ]
            )
        )
        self.onRecord()
        context.fireChannelInactive()
    }
}
