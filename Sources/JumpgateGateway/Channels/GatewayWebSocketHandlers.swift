import JumpgateNIO
import Logging
import NIOCore

/// The handlers the gateway puts after TLS once a WebSocket upgrade is accepted, in pipeline order: the
/// WebSocket handler configured for the channel's kind, then the channel's own handler. One place, so the
/// tests run exactly the pipeline the gateway builds.
enum GatewayWebSocketHandlers {
    /// The largest WebSocket message an upgraded socket may send before it authenticates (the opening
    /// frames are at most 16 KiB).
    static let unauthenticatedMessageSize = 16 * 1024 + 64

    /// A data channel's handlers (a client's when `agentInstanceID` is nil). Its WebSocket handler borrows
    /// whole unmasked and zero-key payloads from TLS's read buffer: the relay writes each read burst into
    /// the partner's TLS before the read ends, and copies what it keeps longer (``ByteBuffer/ownedCopy()``).
    static func dataChannel(
        sessionID: String,
        agentInstanceID: String?,
        state: GatewayState,
        logger: Logger
    ) -> [any ChannelHandler] {
        var configuration = Self.configuration()
        configuration.borrowsUnmaskedPayloads = true
        return [
            WebSocketHandler(role: .server, configuration: configuration),
            DataChannelHandler(sessionID: sessionID, agentInstanceID: agentInstanceID, state: state, logger: logger),
        ]
    }

    /// An agent's control channel's handlers.
    static func controlChannel(instanceID: String, state: GatewayState, logger: Logger) -> [any ChannelHandler] {
        [
            WebSocketHandler(role: .server, configuration: Self.configuration()),
            ControlChannelHandler(instanceID: instanceID, state: state, logger: logger),
        ]
    }

    /// The first message is the unauthenticated opening frame: nothing larger may arrive (and so be held)
    /// before it.
    private static func configuration() -> WebSocketHandler.Configuration {
        var configuration = WebSocketHandler.Configuration()
        configuration.firstMessageMaximumSize = Self.unauthenticatedMessageSize
        return configuration
    }
}
