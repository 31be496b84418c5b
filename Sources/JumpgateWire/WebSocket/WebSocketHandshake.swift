import Crypto
import NIOCore

/// The HTTP/1.1 opening handshake of RFC 6455 §4, as pure functions: the client's request, the
/// `Sec-WebSocket-Accept` value, and parsing the server's response head.
public enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// A random 16-byte key, base64-encoded.
    public static func randomKey() -> String {
        // Two calls to the system generator (8 bytes each), not one per byte as `UInt8.random(in:)` makes.
        var rng = SystemRandomNumberGenerator()
        let words = [rng.next() as UInt64, rng.next() as UInt64]
        return Base64.encode(words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } })
    }

    /// The `Sec-WebSocket-Accept` value a server returns for `key`.
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(Array(Insecure.SHA1.hash(data: Array((key + guid).utf8))))
    }

    /// The upgrade request. `headers` are extra headers (for example SigV4's); Host, Upgrade, Connection,
    /// Sec-WebSocket-Key and Sec-WebSocket-Version are added.
    public static func clientRequest(
        host: String,
        pathAndQuery: String,
        key: String,
        headers: [(name: String, value: String)] = []
    ) -> ByteBuffer {
        var request = "GET \(pathAndQuery) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for header in headers where header.name.lowercased() != "host" {
            request += "\(header.name): \(header.value)\r\n"
        }
        request += "\r\n"
        return ByteBuffer(string: request)
    }

    /// A parsed response head.
    public struct ResponseHead: Sendable, Equatable {
        public var status: Int
        public var reason: String
        public var headers: [(name: String, value: String)]
        public var body: String

        public static func == (lhs: ResponseHead, rhs: ResponseHead) -> Bool {
            lhs.status == rhs.status && lhs.reason == rhs.reason && lhs.body == rhs.body
                && lhs.headers.map(\.name) == rhs.headers.map(\.name)
                && lhs.headers.map(\.value) == rhs.headers.map(\.value)
        }

        public func header(_ name: String) -> String? {
            self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    /// The largest response head accepted before the connection is abandoned.
    public static let maximumResponseHeadSize = 16 * 1024

    /// Parses a response head from the front of `buffer` and consumes it. Returns nil if more bytes are
    /// needed. A non-101 response's body (up to Content-Length, within the limit) is read too, so errors
    /// can be shown to the user.
    public static func parseResponse(_ buffer: inout ByteBuffer) throws(WireError) -> ResponseHead? {
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if view.count > maximumResponseHeadSize {
                throw WireError(
                    .invalidWebSocketFrame,
                    "the server's HTTP response head is larger than \(maximumResponseHeadSize) bytes"
                )
            }
            return nil
        }
        let headLength = end.upperBound - view.startIndex
        let text = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { throw WireError(.invalidWebSocketFrame, "empty HTTP response") }
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw WireError(.invalidWebSocketFrame, "the server did not answer with HTTP/1.1")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t"))
            )
        }
        var head = ResponseHead(
            status: status,
            reason: statusLine.count > 2 ? String(statusLine[2]) : "",
            headers: headers,
            body: ""
        )
        var bodyLength = 0
        if status != 101, let lengthText = head.header("content-length"), let length = Int(lengthText), length >= 0 {
            guard length <= maximumResponseHeadSize else {
                throw WireError(
                    .invalidWebSocketFrame,
                    "the server's error body is larger than \(maximumResponseHeadSize) bytes"
                )
            }
            guard view.count >= headLength + length else { return nil }
            bodyLength = length
            head.body = String(decoding: view[end.upperBound..<(end.upperBound + length)], as: UTF8.self)
        }
        buffer.moveReaderIndex(forwardBy: headLength + bodyLength)
        return head
    }

    /// Checks a 101 response against the key that was sent.
    public static func validateUpgrade(_ head: ResponseHead, key: String) throws(WireError) {
        guard head.status == 101 else {
            let detail = head.body.isEmpty ? head.reason : head.body
            throw WireError(
                .invalidWebSocketFrame,
                "the server refused the WebSocket upgrade: HTTP \(head.status) \(detail)"
            )
        }
        guard head.header("upgrade")?.lowercased() == "websocket",
            head.header("sec-websocket-accept") == acceptValue(forKey: key)
        else {
            throw WireError(
                .invalidWebSocketFrame,
                "the server's WebSocket upgrade response is invalid (wrong Upgrade or Sec-WebSocket-Accept)"
            )
        }
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let first = s.first, set.contains(first) { s.removeFirst() }
        while let last = s.last, set.contains(last) { s.removeLast() }
        return String(s)
    }
}
