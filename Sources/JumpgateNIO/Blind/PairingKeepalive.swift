import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// TCP keepalive on every relay-blind pairing connection, at all three ends (docs/BLIND-RELAY.md): the
/// first probe after 20 s of silence, then every 5 s, dead after 8 unanswered. A path that died is found
/// within about a minute, as a WebSocket data channel silent for 60 s is taken for dead (docs/PROTOCOL.md
/// §1), and an idle pair stays silent inside: probes carry no bytes, so they neither count as a session's
/// activity nor reach the ends' applications. (`TCP_USER_TIMEOUT` is not set: since Linux 5.13 it also ends a
/// connection whose peer advertises a zero window that long, which is a side that stopped reading for
/// backpressure, not a dead one.)
public enum PairingKeepalive {
    public static let idleSeconds = 20
    public static let intervalSeconds = 5
    public static let probes = 8

    /// Sets the options on `channel` (on its event loop).
    public static func apply(to channel: any Channel) throws {
        guard let options = channel.syncOptions else { return }
        try options.setOption(.socketOption(.so_keepalive), value: 1)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPIDLE)), value: Self.idleSeconds)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPINTVL)), value: Self.intervalSeconds)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPCNT)), value: Self.probes)
    }
}
