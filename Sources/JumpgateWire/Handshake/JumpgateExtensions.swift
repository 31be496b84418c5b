/// The Jumpgate fast-path extensions (DESIGN.md §3, §9), negotiated inside the official handshake.
///
/// The agent lists what it offers under the ``propertiesKey`` key of the SessionType action's
/// `Properties` (the official plugin ignores unknown keys); a Jumpgate client answers with the subset
/// it accepts under ``actionResultKey`` in its `ActionResult` (the official agent ignores it). An
/// extension is on only when both sides named it, so official peers never see any of them.
public struct JumpgateExtensions: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Stream payloads up to ``largePayloadSize`` bytes instead of 1024.
    public static let largePayloads = JumpgateExtensions(rawValue: 1 << 0)
    /// An all-zero PayloadDigest that the receiver does not check (TLS protects each hop).
    public static let digestFree = JumpgateExtensions(rawValue: 1 << 1)
    /// One cumulative acknowledgement (highest contiguous sequence number) every N messages or M ms, or
    /// sooner ahead of a message the receiver sends (docs/PROTOCOL.md).
    public static let cumulativeAck = JumpgateExtensions(rawValue: 1 << 2)
    /// No timer-driven retransmission while the WebSocket is up; unacknowledged messages are resent
    /// only after a reconnect.
    public static let noTimerRetransmit = JumpgateExtensions(rawValue: 1 << 3)
    /// smux protocol version 2: per-stream windows (UPD), so one slow stream never stalls the others.
    public static let smuxV2 = JumpgateExtensions(rawValue: 1 << 4)
    /// TCP half-close carried through the tunnel (a FIN ends one direction only).
    public static let halfClose = JumpgateExtensions(rawValue: 1 << 5)
    /// The agent says why a stream could not be connected (``PayloadType/jumpgateConnectError``) before
    /// the official ConnectToPortError flag, so the client can show the reason.
    public static let connectErrors = JumpgateExtensions(rawValue: 1 << 6)
    /// Shell sessions: the agent sends the shell's exit status (``PayloadType/exitCode``) before the session
    /// ends, and the client exits with it. The official plugin would print it as output, so only a client
    /// that accepts this gets it.
    public static let exitCodes = JumpgateExtensions(rawValue: 1 << 7)

    public static let all: JumpgateExtensions = [
        .largePayloads, .digestFree, .cumulativeAck, .noTimerRetransmit, .smuxV2, .halfClose, .connectErrors,
        .exitCodes,
    ]

    /// The `Properties` key the agent advertises under.
    public static let propertiesKey = "jumpgateExtensions"
    /// The `ActionResult` key the client accepts under.
    public static let actionResultKey = "JumpgateExtensions"
    /// The most of a connection's bytes one fast-path message carries (smux headers come on top:
    /// ``NegotiatedSession/maximumPayloadSize(sentByAgent:)``).
    public static let largePayloadSize = 64 * 1024
    /// The stream payload size the official peers use.
    public static let officialPayloadSize = 1024

    private static let names: [(JumpgateExtensions, String)] = [
        (.largePayloads, "large-payloads"), (.digestFree, "digest-free"), (.cumulativeAck, "cumulative-ack"),
        (.noTimerRetransmit, "no-timer-retransmit"), (.smuxV2, "smux-v2"), (.halfClose, "half-close"),
        (.connectErrors, "connect-errors"), (.exitCodes, "exit-code"),
    ]

    /// The comma-separated wire form, e.g. `large-payloads,digest-free`.
    public var wireValue: String {
        Self.names.filter { self.contains($0.0) }.map(\.1).joined(separator: ",")
    }

    /// Parses the wire form; unknown names are ignored so newer peers can offer more.
    public init(wireValue: String) {
        var result: JumpgateExtensions = []
        for name in wireValue.split(separator: ",") {
            let trimmed = name.trimmingSpaces
            if let match = Self.names.first(where: { $0.1 == trimmed }) {
                result.insert(match.0)
            }
        }
        self = result
    }

    public var description: String { self.isEmpty ? "none" : self.wireValue }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}
