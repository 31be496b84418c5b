import NIOCore
import NIOPosix

/// Requests to one endpoint over a connection kept open between them (HTTP/1.1 keep-alive): the agent's
/// uploads (connection records, refusal reports, recordings) go once a second while connections come and
/// go, and a TLS handshake for each cost the gateway more than the request (docs/PERFORMANCE.md). One idle
/// connection is kept, for at most ``idleLimit`` (under the gateway's 60 s keep-alive deadline); requests
/// made while it is in use open their own. A request on a kept connection that the server closed before
/// answering (an idle close racing the request: the server never read it) goes again once on a new
/// connection; any other failure is the caller's, as with ``HTTPSEndpoint/request(method:path:headers:body:group:timeout:maximumBodySize:)``.
public actor HTTPSKeptConnection {
    public let endpoint: HTTPSEndpoint
    public let idleLimit: Duration
    private let group: any EventLoopGroup
    private let maximumBodySize: Int
    private var idle: (connection: HTTPSConnection, since: ContinuousClock.Instant)?
    /// Connections opened so far (the tests count them).
    public private(set) var connectionsOpened = 0

    public init(
        endpoint: HTTPSEndpoint,
        idleLimit: Duration = .seconds(30),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        maximumBodySize: Int = 4 << 20
    ) {
        self.endpoint = endpoint
        self.idleLimit = idleLimit
        self.group = group
        self.maximumBodySize = maximumBodySize
    }

    public func request(
        method: String,
        path: String,
        headers: [(name: String, value: String)],
        body: ByteBuffer,
        timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTPSResponse {
        if let kept = self.takeIdle() {
            do {
                return try await self.send(on: kept, method, path, headers, body, timeout)
            } catch is ClosedBeforeResponse {
                // The server closed the idle connection as the request went out: it never read it.
            }
        }
        self.connectionsOpened += 1
        let fresh = try await self.endpoint.connect(
            group: self.group,
            maximumBodySize: self.maximumBodySize,
            keepAlive: true
        )
        do {
            return try await self.send(on: fresh, method, path, headers, body, timeout)
        } catch let closed as ClosedBeforeResponse {
            throw closed.error
        }
    }

    /// Closes the idle connection, if any.
    public func close() {
        self.idle?.connection.channel.close(promise: nil)
        self.idle = nil
    }

    private func takeIdle() -> HTTPSConnection? {
        guard let (connection, since) = self.idle else { return nil }
        self.idle = nil
        guard ContinuousClock.now - since < self.idleLimit, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return nil
        }
        return connection
    }

    private func send(
        on connection: HTTPSConnection,
        _ method: String,
        _ path: String,
        _ headers: [(name: String, value: String)],
        _ body: ByteBuffer,
        _ timeout: TimeAmount
    ) async throws -> HTTPSResponse {
        let result: (response: HTTPSResponse, reusable: Bool)
        do {
            result = try await self.endpoint.exchange(
                on: connection,
                method: method,
                path: path,
                headers: headers,
                body: body,
                timeout: timeout,
                keepAlive: true
            )
        } catch {
            connection.channel.close(promise: nil)
            throw error
        }
        if result.reusable, self.idle == nil {
            self.idle = (connection, ContinuousClock.now)
        } else {
            connection.channel.close(promise: nil)
        }
        return result.response
    }
}
