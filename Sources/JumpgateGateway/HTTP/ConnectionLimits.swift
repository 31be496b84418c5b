import NIOCore

/// The gateway's limits on connections before they become WebSockets (docs/SECURITY.md lists each with
/// what it protects against). Each is a `jumpgate server` flag.
public struct ConnectionLimits: Sendable, Equatable {
    /// A TLS handshake must finish within this long of the TCP connection.
    public var tlsHandshakeTimeout: TimeAmount = .seconds(10)
    /// A request's header must be complete within this long of its first byte (one deadline, never
    /// extended by arriving bytes).
    public var requestHeaderTimeout: TimeAmount = .seconds(10)
    /// After this long, a request body must have averaged at least ``minimumBodyRate`` bytes a second.
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
/// handler reports events with the time and asks ``expired(now:)``.
public struct HTTPConnectionDeadlines: Sendable {
    enum Phase: Sendable, Equatable {
        /// Waiting for the TLS handshake, since the connection was accepted.
        case handshake(since: NIODeadline)
        /// Between requests (or before the first), since the last response or the handshake.
        case idle(since: NIODeadline)
        /// A request's header is arriving, since its first byte.
        case header(since: NIODeadline)
        /// A request's body is arriving: since the header was complete, and how many bytes came since.
        case body(since: NIODeadline, bytes: Int)
        /// The gateway is answering; `nextRequestSince` is when a pipelined request's first byte came.
        case responding(nextRequestSince: NIODeadline?)
    }

    let limits: ConnectionLimits
    private(set) var phase: Phase

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
        case .body(let since, let bytes):
            self.phase = .body(since: since, bytes: bytes + count)
        case .responding(nil):
            self.phase = .responding(nextRequestSince: now)
        case .handshake, .header, .responding:
            break
        }
    }

    public mutating func headerCompleted(now: NIODeadline) {
        self.phase = .body(since: now, bytes: 0)
    }

    public mutating func requestCompleted() {
        self.phase = .responding(nextRequestSince: nil)
    }

    public mutating func responseSent(now: NIODeadline) {
        if case .responding(let next) = self.phase {
            self.phase = next.map { .header(since: $0) } ?? .idle(since: now)
        }
    }

    /// The deadline that passed, if one did.
    public func expired(now: NIODeadline) -> ConnectionTimeout? {
        switch self.phase {
        case .handshake(let since):
            return now - since >= self.limits.tlsHandshakeTimeout ? .tlsHandshake : nil
        case .idle(let since):
            return now - since >= self.limits.keepAliveIdleTimeout ? .keepAliveIdle : nil
        case .header(let since):
            return now - since >= self.limits.requestHeaderTimeout ? .requestHeader : nil
        case .body(let since, let bytes):
            let elapsed = now - since
            guard elapsed > self.limits.bodyGracePeriod else { return nil }
            let owed =
                Int64(self.limits.minimumBodyRate) * (elapsed - self.limits.bodyGracePeriod).nanoseconds
                / 1_000_000_000
            return Int64(bytes) < owed ? .slowBody : nil
        case .responding:
            return nil
        }
    }
}
