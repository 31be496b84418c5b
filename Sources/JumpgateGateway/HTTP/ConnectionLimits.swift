import NIOCore

/// The gateway's limits on connections before they become WebSockets (docs/SECURITY.md lists each with
/// what it protects against). Each is a `jumpgate server` flag.
public struct ConnectionLimits: Sendable, Equatable {
    /// A TLS handshake must finish within this long of the TCP connection.
    public var tlsHandshakeTimeout: TimeAmount = .seconds(10)
    /// A request's header must be complete within this long of its first byte (one deadline, never
    /// extended by arriving bytes).
    public var requestHeaderTimeout: TimeAmount = .seconds(10)
    /// A request body must keep up ``minimumBodyRate`` bytes a second, with this much slack (a token
    /// bucket of rate × grace bytes, full at the header's end): a body that stalls is closed after the grace.
    public var bodyGracePeriod: TimeAmount = .seconds(10)
    public var minimumBodyRate: Int = 1024
    /// An idle keep-alive connection (or one that finished TLS and sent nothing) closes after this long.
    public var keepAliveIdleTimeout: TimeAmount = .seconds(60)
    /// Concurrent connections from one source address, and in all; past them a connection is closed at
    /// accept, before TLS.
    public var maximumConnectionsPerSource: Int = 1000
    public var maximumConnections: Int = 10_000
    /// Bytes the gateway holds for all connections together in HTTP request bodies and in relays' frames
    /// for an absent side; past it new requests are refused (503) and relays pause their senders.
    public var bufferBudget: Int = 256 << 20

    public init() {}
}

/// Why a connection was refused at accept or closed by a deadline: the `reason` label of the metrics.
public enum ConnectionRefusal: String, Sendable, CaseIterable {
    case perSourceLimit = "per_source_limit"
    case totalLimit = "total_limit"
    case outOfFileDescriptors = "out_of_file_descriptors"
}

public enum ConnectionTimeout: String, Sendable, CaseIterable {
    case tlsHandshake = "tls_handshake"
    case requestHeader = "request_header"
    case slowBody = "slow_body"
    case keepAliveIdle = "keepalive_idle"
}

/// Counts open connections per source address and in all; admits or refuses each new one. Pure.
public struct ConnectionAdmission: Sendable {
    public let perSource: Int
    public let total: Int
    public private(set) var open = 0
    private var bySource: [String: Int] = [:]

    public init(perSource: Int, total: Int) {
        self.perSource = perSource
        self.total = total
    }

    /// Admits a connection from `source` (counting it), or says why not (counting nothing).
    public mutating func admit(_ source: String) -> ConnectionRefusal? {
        if self.open >= self.total { return .totalLimit }
        let current = self.bySource[source, default: 0]
        if current >= self.perSource { return .perSourceLimit }
        self.bySource[source] = current + 1
        self.open += 1
        return nil
    }

    /// An admitted connection from `source` closed.
    public mutating func release(_ source: String) {
        guard let current = self.bySource[source] else { return }
        self.open -= 1
        if current <= 1 { self.bySource[source] = nil } else { self.bySource[source] = current - 1 }
    }

    public func count(from source: String) -> Int { self.bySource[source, default: 0] }
    public var sources: Int { self.bySource.count }
}

/// The deadlines of one HTTP connection, from accept until it becomes a WebSocket (or closes). Pure: the
/// handler reports events with the time and asks ``expired(now:)``. Requests may be pipelined: the reading
/// side (idle, header, body) and the responses still owed are tracked apart.
public struct HTTPConnectionDeadlines: Sendable {
    enum Phase: Sendable, Equatable {
        /// Waiting for the TLS handshake, since the connection was accepted.
        case handshake(since: NIODeadline)
        /// No request arriving, since the handshake or the last request's end.
        case idle(since: NIODeadline)
        /// A request's header is arriving, since its first byte.
        case header(since: NIODeadline)
        /// A request's body is arriving: a token bucket of body bytes, drained at the minimum rate and
        /// capped at one grace period's worth (bytes sent early buy at most that much silence later).
        case body(credit: Int64, lastCheck: NIODeadline)
    }

    let limits: ConnectionLimits
    private(set) var phase: Phase
    /// Requests read in full and not yet answered, and since when the oldest has waited for its answer
    /// to be written (a client that does not read its responses).
    private(set) var responsesOwed = 0
    private var respondingSince: NIODeadline?

    public init(limits: ConnectionLimits, acceptedAt now: NIODeadline) {
        self.limits = limits
        self.phase = .handshake(since: now)
    }

    public mutating func tlsHandshakeCompleted(now: NIODeadline) {
        if case .handshake = self.phase { self.phase = .idle(since: now) }
    }

    /// Plaintext bytes arrived.
    public mutating func bytesArrived(_ count: Int, now: NIODeadline) {
        guard count > 0 else { return }
        switch self.phase {
        case .idle:
            self.phase = .header(since: now)
        case .body(let credit, let lastCheck):
            self.phase = .body(credit: min(credit + Int64(count), self.bodyCreditCap), lastCheck: lastCheck)
        case .handshake, .header:
            break
        }
    }

    public mutating func headerCompleted(now: NIODeadline) {
        // The grace period is the bucket's first fill.
        self.phase = .body(credit: self.bodyCreditCap, lastCheck: now)
    }

    private var bodyCreditCap: Int64 {
        Int64(self.limits.minimumBodyRate) * self.limits.bodyGracePeriod.nanoseconds / 1_000_000_000
    }

    public mutating func requestCompleted(now: NIODeadline) {
        self.phase = .idle(since: now)
        if self.responsesOwed == 0 { self.respondingSince = now }
        self.responsesOwed += 1
    }

    public mutating func responseSent(now: NIODeadline) {
        self.responsesOwed = max(0, self.responsesOwed - 1)
        self.respondingSince = self.responsesOwed > 0 ? now : nil
        // Waiting for the next request starts once nothing is owed.
        if self.responsesOwed == 0, case .idle = self.phase { self.phase = .idle(since: now) }
    }

    /// The deadline that passed, if one did.
    public mutating func expired(now: NIODeadline) -> ConnectionTimeout? {
        // An answer that cannot be written for as long as a connection may idle: the client is not reading.
        if let since = self.respondingSince, now - since >= self.limits.keepAliveIdleTimeout { return .keepAliveIdle }
        switch self.phase {
        case .handshake(let since):
            return now - since >= self.limits.tlsHandshakeTimeout ? .tlsHandshake : nil
        case .idle(let since):
            // Not idle while the gateway still owes an answer (it is working, or writing).
            guard self.responsesOwed == 0 else { return nil }
            return now - since >= self.limits.keepAliveIdleTimeout ? .keepAliveIdle : nil
        case .header(let since):
            return now - since >= self.limits.requestHeaderTimeout ? .requestHeader : nil
        case .body(let credit, let lastCheck):
            let drained = Int64(self.limits.minimumBodyRate) * (now - lastCheck).nanoseconds / 1_000_000_000
            self.phase = .body(credit: credit - drained, lastCheck: now)
            return credit - drained < 0 ? .slowBody : nil
        }
    }
}
