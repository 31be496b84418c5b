import JumpgateNIO
import JumpgateWire
import NIOCore

extension OpenChannels {
    /// A forwarder's `onAccept` that tracks its local connections and emits their `accepted` and
    /// `closed` events (json); the forward's `ended` event waits for them with `allClosed`.
    func connectionEvents(localPort: Int, sessionID: String, json: Bool) -> @Sendable (any Channel) -> Void {
        { channel in
            let fields: [(key: String, value: JSONValue)] = [
                ("sessionId", .string(sessionID)), ("localPort", .integer(Int64(localPort))),
                ("peer", .string(hostPort(channel.remoteAddress))),
            ]
            if json { JSONEvents.emit("accepted", fields) }
            self.track(channel) { if json { JSONEvents.emit("closed", fields) } }
        }
    }
}
