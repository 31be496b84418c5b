import NIOCore
import NIOPosix

/// Requests to one endpoint over a connection kept open between them (HTTP/1.1 keep-alive): the agent's
/// uploads (connection records, refusal reports, recordings) go once a second while connections come and
/// go, and a TLS handshake for each cost the gateway more than the request (docs/PERFORMANCE.md). One idle
/// connection is kept, and closed after ``idleLimit`` unused (under the gateway's 60 s keep-alive
/// deadline); requests made while it is in use open their own. A request on a kept connection that closed
/// or failed before any part of the answer arrived goes again, once, on a new connection: usually an idle
/// close racing the request, which the gateway never read. If the gateway had processed it (a connection
/// reset after it answered, before the answer arrived), it sees it twice; what the agent sends this way
/// is de-duplicated (connection records and refusal reports by id, recording pieces by offset) or
/// harmless (a channel token). Any other failure is the caller's, as with
/// ``HTTPSEndpoint/request(method:path:headers:body:group:timeout:maximumBodySize:)``.
public actor HTTPSKeptConnection {
    public let endpoint: HTTPSEndpoint
    public let idleLimit: TimeAmount
    private let group: any EventLoopGroup
    private let maximumBodySize: Int
    private var idle: (connection: HTTPSConnection, expiry: Scheduled<Void>)?
    /// Connections opened so far (the tests count them).
    public private(set) var connectionsOpened = 0

    public init(
        endpoint: HTTPSEndpoint,
        idleLimit: TimeAmount = .seconds(30),
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
                // Closed or failed before any answer (see the type's comment): once more on a new one.
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

    /// Closes the idle connection, if any (a request in flight keeps its own until it ends).
    public func close() {
        guard let (connection, expiry) = self.idle else { return }
        expiry.cancel()
        connection.channel.close(promise: nil)
        self.idle = nil
    }

    private func takeIdle() -> HTTPSConnection? {
        guard let (connection, expiry) = self.idle else { return nil }
        self.idle = nil
        expiry.cancel()
        guard connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return nil
        }
        return connection
    }

    /// Keeps `connection` for the next request, closing it after ``idleLimit`` unused (the expiry runs
    /// on its event loop; a request that takes it first cancels the expiry, and one that takes it just
    /// after it closed finds it closed and goes on a new one).
    private func keep(_ connection: HTTPSConnection) {
        let channel = connection.channel
        let expiry = channel.eventLoop.scheduleTask(in: self.idleLimit) {
            channel.close(promise: nil)
        }
        self.idle = (connection, expiry)
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
                timeout: timeout
            )
        } catch {
            connection.channel.close(promise: nil)
            throw error
        }
        if result.reusable, self.idle == nil {
            self.keep(connection)
        } else {
            connection.channel.close(promise: nil)
        }
        return result.response
    }
}
