import CoreMetrics
import JumpgateWire
import NIOCore

/// The gateway's metrics (swift-metrics; the `jumpgate server` executable bootstraps a Prometheus
/// registry and serves it at GET /metrics). Created once; the per-frame path only increments counters.
public struct GatewayMetrics: Sendable {
    let sessionsStarted = Counter(label: "jumpgate_sessions_started_total")
    /// Relay-blind pairs made (docs/BLIND-RELAY.md): each is a session, or a session's re-pairing, whose
    /// bytes the gateway only passed on.
    let blindPairs = Counter(label: "jumpgate_blind_pairs_total")
    /// Bytes the relay-blind pairs carried (TLS records), toward each side; they count in
    /// `jumpgate_relay_bytes_total` too.
    let blindBytesToAgent = Counter(label: "jumpgate_blind_bytes_total", dimensions: [("direction", "to_agent")])
    let blindBytesToClient = Counter(label: "jumpgate_blind_bytes_total", dimensions: [("direction", "to_client")])
    let sessionsActive = Gauge(label: "jumpgate_sessions_active")
    let agentsOnline = Gauge(label: "jumpgate_agents_online")
    let bytesToAgent = Counter(label: "jumpgate_relay_bytes_total", dimensions: [("direction", "to_agent")])
    let bytesToClient = Counter(label: "jumpgate_relay_bytes_total", dimensions: [("direction", "to_client")])
    let framesPaused = Counter(label: "jumpgate_relay_pause_publication_total")
    /// The largest number of bytes the gateway holds for any one session, and the total over all of them,
    /// sampled when /metrics is scraped. No metric carries a session, user or instance label: the port is
    /// public, and those ids are not for everyone who can reach it.
    let sessionBufferedBytesMax = Gauge(label: "jumpgate_session_buffered_bytes_max")
    let relayBufferedBytes = Gauge(label: "jumpgate_relay_buffered_bytes")
    /// All the gateway holds for its peers (request bodies, relays' held frames and their sockets' outbound
    /// buffers), against `--buffer-budget`; and the connections open now.
    let bufferedBytes = Gauge(label: "jumpgate_buffered_bytes")
    let connectionsOpen = Gauge(label: "jumpgate_connections_open")
    /// Agents' connection-record uploads taken (each one request, one audit batch): about one a second
    /// per busy agent, however many connections it serves.
    let connectionRecordUploads = Counter(label: "jumpgate_connection_record_uploads_total")
    /// Bytes of shell and command recordings agents delivered.
    let recordingBytes = Counter(label: "jumpgate_recording_bytes_total")
    /// 1 while the store's last write succeeded, 0 while it cannot write (/healthz then answers 503).
    let storeWritable = Gauge(label: "jumpgate_store_writable")
    /// The process's open file descriptors and resident memory, sampled at each scrape (Prometheus's
    /// conventional names, so existing dashboards and leak alerts apply).
    let openFileDescriptors = Gauge(label: "process_open_fds")
    let residentMemoryBytes = Gauge(label: "process_resident_memory_bytes")
    /// Everything refused from a peer, by type: failed sign-ins and registrations, channels with a bad
    /// token or opening frame, WebSocket protocol violations, opening frames that never came. Logged as a
    /// summary per source per minute (`refused requests`), never one line per refusal.
    private let refusals: [String: Counter] = Dictionary(
        uniqueKeysWithValues: GatewayMetrics.refusalTypes.map {
            ($0, Counter(label: "jumpgate_refusals_total", dimensions: [("type", $0)]))
        }
    )

    /// The `type` label's values: the error types the gateway answers refusals with, and its own names
    /// for refusals that have no answer. Anything else counts as `other`, so no peer can create labels.
    static let refusalTypes =
        [
            "InvalidSignatureException", "UnrecognizedClientException", "MissingAuthenticationTokenException",
            "InvalidActivation", "ThrottlingException", "DataChannelRefused", "ControlChannelRefused",
            "WebSocketProtocolError", "OpeningFrameTimeout", "HTTPParseError", "DoesNotExistException",
            "AccessDeniedException", "BadRequest",
        ] + PairingLine.Refusal.allCases.map(\.rawValue) + PairingTable<Int>.Refusal.allCases.map(\.rawValue) + [
            "PairingLineTimeout", "other",
        ]

    /// What agents refused inside sessions (from their clients), as they report it with their connection
    /// records: a closed set of types (``SessionRefusal``).
    private let agentRefusals: [SessionRefusal: Counter] = Dictionary(
        uniqueKeysWithValues: SessionRefusal.allCases.map {
            ($0, Counter(label: "jumpgate_agent_refusals_total", dimensions: [("type", $0.rawValue)]))
        }
    )

    func agentRefused(_ type: SessionRefusal, count: Int) {
        self.agentRefusals[type]?.increment(by: count)
    }

    func refused(_ type: String) {
        (self.refusals[type] ?? self.refusals["other"])?.increment()
    }

    public init() {}

    /// The SSM operations counted under their own name; anything else counts as `unknown`, so a client
    /// cannot create label values at will.
    static let operations: Set<String> = [
        "StartSession", "TerminateSession", "ResumeSession", "DescribeSessions", "DescribeInstanceInformation",
        "CreateActivation", "DescribeActivations", "DeleteActivation", "DeregisterManagedInstance",
        "RegisterManagedInstance",
    ]

    /// One API request answered: `outcome` is success, client_error (4xx) or server_error (5xx).
    func apiRequest(operation: String, status: Int) {
        let name = Self.operations.contains(operation) ? operation : "unknown"
        let outcome = status < 400 ? "success" : status < 500 ? "client_error" : "server_error"
        Counter(label: "jumpgate_api_requests_total", dimensions: [("operation", name), ("outcome", outcome)])
            .increment()
    }
}
