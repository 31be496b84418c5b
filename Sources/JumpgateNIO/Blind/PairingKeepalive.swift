import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// TCP keepalive on every relay-blind pairing connection, at all three ends (docs/BLIND-RELAY.md): the
/// first probe after 20 s of silence, then every 5 s, dead after 8 unanswered. A path that died is found
/// within about a minute, as a WebSocket data channel silent for 60 s is taken for dead (docs/PROTOCOL.md
/// §1), and an idle pair stays silent inside: probes carry no bytes, so they neither count as a session's
/// activity nor reach the ends' applications. Keepalive probes go only while nothing is in flight, so a
/// busy connection whose path died would wait for TCP's retransmissions to give up (about 15 minutes):
/// `TCP_USER_TIMEOUT` bounds that at ``userTimeoutSeconds``. Since Linux 5.13 it also ends a connection
/// whose peer holds a zero window that long, which is a peer not reading for two minutes: the session then
/// resumes on the WebSocket path, and reliable delivery loses nothing. (With smux v2 between Jumpgate peers a
/// slow reader stops its stream's window, not the data path, so that is rare.) Linux only; elsewhere the
/// system's keepalive defaults apply.
public enum PairingKeepalive {
    public static let idleSeconds = 20
    public static let intervalSeconds = 5
    public static let probes = 8
    public static let userTimeoutSeconds = 120

    /// Sets the options on `channel` (on its event loop).
    public static func apply(to channel: any Channel) throws {
        guard let options = channel.syncOptions else { return }
        try options.setOption(.socketOption(.so_keepalive), value: 1)
        #if os(Linux)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPIDLE)), value: Self.idleSeconds)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPINTVL)), value: Self.intervalSeconds)
        try options.setOption(.tcpOption(.init(rawValue: TCP_KEEPCNT)), value: Self.probes)
        try options.setOption(.tcpOption(.init(rawValue: TCP_USER_TIMEOUT)), value: Self.userTimeoutSeconds * 1000)
        #endif
    }
}
