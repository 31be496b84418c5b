import FuzzSupport
import JumpgateWire
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// The gateway's front door: bytes through NIO's HTTP/1.1 request decoder (as the gateway's pipeline has
/// it), then each request's SigV4 verification, header-signed or presigned, as `GatewayAuthenticator` runs
/// it. Properties: verification never accepts a request signed with another secret; whatever request the
/// parser accepts, signing it with the known key and verifying succeeds, and one changed body byte fails.
@_cdecl("FuzzHTTPSigV4_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

let now: Int64 = 1_764_744_000  // 2025-12-03T06:40:00Z
let credentials = AWSCredentials(accessKeyID: "AKJGFUZZFUZZFUZZFUZZ", secretAccessKey: "fuzz-secret")
let verifier = SigV4Verifier(service: "ssm")

func fuzzOne(_ input: FuzzInput) {
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish() }
    guard (try? channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))) != nil
    else { return }
    var requests: [(HTTPRequestHead, [UInt8])] = []
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    for piece in input.pieces() {
        guard (try? channel.writeInbound(piece)) != nil else { break }
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let h): (head, body) = (h, [])
            case .body(let bytes): if body.count < 65536 { body += bytes.readableBytesView }
            case .end: if let head { requests.append((head, body)) }
            }
        }
    }
    for (head, body) in requests { check(head, body) }
}

func split(_ uri: String) -> (String, String) {
    guard let mark = uri.firstIndex(of: "?") else { return (uri, "") }
    return (String(uri[..<mark]), String(uri[uri.index(after: mark)...]))
}

func check(_ head: HTTPRequestHead, _ body: [UInt8]) {
    let (path, query) = split(head.uri)
    let headers = head.headers.map { ($0.name, $0.value) }
    let request = SigV4Request(method: head.method.rawValue, path: path, query: query, headers: headers, body: body)
    // As sent: only a signature made with the secret may pass; the fuzzer cannot know it.
    let identity = try? verifier.verify(request, nowEpochSeconds: now) { _ in "not-the-fuzz-secret" }
    fuzzCheck(identity == nil, "a request verified against a secret the fuzzer does not know")

    // Signed honestly: verifies, unless the request carries its own signature fields that take precedence,
    // or has no Host header (the verifier requires Host signed; the signer signs the headers it is given).
    guard head.headers.contains(name: "Host") else { return }
    let carriesSignature =
        query.contains("X-Amz-") || head.headers.contains(name: "Authorization")
        || head.headers.contains(name: "X-Amz-Date") || head.headers.contains(name: "X-Amz-Security-Token")
        || head.headers.contains(name: "X-Amz-Content-Sha256")
    guard !carriesSignature else { return }
    let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "ssm")
    let signed = SigV4Request(
        method: request.method,
        path: path,
        query: query,
        headers: headers + signer.signatureHeaders(for: request, epochSeconds: now),
        body: body
    )
    let secret: (String) -> String? = { $0 == credentials.accessKeyID ? credentials.secretAccessKey : nil }
    do {
        _ = try verifier.verify(signed, nowEpochSeconds: now, secretForAccessKey: secret)
    } catch {
        fuzzCheck(false, "an honestly signed request failed verification: \(error)")
    }
    var tampered = signed
    tampered.payloadHash = SigV4.hexSHA256(body + [0])
    fuzzCheck(
        (try? verifier.verify(tampered, nowEpochSeconds: now, secretForAccessKey: secret)) == nil,
        "a request whose body changed after signing still verified"
    )
}
