// Failed sign-ins and other refusals: the throttle and the per-source log summary (docs/SECURITY.md).
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore

extension GatewayState {
    /// A request failed authentication: counts it (per source and per the access key id it claimed) and
    /// returns whether it is to be answered ThrottlingException instead of its own error.
    public func authenticationFailed(source: String, keyID: String?, type: String) -> Bool {
        let now = self.clock()
        let throttled = self.storage.withLockedValue { storage in
            var keys = ["source:" + source]
            if let keyID, !keyID.isEmpty { keys.append("key:" + String(keyID.prefix(128))) }
            let throttled = storage.throttle.failed(keys, now: now)
            storage.refusals.record(
                source: source,
                type: throttled ? "ThrottlingException" : type,
                keyID: keyID,
                now: now
            )
            return throttled
        }
        self.metrics.refused(throttled ? "ThrottlingException" : type)
        return throttled
    }

    /// A refusal that is not a failed sign-in (a channel with a bad token or opening frame, a WebSocket
    /// protocol violation): counted and summarised, not throttled.
    public func refused(source: String, type: String, keyID: String?) {
        let now = self.clock()
        self.storage.withLockedValue { $0.refusals.record(source: source, type: type, keyID: keyID, now: now) }
        self.metrics.refused(type)
    }

    /// A channel's WebSocket closed on a protocol violation (`event` is a ``WebSocketClosedEvent`` with
    /// `violation` set): counted and summarised under `WebSocketProtocolError`. Other events pass.
    func countViolation(_ event: Any, on channel: any Channel, keyID: String) {
        guard let closed = event as? WebSocketClosedEvent, closed.violation else { return }
        self.refused(source: channel.sourceAddress, type: "WebSocketProtocolError", keyID: keyID)
    }

    /// Summary lines of refused requests whose minute is over (all of them with `all`), for the log.
    public func refusalSummaries(all: Bool = false) -> [RefusalSummary.Line] {
        let now = self.clock()
        return self.storage.withLockedValue { storage in
            storage.throttle.prune(now: now)
            return storage.refusals.due(now: now, all: all)
        }
    }
}
