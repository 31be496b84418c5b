import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOPosix

/// Resolves a destination to every address, checks each against the allow-list, and connects to the
/// first allowed one that answers: the agent dials exactly an address it checked.
struct TargetDialer: Sendable {
    let allowList: AllowList
    let timeout: TimeAmount

    struct Candidate: Sendable {
        var bytes: [UInt8]
        var address: SocketAddress
    }

    /// `host` as a canonical address literal (what inet_pton accepts, e.g. `10.0.0.5` or `[::1]`): no
    /// resolver needed. Anything else (names, `2852039166`, `010.0.0.1`, scoped IPv6) is nil and goes to
    /// getaddrinfo, whose answer is what gets checked.
    static func literal(host: String, port: Int) -> Candidate? {
        let text = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let parsed = IPAddressBytes.parse(text), let address = try? SocketAddress(ipAddress: text, port: port)
        else { return nil }
        let bytes: [UInt8]
        switch address {
        case .v4(let v4): bytes = Self.addressBytes(of: v4.address)
        case .v6(let v6): bytes = Self.addressBytes(of: v6.address)
        case .unixDomainSocket: return nil
        }
        // Check the bytes that will be dialled; both parsers must agree on them.
        return bytes == parsed ? Candidate(bytes: bytes, address: address) : nil
    }

    /// The address bytes of a socket address, by their offsets in Linux's structures (family and port
    /// first, then for IPv6 the flow label): `sin_addr` itself is declared in a module of NIO's that
    /// this one may not import.
    static func addressBytes(of address: sockaddr_in) -> [UInt8] {
        withUnsafeBytes(of: address) { Array($0[4..<8]) }
    }

    static func addressBytes(of address: sockaddr_in6) -> [UInt8] {
        withUnsafeBytes(of: address) { Array($0[8..<24]) }
    }

    /// All addresses of a name: blocking getaddrinfo, so it runs on the thread pool.
    static func lookUp(host: String, port: Int) throws -> [Candidate] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw AgentError("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var candidates: [Candidate] = []
        var pointer: UnsafeMutablePointer<addrinfo>? = first
        while let info = pointer?.pointee {
            defer { pointer = info.ai_next }
            guard let sockaddr = info.ai_addr else { continue }
            switch Int32(info.ai_family) {
            case AF_INET:
                let v4 = sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                let bytes = Self.addressBytes(of: v4)
                candidates.append(Candidate(bytes: bytes, address: SocketAddress(v4, host: host)))
            case AF_INET6:
                let v6 = sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                let bytes = Self.addressBytes(of: v6)
                candidates.append(Candidate(bytes: bytes, address: SocketAddress(v6, host: host)))
            default:
                continue
            }
        }
        var seen = Set<[UInt8]>()
        return candidates.filter { seen.insert($0.bytes).inserted }
    }

