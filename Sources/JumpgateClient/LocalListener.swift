import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A local TCP listener that can be bound before its session exists: connections accepted early wait
/// (not read) until ``attach(_:)`` hands them, and every later one, to the session. This lets
/// `jumpgate forward` refuse to start any session when a port cannot be bound.
public final class LocalListener: Sendable {
    public let eventLoop: any EventLoop
    public let channel: any Channel
    public let host: String
    public let port: Int
    private let state: NIOLockedValueBox<State>

    struct State: Sendable {
        var pending: [any Channel] = []
        var handler: (@Sendable (any Channel) -> Void)?
    }

    private init(
        eventLoop: any EventLoop,
        channel: any Channel,
        host: String,
        port: Int,
        state: NIOLockedValueBox<State>
    ) {
        self.eventLoop = eventLoop
        self.channel = channel
        self.host = host
        self.port = port
        self.state = state
    }

    /// Binds `host:port` (port 0 picks a free one) on `eventLoop`.
    public static func bind(host: String, port: Int, eventLoop: any EventLoop) async throws -> LocalListener {
        let state = NIOLockedValueBox(State())
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: eventLoop)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        try StreamSocketReads.configure(child)
                        let handler = state.withLockedValue { state -> (@Sendable (any Channel) -> Void)? in
                            if state.handler == nil { state.pending.append(child) }
                            return state.handler
                        }
                        handler?(child)
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch {
            throw ClientError(FailureText.binding(host: host, port: port, NetworkFailure(error)))
        }
        return LocalListener(
            eventLoop: eventLoop,
            channel: channel,
            host: host,
            port: channel.localAddress?.port ?? port,
            state: state
        )
    }

    /// From now on, accepted connections go to `handler` (on the listener's event loop), starting with
    /// those that waited.
    public func attach(_ handler: @escaping @Sendable (any Channel) -> Void) {
        self.eventLoop.execute {
            let waiting = self.state.withLockedValue { state -> [any Channel] in
                state.handler = handler
                defer { state.pending = [] }
                return state.pending
            }
            for child in waiting { handler(child) }
        }
    }

    /// Stops accepting, and closes the connections that were waiting to be served.
    public func close() {
        self.channel.close(promise: nil)
        self.eventLoop.execute {
            let waiting = self.state.withLockedValue { state -> [any Channel] in
                defer { state.pending = [] }
                return state.pending
            }
            for child in waiting { child.close(promise: nil) }
        }
    }
}
