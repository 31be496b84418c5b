import JumpgateWire
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 request over TLS on its own connection: enough for the few control-plane calls the
/// agent and client make (registration, StartSession, tokens). The response body is bounded.
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

private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPSResponse>
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private let limit: Int

    init(promise: EventLoopPromise<HTTPSResponse>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            guard self.body.readableBytes + part.readableBytes <= self.limit else {
                self.promise.fail(WireError(.payloadTooLarge, "the response body is larger than \(self.limit) bytes"))
                context.close(promise: nil)
                return
            }
            self.body.writeBuffer(&part)
        case .end:
            guard let head = self.head else { return }
            self.promise.succeed(
                HTTPSResponse(
                    status: Int(head.status.code),
                    headers: head.headers.map { ($0.name, $0.value) },
                    body: self.body
                )
            )
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(WireError(.truncatedMessage, "the connection closed before the response was complete"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
        context.close(promise: nil)
    }
}

extension HTTPSEndpoint {
    /// Sends one request and returns the response.
    public func request(
        method: String,
        path: String,
        headers: [(name: String, value: String)],
        body: ByteBuffer,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: TimeAmount = .seconds(30),
        maximumBodySize: Int = 4 << 20
    ) async throws -> HTTPSResponse {
        let sslContext = self.sslContext
        let serverHostname = self.serverHostname
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: HTTPSResponse.self)
        var bootstrap = ClientBootstrap(group: eventLoop)
        if let source = self.sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        let channel =
            try await bootstrap
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        ResponseCollector(promise: promise, limit: maximumBodySize)
                    )
                }
            }
            .connect(host: self.host, port: self.port)
            .get()
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: self.hostHeader)
        for header in headers where header.name.lowercased() != "host" {
            head.headers.add(name: header.name, value: header.value)
        }
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeoutTask = eventLoop.scheduleTask(in: timeout) {
            promise.fail(
                WireError(
                    .truncatedMessage,
                    "no response from \(self.hostHeader) within \(timeout.nanoseconds / 1_000_000_000) s"
                )
            )
            channel.close(promise: nil)
        }
        defer { timeoutTask.cancel() }
        return try await promise.futureResult.get()
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
        return try NIOSSLContext(configuration: configuration)
    }

    /// A hostname for SNI and certificate checks: nil for IP literals (verified against IP SANs).
    public static func serverHostname(for host: String) -> String? {
        IPAddressBytes.parse(host) == nil ? host : nil
    }
}
