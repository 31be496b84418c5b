import JumpgateWire
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A gateway's HTTPS address: ``request(method:path:headers:body:group:timeout:maximumBodySize:)`` sends one
/// HTTP/1.1 request on its own connection (registration, StartSession, the client's tokens);
/// ``HTTPSKeptConnection`` keeps one open between requests (the agent's). The response body is bounded.
public struct HTTPSEndpoint: Sendable {
    public var host: String
    public var port: Int
    public var sslContext: NIOSSLContext
    /// The name the certificate must carry: the URL's host.
    public var serverHostname: String?
    /// The local address to connect from (nil: the system chooses), for a host with several.
    public var sourceAddress: String?

    public init(host: String, port: Int, sslContext: NIOSSLContext, serverHostname: String?) {
        self.host = host
        self.port = port
        self.sslContext = sslContext
        self.serverHostname = serverHostname
    }

    /// The Host header value: the host, with the port unless it is 443.
    public var hostHeader: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == 443 ? host : "\(host):\(self.port)"
    }

    /// Parses `https://host[:port]`.
    public static func parse(url: String) -> (host: String, port: Int, path: String)? {
        guard url.hasPrefix("https://") || url.hasPrefix("wss://") else { return nil }
        var rest = Substring(url.drop(while: { $0 != "/" }).dropFirst(2))
        var path = "/"
        if let slash = rest.firstIndex(of: "/") {
            path = String(rest[slash...])
            rest = rest[..<slash]
        }
        var host = String(rest)
        var port = 443
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { return nil }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        return (host, port, path)
    }
}

public struct HTTPSResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer
}

/// Collects one response at a time on an HTTP/1.1 connection: ``arm(_:)`` before each request. With
/// `closeAfterResponse` it closes the connection once a response is complete (one request per connection);
/// otherwise the connection stays open for the next request unless the server said `Connection: close`.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private var promise: EventLoopPromise<HTTPSResponse>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private let limit: Int
    private let closeAfterResponse: Bool
    /// Whether any part of the current response arrived (a kept connection that closes or fails before
    /// that may have its request sent again on a new one: see ``HTTPSKeptConnection``).
    private(set) var receivedAny = false
    /// Whether the connection may carry another request.
    private(set) var reusable = false

    init(limit: Int, closeAfterResponse: Bool) {
        self.limit = limit
        self.closeAfterResponse = closeAfterResponse
    }

    /// The first error seen while no request waited (a TLS handshake that failed right after connecting):
    /// the next request fails with it.
    private(set) var failure: (any Error)?

    /// Arms the collector for the next response; false (with `promise` failed) if the connection already
    /// failed, in which case the request must not be sent.
    func arm(_ promise: EventLoopPromise<HTTPSResponse>) -> Bool {
        if let failure = self.failure {
            promise.fail(ClosedBeforeResponse(underlying: failure))
            return false
        }
        self.promise = promise
        self.head = nil
        self.body.clear()
        self.receivedAny = false
        self.reusable = false
        return true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.receivedAny = true
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            guard self.body.readableBytes + part.readableBytes <= self.limit else {
                self.promise?.fail(WireError(.payloadTooLarge, "the response body is larger than \(self.limit) bytes"))
                self.promise = nil
                context.close(promise: nil)
                return
            }
            self.body.writeBuffer(&part)
        case .end:
            guard let head = self.head, let promise = self.promise else { return }
            self.promise = nil
            self.reusable = !self.closeAfterResponse && head.isKeepAlive
            promise.succeed(
                HTTPSResponse(
                    status: Int(head.status.code),
                    headers: head.headers.map { ($0.name, $0.value) },
                    body: self.body
                )
            )
            if !self.reusable { context.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.reusable = false
        self.promise?.fail(
            self.receivedAny
                ? WireError(.truncatedMessage, "the connection closed before the response was complete")
                : ClosedBeforeResponse(underlying: nil)
        )
        self.promise = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.reusable = false
        if let promise = self.promise {
            promise.fail(self.receivedAny ? error : ClosedBeforeResponse(underlying: error))
        } else if self.failure == nil {
            self.failure = error
        }
        self.promise = nil
        context.close(promise: nil)
    }
}

/// The connection closed or failed before any byte of the response. On a connection kept from an earlier
/// request (which the server may close when it has been idle) the request can go again on a new one;
/// otherwise ``error`` is what the caller gets.
struct ClosedBeforeResponse: Error {
    var underlying: (any Error)?

    var error: any Error {
        self.underlying ?? WireError(.truncatedMessage, "the connection closed before the response began")
    }
}

/// An open HTTPS connection and its response collector (which belongs to the channel's event loop);
/// `keepAlive` false: one request, with `Connection: close`.
struct HTTPSConnection: Sendable {
    let channel: any Channel
    let collector: NIOLoopBound<ResponseCollector>
    let keepAlive: Bool
}