    /// Resolves `host`, checks every address against the allow-list and connects to the first allowed
    /// one that answers. Everything runs on `eventLoop` (the session's, so the stream and its TCP side
    /// share a loop) except a name's getaddrinfo, which runs on the thread pool; a literal address is
    /// checked and dialled without leaving the loop.
    func dial(host: String, port: Int, eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let resolved: EventLoopFuture<[Candidate]>
        if let literal = Self.literal(host: host, port: port) {
            resolved = eventLoop.makeSucceededFuture([literal])
        } else {
            resolved = NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
                try Self.lookUp(host: host, port: port)
            }
        }
        return resolved.flatMapThrowing { candidates in
            try self.allowed(candidates, host: host, port: port)
        }.flatMap { allowed in
            self.connect(allowed[...], host: host, port: port, eventLoop: eventLoop, failures: [])
        }
    }

    /// The candidates the allow-list lets through; none throws the refusal (with what to do about it).
    func allowed(_ candidates: [Candidate], host: String, port: Int) throws -> [Candidate] {
        guard !candidates.isEmpty else { throw AgentError("\(host) resolved to no address") }
        var allowed: [Candidate] = []
        var firstRefusal: String?
        for candidate in candidates {
            if let refusal = self.allowList.refusal(name: host, address: candidate.bytes, port: port) {
                firstRefusal = firstRefusal ?? refusal
            } else {
                allowed.append(candidate)
            }
        }
        guard !allowed.isEmpty else {
            var reason = firstRefusal ?? "\(host):\(port) is not in this agent's allow-list."
            if reason.hasSuffix("is not in this agent's allow-list.") {
                // What to do: the allow-list is the agent's, so its operator decides.
                reason +=
                    " Ask the agent's operator to allow it (jumpgate agent run --allow \(HostPort.text(host, port)))."
            }
            throw DialRefusal(reason: reason)
        }
        return allowed
    }

    /// Tries `candidates` in order until one takes the connection; `failures` are the earlier addresses'
    /// errors, in order.
    private func connect(
        _ candidates: ArraySlice<Candidate>,
        host: String,
        port: Int,
        eventLoop: any EventLoop,
        failures: [(address: String, error: any Error)]
    ) -> EventLoopFuture<any Channel> {
        guard let candidate = candidates.first else {
            let reason = Self.connectFailure(host: host, port: port, timeout: self.timeout, failures: failures)
            return eventLoop.makeFailedFuture(AgentError(reason))
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(self.timeout)
            .channelInitializer { channel in
                // ClientBootstrap sets TCP_NODELAY by default (TargetDialerTests checks it).
                channel.eventLoop.makeCompletedFuture { try StreamSocketReads.configure(channel, noDelaySet: true) }
            }
            .connect(to: candidate.address)
            .flatMapError { error in
                let address = HostPort.text(candidate.address.ipAddress ?? "", candidate.address.port ?? port)
                return self.connect(
                    candidates.dropFirst(),
                    host: host,
                    port: port,
                    eventLoop: eventLoop,
                    failures: failures + [(address, error)]
                )
            }
    }

    /// Why no allowed address of `host:port` took the connection, for the client and the agent's log: one
    /// reason when every address failed the same way, else each reason with its addresses (an IPv6 address
    /// with no route must not hide that the IPv4 one refused).
    static func connectFailure(
        host: String,
        port: Int,
        timeout: TimeAmount,
        failures: [(address: String, error: any Error)]
    ) -> String {
        let destination = HostPort.text(host, port)
        // Addresses grouped by reason, in the order the reasons first came: short enough for the client's
        // connect-error line (512 characters) however many addresses a name has.
        var groups: [(reason: String, addresses: [String])] = []
        for failure in failures {
            let reason = Self.reason(failure.error, timeout: timeout)
            if let index = groups.firstIndex(where: { $0.reason == reason }) {
                groups[index].addresses.append(failure.address)
            } else {
                groups.append((reason, [failure.address]))
            }
        }
        guard let first = groups.first else { return "cannot connect to \(destination): no address answered" }
        if groups.count == 1 { return "cannot connect to \(destination): \(first.reason)" }
        let each = groups.map { "\($0.addresses.joined(separator: ", ")): \($0.reason)" }
        return "cannot connect to \(destination) at any of its addresses: \(each.joined(separator: "; "))"
    }

    /// What one connect error means, as the end of a sentence that begins "cannot connect to HOST:PORT: ".
    static func reason(_ error: any Error, timeout: TimeAmount) -> String {
        switch NetworkFailure(error) {
        case .refused:
            return "nothing listens there (connection refused)"
        case .timedOut:
            return "timed out after \(timeout.nanoseconds / 1_000_000_000) s without an answer"
        case .unreachable:
            return "no route from the agent's host"
        case .other(let text), .answered(let text):
            return text
        case .closed, .closedEarly:
            // The handshake completed and a reset followed at once: a server closing its listener (between
            // runs, restarting) or dropping connections over its own limit.
            return
                "the connection was reset or closed as it opened (a server restarting or at its connection limit, or this agent stopping)"
        case .addressNotAvailable, .addressInUse:
            return "the agent's host has no local port left for it (too many connections, or in TIME_WAIT)"
        case .permissionDenied:
            return "the agent's host does not permit it (a firewall rule, or a broadcast address)"
        default:
            return "the connection failed"
        }
    }
}

/// The allow-list refused every address of a destination: a security event, logged as a warning.
struct DialRefusal: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
}
