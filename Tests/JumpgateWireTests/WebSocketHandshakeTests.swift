import JumpgateWire
import NIOCore
import Testing

@Suite("WebSocket opening handshake and IP address parsing")
struct WebSocketHandshakeTests {
    @Test("the accept value matches RFC 6455 §1.3's example")
    func acceptValue() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(Base64.decode(WebSocketHandshake.randomKey())?.count == 16)
    }

    @Test("the client request carries the upgrade headers and extra headers, but no second Host")
    func request() {
        let request = String(
            buffer: WebSocketHandshake.clientRequest(
                host: "gw:8443",
                pathAndQuery: "/v1/data-channel/s-1?role=publish_subscribe",
                key: "k",
                headers: [("X-Amz-Date", "20231114T221320Z"), ("host", "ignored")]
            )
        )
        #expect(request.hasPrefix("GET /v1/data-channel/s-1?role=publish_subscribe HTTP/1.1\r\nHost: gw:8443\r\n"))
        #expect(request.contains("Sec-WebSocket-Version: 13\r\n"))
        #expect(request.contains("X-Amz-Date: 20231114T221320Z\r\n"))
        #expect(!request.contains("ignored"))
        #expect(request.hasSuffix("\r\n\r\n"))
    }

    @Test("a 101 response is parsed drip-fed, validated, and leaves the frames after it")
    func upgradeResponse() throws {
        let key = "dGhlIHNhbXBsZSBub25jZQ=="
        let text =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        let bytes = Array(text.utf8) + [0x82, 0x00]
        var buffer = ByteBuffer()
        var head: WebSocketHandshake.ResponseHead?
        var fed = 0
        while head == nil, fed < bytes.count {
            buffer.writeInteger(bytes[fed])
            fed += 1
            head = try WebSocketHandshake.parseResponse(&buffer)
        }
        #expect(fed == text.utf8.count)  // complete exactly at the blank line
        let parsed = try #require(head)
        try WebSocketHandshake.validateUpgrade(parsed, key: key)
        #expect(throws: WireError.self) { try WebSocketHandshake.validateUpgrade(parsed, key: "other") }
        buffer.writeBytes(bytes[fed...])
        #expect(Array(buffer.readableBytesView) == [0x82, 0x00])
    }

    @Test("a refusal's status and body reach the error message")
    func refusal() throws {
        var buffer = ByteBuffer(
            string: "HTTP/1.1 403 Forbidden\r\nContent-Length: 21\r\n\r\n{\"message\":\"denied\"}\n"
        )
        let head = try #require(try WebSocketHandshake.parseResponse(&buffer))
        #expect(head.status == 403)
        #expect(throws: WireError.self) { try WebSocketHandshake.validateUpgrade(head, key: "k") }
        do {
            try WebSocketHandshake.validateUpgrade(head, key: "k")
        } catch {
            #expect(error.reason.contains("HTTP 403"))
            #expect(error.reason.contains("denied"))
        }
        var junk = ByteBuffer(string: "SSH-2.0-OpenSSH\r\n\r\n")
        #expect(throws: WireError.self) { try WebSocketHandshake.parseResponse(&junk) }
        var endless = ByteBuffer(repeating: UInt8(ascii: "a"), count: 20_000)
        #expect(throws: WireError.self) { try WebSocketHandshake.parseResponse(&endless) }
    }

    @Test(
        "IP address text parses to network-order bytes",
        arguments: [
            ("127.0.0.1", [127, 0, 0, 1]),
            ("::1", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            ("[::1]", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            ("::ffff:169.254.169.254", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 169, 254, 169, 254]),
            ("fd00:ec2::254", [0xFD, 0, 0x0E, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54]),
        ] as [(String, [UInt8])]
    )
    func ipParsing(text: String, bytes: [UInt8]) {
        #expect(IPAddressBytes.parse(text) == bytes)
    }

    @Test(
        "invalid addresses are rejected",
        arguments: ["256.0.0.1", "1.2.3", "1.2.3.4.5", "::1::", "12345::", "a.b.c.d", "", "1:2:3:4:5:6:7:8:9"]
    )
    func ipRejects(text: String) {
        #expect(IPAddressBytes.parse(text) == nil)
    }
}
