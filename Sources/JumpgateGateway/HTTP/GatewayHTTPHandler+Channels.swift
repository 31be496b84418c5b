import CoreMetrics
import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Prometheus

/// The channel side of the gateway's one port: routing and carrying out WebSocket upgrades (control and
/// data channels), the token endpoints, and SigV4 verification with its throttle.
extension GatewayHTTPHandler {
    enum UpgradeRoute {
        case control(instanceID: String)
        case data(sessionID: String, instanceID: String?)
    }

    /// Which channel an upgrade opens. Control channels and agents' data channels must be SigV4-signed by
    /// the instance; clients' data channels carry no credentials (the first frame's token does).
    func upgradeRoute(head: HTTPRequestHead, path: String, query: String) throws(APIError) -> UpgradeRoute {
        let signed = head.headers.contains(name: "Authorization")
        if path.hasPrefix("/v1/control-channel/") {
            let id = String(path.dropFirst("/v1/control-channel/".count))
            let identity = try self.verify(head: head, path: path, query: query, service: "ssmmessages", body: [])
            guard identity.accessKeyID == id else {
                throw APIError(
                    403,
                    "AccessDeniedException",
                    "\(identity.accessKeyID) cannot open the control channel of \(id)."
                )
            }
            return .control(instanceID: id)
        }
        let sessionID = String(path.dropFirst("/v1/data-channel/".count))
        guard !sessionID.isEmpty, sessionID.count <= 96, self.state.session(id: sessionID) != nil else {
            throw APIError(404, "DoesNotExistException", "Session \(sessionID) does not exist.")
        }
        guard signed else { return .data(sessionID: sessionID, instanceID: nil) }
        let identity = try self.verify(
            head: head,
            path: path,
            query: query,
            service: "ssmmessages",
            signers: .usersOrInstances,
            body: []
        )
        // The official plugin signs its upgrade with the user's credentials since 1.2.764.0 (Jumpgate's
        // client too): a user's signature opens the client side, which the opening frame's token then
        // authenticates as before. Only an instance's signature opens the agent side.
        if self.state.userKey(accessKeyID: identity.accessKeyID) != nil {
            return .data(sessionID: sessionID, instanceID: nil)
        }
        return .data(sessionID: sessionID, instanceID: identity.accessKeyID)
    }

