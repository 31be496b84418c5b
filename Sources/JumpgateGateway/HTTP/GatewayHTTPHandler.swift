import CoreMetrics
import FoundationEssentials
import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Prometheus

/// Plain HTTP requests on the gateway's port: the SSM API (`POST /`), the token endpoints of the
/// control and data channels (`POST /v1/...`), `/healthz`, and the answer to a refused WebSocket upgrade.
final class GatewayHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maximumBodySize = 1 << 20

    let api: GatewayAPI
    let logger: Logger
    private var head: HTTPRequestHead?
    var body = ByteBuffer()
    private var tooLarge = false
    /// The gateway's buffer budget ran out while this request's body arrived.
    private var overBudget = false
    /// Bytes of this connection's body taken from the gateway's budget.
    private var reserved = 0
    /// The connection's deadlines (absent in tests that build a bare pipeline).
    var deadlines: HTTPConnectionGuard?
    /// The current request's id (x-amzn-RequestId, and the audit record's requestID).
    var requestID = ""

    init(api: GatewayAPI, logger: Logger) {
        self.api = api
        self.logger = logger
    }

    var state: GatewayState { self.api.state }

    func handlerAdded(context: ChannelHandlerContext) {
        self.deadlines = try? context.pipeline.syncOperations.handler(type: HTTPConnectionGuard.self)
        self.sourceAddress = context.channel.remoteAddress?.ipAddress
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.releaseBody()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.releaseBody()
        context.fireChannelInactive()
    }

    private func releaseBody() {
        if self.reserved > 0 { self.state.connections?.release(self.reserved, http: true) }
        self.reserved = 0
        self.body = ByteBuffer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.deadlines?.headerCompleted()
            self.head = head
            self.requestID = SystemRandom.id().description
            self.releaseBody()
            self.tooLarge = false
            self.overBudget = false
            if Self.isUpgradeRequest(head) {
                // NIO's decoder keeps every byte after an upgrade request's head for the upgrader, without
                // bound: read nothing more until the upgrade is done (its handlers read again) or refused
                // (the connection closes).
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
        case .body(var part):
            if self.body.readableBytes + part.readableBytes > Self.maximumBodySize {
                self.tooLarge = true
            } else if !self.tooLarge, !self.overBudget {
                if let connections = self.state.connections {
                    guard connections.reserve(part.readableBytes, http: true) else {
                        self.overBudget = true
                        return
                    }
                    self.reserved += part.readableBytes
                }
                self.body.writeBuffer(&part)
            }
        case .end:
            self.deadlines?.requestCompleted()
            guard let head = self.head else { return }
            self.head = nil
            self.respond(context: context, head: head)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let (path, query) = Self.split(head.uri)
        if self.overBudget {
            self.sendError(
                context: context,
                head: head,
                APIError(503, "ServiceUnavailable", "The gateway is holding too much data right now; retry shortly.")
            )
            return
        }
        if self.tooLarge {
            self.sendError(
                context: context,
                head: head,
                APIError(
                    413,
                    "RequestEntityTooLargeException",
                    "The request body is larger than \(Self.maximumBodySize) bytes."
                )
            )
            return
        }
        do throws(APIError) {
            switch (head.method, path) {
            case (.GET, "/metrics"):
                guard let registry = self.state.metricsRegistry else {
                    throw APIError(404, "NotFound", "Metrics are not enabled on this gateway.")
                }
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                self.state.sampleMetrics(on: context.eventLoop).whenComplete { _ in
                    let (handler, context) = bound.value
                    handler.send(
                        context: context,
                        head: head,
                        status: 200,
                        contentType: "text/plain; version=0.0.4",
                        body: ByteBuffer(bytes: registry.emitToBuffer())
                    )
                }
            case (.GET, "/healthz"):
                // Ready only while the store can write: a gateway that cannot record sessions and audit
                // records should be taken out of rotation (it keeps its open tunnels running).
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                self.state.storeWriteProblem(on: context.eventLoop).whenComplete { result in
                    let (handler, context) = bound.value
                    let problem: String? =
                        switch result {
                        case .success(let problem): problem
                        case .failure(let error): "\(error)"
                        }
                    handler.send(
                        context: context,
                        head: head,
                        status: problem == nil ? 200 : 503,
                        contentType: "text/plain",
                        body: ByteBuffer(
                            string: problem.map {
                                "not ready: the store cannot be written (\($0)); free space on the data directory's "
                                    + "file system (or make it writable again); open tunnels keep running\n"
                            } ?? "ok\n"
                        )
                    )
                }
            case (.POST, "/"):
                let answer: GatewayAPI.Answer
                var audit = PendingAudit(head: head, source: self.source, requestID: self.requestID)
                do {
                    answer = try self.apiCall(context: context, head: head, path: path, query: query, audit: &audit)
                } catch {
                    self.state.metrics.apiRequest(operation: Self.operation(head), status: error.status)
                    self.record(audit, outcome: .failure(error))
                    throw error
                }
                let pending = audit
                // Answer only once what the answer reports is on disk (a registration's secret, a new
                // activation, a session's end). Revocations and activations are applied in memory only
                // after the store has them (`.later`); other changes are flushed first.
                let (state, loop) = (self.state, context.eventLoop)
                let written: EventLoopFuture<JSONValue>
                switch answer {
                case .read(let result): written = loop.makeSucceededFuture(result)
                case .now(let result): written = state.flush(on: loop).map { result }
                case .later(let future): written = future
                case .applied(let result):
                    written = state.flush(on: loop).map { result }.flatMapErrorThrowing { _ in
                        throw APIError(
                            500,
                            "InternalServerError",
                            "The change is in force but the gateway could not save it (is its data directory full?): "
                                + "it will be undone when the gateway restarts. Retry the call once the gateway's "
                                + "log shows the store is writable."
                        )
                    }
                }
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                written.whenComplete { outcome in
                    let (handler, context) = bound.value
                    switch outcome {
                    case .success(let result):
                        handler.record(pending, outcome: .success(result))
                        handler.state.metrics.apiRequest(operation: Self.operation(head), status: 200)
                        handler.send(
                            context: context,
                            head: head,
                            status: 200,
                            contentType: "application/x-amz-json-1.1",
                            body: ByteBuffer(bytes: result.serializedBytes())
                        )
                    case .failure(let error as APIError):
                        handler.record(pending, outcome: .failure(error))
                        handler.state.metrics.apiRequest(operation: Self.operation(head), status: error.status)
                        handler.sendError(context: context, head: head, error)
                    case .failure(let error):
                        handler.state.metrics.apiRequest(operation: Self.operation(head), status: 500)
                        handler.logger.error("store write failed", metadata: ["error": "\(error)"])
                        let failure = APIError(
                            500,
                            "InternalServerError",
                            "The gateway could not save the change (is its data directory full?); nothing "
                                + "was changed. Retry the call once the gateway's log shows the store is writable."
                        )
                        handler.record(pending, outcome: .failure(failure))
                        handler.sendError(context: context, head: head, failure)
                    }
                }
            case (.POST, _) where path.hasPrefix("/v1/control-channel/") || path.hasPrefix("/v1/data-channel/"):
                let xml = try self.tokenRequest(
                    head: head,
                    path: path,
                    query: query,
                    body: Array(self.body.readableBytesView)
                )
                self.send(
                    context: context,
                    head: head,
                    status: 201,
                    contentType: "application/xml",
                    body: ByteBuffer(string: xml)
                )
            case (.POST, _) where path.hasPrefix("/v1/connection-records/"):
                try self.connectionRecords(context: context, head: head, path: path, query: query)
            case (.POST, _) where path.hasPrefix("/v1/recordings/"):
                try self.recordingUpload(context: context, head: head, path: path, query: query)
            case (.GET, _) where path.hasPrefix("/v1/control-channel/") || path.hasPrefix("/v1/data-channel/"):
                do {
                    try self.upgrade(context: context, head: head, path: path, query: query)
                } catch {
                    // A refused upgrade (no such session, another instance's channel, not a WebSocket
                    // request) is counted and summed up; failed sign-ins already were, by verify().
                    if !GatewayAuthenticator.signInErrorTypes.contains(error.type) {
                        self.state.refused(source: self.source, type: error.type, keyID: nil)
                    }
                    throw error
                }
            default:
                throw APIError(404, "NotFound", "No such endpoint: \(head.method) \(path).")
            }
        } catch {
            self.sendError(context: context, head: head, error)
        }
    }

    /// The peer's address (never a header such as X-Forwarded-For: those are not trusted).
    var source: String { self.sourceAddress ?? "unknown" }
    private var sourceAddress: String?

    /// The operation an API request names (for metrics; unknown names are folded there).
    static func operation(_ head: HTTPRequestHead) -> String {
        guard let target = head.headers.first(name: "X-Amz-Target"),
            target.hasPrefix("AmazonSSM.") || target.hasPrefix(GatewayAPI.adminPrefix)
        else { return "" }
        return String(target.drop { $0 != "." }.dropFirst())
    }

    /// Whether the HTTP decoder treats this request as an upgrade (it then stops parsing what follows and
    /// keeps the bytes): Upgrade with Connection: upgrade, and any CONNECT.
    static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.method == .CONNECT
            || head.headers.contains(name: "Upgrade")
                && head.headers["Connection"].contains { $0.lowercased().contains("upgrade") }
    }

    /// A client that does not read its responses (pipelining requests) stops being read: the responses
    /// wait in the gateway only as far as the socket's watermark.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let channel = context.channel
        let writable = channel.isWritable
        channel.setOption(ChannelOptions.autoRead, value: writable).whenSuccess { if writable { channel.read() } }
        context.fireChannelWritabilityChanged()
    }

    static func split(_ uri: String) -> (String, String) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, "") }
        return (String(uri[..<mark]), String(uri[uri.index(after: mark)...]))
    }

    func sendJSON(context: ChannelHandlerContext, head: HTTPRequestHead, status: Int, _ value: JSONValue) {
        self.send(
            context: context,
            head: head,
            status: status,
            contentType: "application/x-amz-json-1.1",
            body: ByteBuffer(bytes: value.serializedBytes())
        )
    }

    func sendError(context: ChannelHandlerContext, head: HTTPRequestHead, _ error: APIError) {
        let body: JSONValue = ["__type": .string(error.type), "message": .string(error.message)]
        // Failed sign-ins reach the log as one summary line per source per minute (GatewayState.refusals).
        self.logger.debug(
            "request refused",
            metadata: ["type": "\(error.type)", "status": "\(error.status)", "source": "\(self.source)"]
        )
        self.send(
            context: context,
            head: head,
            status: error.status,
            contentType: "application/x-amz-json-1.1",
            body: ByteBuffer(bytes: body.serializedBytes())
        )
    }

    private func send(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        status: Int,
        contentType: String,
        body: ByteBuffer
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(
            name: "x-amzn-RequestId",
            value: self.requestID.isEmpty ? SystemRandom.id().description : self.requestID
        )
        // A refused upgrade ends the connection: what the client sends after it is not HTTP.
        let keepAlive = head.isKeepAlive && status != 413 && status != 503 && !Self.isUpgradeRequest(head)
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let response = HTTPResponseHead(
            version: head.version,
            status: HTTPResponseStatus(statusCode: status),
            headers: headers
        )
        context.write(self.wrapOutboundOut(.head(response)), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        self.releaseBody()
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        } else if let deadlines = self.deadlines {
            let bound = NIOLoopBound(deadlines, eventLoop: context.eventLoop)
            done.whenSuccess { bound.value.responseSent() }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("HTTP connection error", metadata: ["error": "\(error)"])
        // Bytes that are not HTTP (NIO's error handler has answered 400): a refusal, summarised per source.
        if error is HTTPParserError { self.state.refused(source: self.source, type: "HTTPParseError", keyID: nil) }
        context.close(promise: nil)
    }
}