extension HTTPSEndpoint {
    /// Sends one request on its own connection and returns the response; the connection is closed after it.
    /// `timeout` bounds the whole request: connecting, the TLS handshake and the answer.
    public func request(
        method: String,
        path: String,
        headers: [(name: String, value: String)],
        body: ByteBuffer,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: TimeAmount = .seconds(30),
        maximumBodySize: Int = 4 << 20
    ) async throws -> HTTPSResponse {
        // One deadline for the whole request: the connection (TCP and TLS) and the answer.
        let deadline = NIODeadline.now() + timeout
        let connection = try await self.connect(
            group: group,
            maximumBodySize: maximumBodySize,
            keepAlive: false,
            connectTimeout: min(timeout, .seconds(10))
        )
        do {
            return try await self.exchange(
                on: connection,
                method: method,
                path: path,
                headers: headers,
                body: body,
                timeout: max(deadline - NIODeadline.now(), .zero),
                statedTimeout: timeout
            ).response
        } catch let closed as ClosedBeforeResponse {
            throw closed.error
        }
    }

    /// Opens a connection with TLS and HTTP/1.1 handlers. The response collector is in the pipeline from
    /// the start, so a TLS handshake that fails right after the connect reaches the first request as itself.
    func connect(
        group: any EventLoopGroup,
        maximumBodySize: Int,
        keepAlive: Bool,
        connectTimeout: TimeAmount = .seconds(10)
    ) async throws -> HTTPSConnection {
        let sslContext = self.sslContext
        let serverHostname = self.serverHostname
        var bootstrap = ClientBootstrap(group: group.next())
        if let source = self.sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        return
            try await bootstrap
            .connectTimeout(connectTimeout)
            .connect(host: self.host, port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    let collector = ResponseCollector(limit: maximumBodySize, closeAfterResponse: !keepAlive)
                    try channel.pipeline.syncOperations.addHandler(collector)
                    return HTTPSConnection(
                        channel: channel,
                        collector: NIOLoopBound(collector, eventLoop: channel.eventLoop),
                        keepAlive: keepAlive
                    )
                }
            }
    }

    /// One request and its response on `connection`; `reusable` says whether it may carry another.
    func exchange(
        on connection: HTTPSConnection,
        method: String,
        path: String,
        headers: [(name: String, value: String)],
        body: ByteBuffer,
        timeout: TimeAmount,
        statedTimeout: TimeAmount? = nil
    ) async throws -> (response: HTTPSResponse, reusable: Bool) {
        let channel = connection.channel
        let eventLoop = channel.eventLoop
        let promise = eventLoop.makePromise(of: HTTPSResponse.self)
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: self.hostHeader)
        for header in headers where header.name.lowercased() != "host" {
            head.headers.add(name: header.name, value: header.value)
        }
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        if !connection.keepAlive { head.headers.replaceOrAdd(name: "Connection", value: "close") }
        let (hostHeader, requestHead) = (self.hostHeader, head)
        try await eventLoop.submit {
            guard channel.isActive else { throw ClosedBeforeResponse(underlying: connection.collector.value.failure) }
            guard connection.collector.value.arm(promise) else { return }
            channel.write(HTTPClientRequestPart.head(requestHead), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }.get()
        let stated = statedTimeout ?? timeout
        let timeoutTask = eventLoop.scheduleTask(in: timeout) {
            promise.fail(
                WireError(
                    .truncatedMessage,
                    "no response from \(hostHeader) within \(stated.nanoseconds / 1_000_000_000) s"
                )
            )
            channel.close(promise: nil)
        }
        defer { timeoutTask.cancel() }
        let response = try await promise.futureResult.get()
        let reusable = try await eventLoop.submit { connection.collector.value.reusable && channel.isActive }.get()
        return (response, reusable)
    }
}

/// TLS client settings that trust exactly the gateway's CA (or the system's roots when none is given).
public enum JumpgateTLS {
    public static func clientContext(caFile: String?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let caFile {
            configuration.trustRoots = .file(caFile)
        }
        return try NIOSSLContext(configuration: configuration)
    }

    public static func serverContext(certificatePEM: String, keyPEM: String) throws -> NIOSSLContext {
        let certificates = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        // A close waits this long for the peer's close_notify (NIOSSL's default is 5 s): a gateway that stops
        // closes every connection and waits 3 s for them (GatewayServer.shutdown), a peer that is not
        // reading included.
        configuration.shutdownTimeout = .seconds(2)
        return try NIOSSLContext(configuration: configuration)
    }

    /// A hostname for SNI and certificate checks: nil for IP literals (verified against IP SANs).
    public static func serverHostname(for host: String) -> String? {
        IPAddressBytes.parse(host) == nil ? host : nil
    }
}
