import JumpgateWire
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// What went wrong on the network, in terms a person can act on: the errors of NIO, NIOSSL and the
/// kernel sorted into the handful of things that actually happen. Messages built from it never carry a
/// library's type names, errno dumps or build paths (see `FailureText`).
public enum NetworkFailure: Equatable, Sendable {
    /// Nothing listens at the address (ECONNREFUSED).
    case refused
    /// No route, network down, host unreachable.
    case unreachable
    /// Connecting (or a handshake) took too long.
    case timedOut
    /// The name does not resolve.
    case nameNotResolved
    /// The peer's certificate does not chain to the trusted CA.
    case untrustedCertificate
    /// The certificate is valid but names another host.
    case wrongHostname
    /// The peer does not speak TLS (a plain-HTTP port, another service).
    case notTLS
    /// The peer closed the connection before or during the handshake (a refusal, a limit).
    case closedEarly
    /// The connection was reset or closed while in use.
    case closed
    /// Binding: another program holds the address (EADDRINUSE).
    case addressInUse
    /// Binding: a port below 1024 without the privilege, or a similar refusal (EACCES, EPERM).
    case permissionDenied
    /// Binding: the address is not one of this host's (EADDRNOTAVAIL).
    case addressNotAvailable
    /// The peer answered, but not as the protocol says (a refused WebSocket upgrade, a bad response):
    /// Jumpgate's own explanation.
    case answered(String)
    /// Anything else, described by the system's text for it (strerror), never a type dump.
    case other(String)

    /// Sorts `error` (from connecting, a TLS handshake, or binding).
    public init(_ error: any Error) {
        switch error {
        case let error as NIOConnectionError:
            // Happy eyeballs tried each address: the most telling failure wins (an IPv6 "no route" for
            // localhost must not hide that nothing listens on its IPv4 address). None: the name
            // resolved to nothing.
            let failures = error.connectionErrors.map { NetworkFailure($0.error) }
            self =
                [.refused, .timedOut, .closedEarly, .unreachable].first(where: failures.contains)
                ?? failures.first ?? .nameNotResolved
        case let error as IOError:
            self = NetworkFailure(errno: error.errnoCode)
        case let error as ChannelError:
            switch error {
            case .connectTimeout: self = .timedOut
            case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed: self = .closed
            default: self = .other("the connection failed unexpectedly")
            }
        case let error as NIOSSLError:
            switch error {
            case .handshakeFailed(let detail):
                let text = "\(detail)"
                if text.contains("CERTIFICATE_VERIFY_FAILED") {
                    self = .untrustedCertificate
                } else if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG")
                    || text.contains("HTTP_REQUEST")
                {
                    self = .notTLS
                } else {
                    self = .other("the TLS handshake failed")
                }
            case .uncleanShutdown: self = .closedEarly
            case .unableToValidateCertificate, .noCertificateToValidate: self = .untrustedCertificate
            default: self = .other("the TLS connection failed")
            }
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            self = .wrongHostname
        case is SocketAddressError:
            self = .nameNotResolved
        case let error as WireError:
            self = .answered(error.description)
        default:
            self = .other("the connection failed unexpectedly")
        }
    }

    /// Sorts an errno value.
    public init(errno: Int32) {
        switch errno {
        case ECONNREFUSED: self = .refused
        case ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN: self = .unreachable
        case ETIMEDOUT: self = .timedOut
        case ECONNRESET, EPIPE, ECONNABORTED: self = .closed
        case EADDRINUSE: self = .addressInUse
        case EACCES, EPERM: self = .permissionDenied
        case EADDRNOTAVAIL: self = .addressNotAvailable
        default: self = .other(String(cString: strerror(errno)).lowercased())
        }
    }
}

/// Sentences for the person at the terminal: what happened, then what to do.
public enum FailureText {
    /// Reaching a gateway at `url` (`https://HOST:PORT`) failed. `caFile` is the CA in use (nil: system roots).
    public static func reachingGateway(_ url: String, caFile: String?, _ failure: NetworkFailure) -> String {
        switch failure {
        case .refused:
            return
                "Nothing is listening at \(url). Is the gateway running? Start it with 'jumpgate server', or check --endpoint-url (or AWS_ENDPOINT_URL_SSM)."
        case .unreachable:
            return "\(url) cannot be reached from this host (no route). Check the address and the network."
        case .timedOut:
            return
                "\(url) did not answer in time. Check the address, and that no firewall drops traffic to the gateway's port."
        case .nameNotResolved:
            return "The host in \(url) does not resolve. Check the spelling of --endpoint-url, or use an IP address."
        case .untrustedCertificate:
            let trusted = caFile.map { "the CA in \($0)" } ?? "the system's CAs"
            return
                "The gateway at \(url) presented a certificate that \(trusted) did not issue. Pass --ca-file DATA_DIR/tls/ca.pem (the gateway's data directory) or set AWS_CA_BUNDLE to it."
        case .wrongHostname:
            return
                "The gateway's certificate does not name the host in \(url). Connect by a name or address the certificate lists (localhost, 127.0.0.1, the --listen address or --public-url's host)."
        case .notTLS:
            return "\(url) does not speak TLS: is that the gateway's port? The gateway serves HTTPS only."
        case .closedEarly:
            return
                "The gateway at \(url) closed the connection before answering: it may be refusing this address (too many connections or failed sign-ins); see the gateway's log."
        case .closed:
            return
                "The connection to the gateway at \(url) was closed before it answered. Try again; see the gateway's log if it persists."
        case .answered(let text):
            return "The gateway at \(url) did not accept the connection: \(text)."
        case .addressInUse, .permissionDenied, .addressNotAvailable:
            return "Cannot open a connection to \(url) from this host: check its network settings."
        case .other(let text):
            return "Could not reach the gateway at \(url): \(text). Check --endpoint-url and that the gateway runs."
        }
    }

    /// Listening on `host:port` failed.
    public static func binding(host: String, port: Int, _ failure: NetworkFailure) -> String {
        let address = HostPort.text(host, port)
        switch failure {
        case .addressInUse:
            return
                "Port \(port) on \(host) is already in use by another program. Choose another local port (0 picks a free one), or find the program with: ss -ltnp 'sport = :\(port)'"
        case .permissionDenied:
            return "Not allowed to listen on \(address): ports below 1024 need root. Choose a port above 1023."
        case .addressNotAvailable:
            return
                "\(host) is not an address of this host, so nothing can listen on \(address). Use 127.0.0.1, ::1 or one of this host's addresses."
        case .nameNotResolved:
            return "Cannot listen on \(address): \(host) does not resolve. Use an IP address such as 127.0.0.1."
        case .other(let text), .answered(let text):
            return "Cannot listen on \(address): \(text). Choose another address or port."
        default:
            return "Cannot listen on \(address). Choose another address or port."
        }
    }

    /// Why a CA file cannot serve as the trust root, or nil when it holds a PEM certificate.
    public static func caFileProblem(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return
                "The CA file \(path) does not exist. Pass the gateway's DATA_DIR/tls/ca.pem with --ca-file (or AWS_CA_BUNDLE)."
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            return "The CA file \(path) is not a regular file. Pass the gateway's DATA_DIR/tls/ca.pem."
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            return "The CA file \(path) cannot be read (permission denied). Check its permissions."
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0, String(decoding: bytes.prefix(n), as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
            return
                "The CA file \(path) holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line). Pass the gateway's DATA_DIR/tls/ca.pem."
        }
        return nil
    }
}
