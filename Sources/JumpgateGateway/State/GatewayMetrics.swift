import CoreMetrics
import NIOCore

/// The gateway's metrics (swift-metrics; the `jumpgate server` executable bootstraps a Prometheus
/// registry and serves it at GET /metrics). Created once; the per-frame path only increments counters.
public struct GatewayMetrics: Sendable {
    let sessionsStarted = Counter(label: "jumpgate_sessions_started_total")
    let sessionsActive = Gauge(label: "jumpgate_sessions_active")
    let agentsOnline = Gauge(label: "jumpgate_agents_online")
    let bytesToAgent = Counter(label: "jumpgate_relay_bytes_total", dimensions: [("direction", "to_agent")])
    let bytesToClient = Counter(label: "jumpgate_relay_bytes_total", dimensions: [("direction", "to_client")])
    let framesPaused = Counter(label: "jumpgate_relay_pause_publication_total")
    let apiRequests = Counter(label: "jumpgate_api_requests_total")
    let apiErrors = Counter(label: "jumpgate_api_errors_total")

    public init() {}

    /// Bytes the gateway holds for one session: frames buffered for an absent side plus what sits in the
    /// two sockets' outbound buffers. Bounded by design (see SessionRelay); sampled, not per frame.
    static func bufferedBytesGauge(sessionID: String) -> Gauge {
        Gauge(label: "jumpgate_session_buffered_bytes", dimensions: [("session", sessionID)])
    }
}