    /// Answers a WebSocket upgrade with 101 and replaces the HTTP handlers with Jumpgate's WebSocket
    /// framing (right after TLS) and the channel's handler.
    func upgrade(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        path: String,
        query: String
    ) throws(APIError) {
        guard head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }),
            let key = head.headers.first(name: "Sec-WebSocket-Key"),
            head.headers.first(name: "Sec-WebSocket-Version") == "13"
        else {
            throw APIError(
                400,
                "BadRequest",
                "This endpoint needs a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Version: 13)."
            )
        }
        let route = try self.upgradeRoute(head: head, path: path, query: query)
        var headers = HTTPHeaders()
        headers.add(name: "Upgrade", value: "websocket")
        headers.add(name: "Connection", value: "Upgrade")
        headers.add(name: "Sec-WebSocket-Accept", value: WebSocketHandshake.acceptValue(forKey: key))
        context.write(
            self.wrapOutboundOut(
                .head(HTTPResponseHead(version: head.version, status: .switchingProtocols, headers: headers))
            ),
            promise: nil
        )
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        let handlers: [any ChannelHandler]
        switch route {
        case .control(let instanceID):
            handlers = GatewayWebSocketHandlers.controlChannel(
                instanceID: instanceID,
                state: self.state,
                logger: self.logger
            )
        case .data(let sessionID, let instanceID):
            handlers = GatewayWebSocketHandlers.dataChannel(
                sessionID: sessionID,
                agentInstanceID: instanceID,
                state: self.state,
                logger: self.logger
            )
        }
        do {
            let sync = context.pipeline.syncOperations
            let tls = try sync.handler(type: NIOSSLServerHandler.self)
            // The client sends no frame before it has read the 101, so nothing is buffered in the HTTP decoder.
            sync.removeHandler(try sync.handler(type: HTTPServerPipelineHandler.self), promise: nil)
            sync.removeHandler(try sync.handler(type: HTTPServerProtocolErrorHandler.self), promise: nil)
            sync.removeHandler(try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self), promise: nil)
            sync.removeHandler(try sync.handler(type: HTTPResponseEncoder.self), promise: nil)
            if let validator = try? sync.handler(type: NIOHTTPResponseHeadersValidator.self) {
                sync.removeHandler(validator, promise: nil)
            }
            // The HTTP deadlines end here: the WebSocket has its own idle timeout.
            if let deadlines = self.deadlines { sync.removeHandler(deadlines, promise: nil) }
            try sync.addHandlers(handlers, position: .after(tls))
            sync.removeHandler(context: context, promise: nil)
            let channel = context.channel
            channel.setOption(ChannelOptions.autoRead, value: true).whenSuccess { channel.read() }
        } catch {
            self.logger.error("WebSocket upgrade failed", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    /// POST /v1/control-channel/<instance-id> and /v1/data-channel/<session-id>: SigV4 by an instance. The
    /// answer's XML: the token, and for a Jumpgate agent whose relay-blind pair broke (its request's JSON
    /// has `JumpgateBlindPath` with its `AgentCertificateSHA256`) the agent's half of an offer, when the
    /// gateway makes or kept one (``BlindReoffer``).
    func tokenRequest(head: HTTPRequestHead, path: String, query: String, body: [UInt8]) throws(APIError) -> String {
        let (token, instanceID) = try self.issueToken(head: head, path: path, query: query, body: body)
        var half: BlindHalf?
        if path.hasPrefix("/v1/data-channel/"),
            let asked = (try? JSONValue(parsing: String(decoding: body, as: UTF8.self)))?["JumpgateBlindPath"],
            let certificate = asked["AgentCertificateSHA256"]?.stringValue
        {
            let sessionID = String(path.dropFirst("/v1/data-channel/".count))
            let decision: BlindReoffer.Decision
            (half, decision) = self.state.reofferBlindPath(
                sessionID: sessionID,
                instanceID: instanceID,
                side: .agent,
                certificateSHA256: certificate
            )
            if case .decline(let reason) = decision {
                self.logger.info(
                    "relay-blind path not offered again",
                    metadata: ["jumpgate.session_id": "\(sessionID)", "reason": "\(reason)"]
                )
            }
        }
        return Self.tokenReplyXML(control: path.hasPrefix("/v1/control-channel/"), token: token, half: half)
    }

    /// The 201 answer to a token request: AWS's CreateControlChannel / CreateDataChannel shape, byte for
    /// byte, with the agent's half of a relay-blind re-offer before the closing tag when there is one.
    static func tokenReplyXML(control: Bool, token: String, half: BlindHalf?) -> String {
        let root = control ? "CreateControlChannelResponse" : "CreateDataChannelResponse"
        return "<\(root)><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>\(token)</TokenValue>"
            + (half?.agentXML ?? "") + "</\(root)>"
    }

    /// The token, and the instance that asked (its signature checked).
    private func issueToken(
        head: HTTPRequestHead,
        path: String,
        query: String,
        body: [UInt8]
    ) throws(APIError) -> (token: String, instanceID: String) {
        let identity = try self.verify(head: head, path: path, query: query, service: "ssmmessages", body: body)
        let instanceID = identity.accessKeyID
        if path.hasPrefix("/v1/control-channel/") {
            let id = String(path.dropFirst("/v1/control-channel/".count))
            guard id == instanceID else {
                throw APIError(403, "AccessDeniedException", "\(instanceID) cannot open the control channel of \(id).")
            }
            return (self.state.issueControlToken(instanceID: id), instanceID)
        }
        let sessionID = String(path.dropFirst("/v1/data-channel/".count))
        return (try self.state.issueAgentToken(sessionID: sessionID, instanceID: instanceID), instanceID)
    }

    func verify(
        head: HTTPRequestHead,
        path: String,
        query: String,
        service: String,
        signers: GatewayAuthenticator.Signers? = nil,
        body: [UInt8]
    ) throws(APIError) -> SigV4Identity {
        do {
            return try GatewayAuthenticator(state: self.state).verify(
                head: head,
                path: path,
                query: query,
                service: service,
                signers: signers ?? (service == "ssm" ? .users : .instances),
                body: body
            )
        } catch {
            // Counted per source and per claimed key id; past the limit the failure is answered
            // ThrottlingException. A correct signature is never refused for others' failures.
            let throttled = self.state.authenticationFailed(
                source: self.source,
                keyID: GatewayAuthenticator.claimedAccessKeyID(head: head, query: query),
                type: error.type
            )
            guard throttled else { throw error }
            throw APIError(
                400,
                "ThrottlingException",
                "Too many failed sign-ins from this address or with this access key; check the credentials, "
                    + "then retry in a minute."
            )
        }
    }
}
