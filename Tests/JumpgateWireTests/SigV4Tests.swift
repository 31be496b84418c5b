import Foundation
import JumpgateWire
import Testing

/// One request signed by botocore, as `scripts/testing/botocore_sigv4_vectors.py` prints it.
struct BotocoreCase: Sendable, CustomStringConvertible {
    var name: String
    var request: SigV4Request
    var service: String
    var region: String
    var credentials: AWSCredentials
    var epoch: Int64
    var description: String { self.name }

    static func load() throws -> [BotocoreCase] {
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/testing/botocore_sigv4_vectors.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw WireError(
                .invalidPayload,
                "botocore_sigv4_vectors.py failed (is botocore installed? ./scripts/test installs it)"
            )
        }
        let json = try JSONValue(parsing: [UInt8](output))
        return try (json.arrayValue ?? []).map { item in
            let headers = (item["headers"]?.arrayValue ?? []).map { pair in
                (name: pair.arrayValue![0].stringValue!, value: pair.arrayValue![1].stringValue!)
            }
            let body = Base64.decode(item["body"]!.stringValue!)!
            guard let name = item["name"]?.stringValue else { throw WireError(.invalidPayload, "case without name") }
            return BotocoreCase(
                name: name,
                request: SigV4Request(
                    method: item["method"]!.stringValue!,
                    path: item["path"]!.stringValue!,
                    query: item["query"]!.stringValue!,
                    headers: headers,
                    body: body
                ),
                service: item["service"]!.stringValue!,
                region: item["region"]!.stringValue!,
                credentials: AWSCredentials(
                    accessKeyID: item["accessKey"]!.stringValue!,
                    secretAccessKey: item["secret"]!.stringValue!,
                    sessionToken: item["sessionToken"]?.stringValue
                ),
                epoch: item["epoch"]!.int64Value!
            )
        }
    }
}

@Suite("SigV4 against botocore")
struct SigV4Tests {
    static let cases: [BotocoreCase] = (try? BotocoreCase.load()) ?? []

    @Test("botocore's signing script ran and produced every case")
    func casesLoaded() throws {
        let cases = try BotocoreCase.load()
        #expect(cases.count == 7)
    }

    func secret(_ c: BotocoreCase) -> (String) -> String? {
        { $0 == c.credentials.accessKeyID ? c.credentials.secretAccessKey : nil }
    }

    @Test("the verifier accepts every botocore-signed request", arguments: SigV4Tests.cases)
    func verifierAccepts(c: BotocoreCase) throws {
        let identity = try SigV4Verifier(service: c.service).verify(
            c.request,
            nowEpochSeconds: c.epoch + 30,
            secretForAccessKey: self.secret(c)
        )
        #expect(identity.accessKeyID == c.credentials.accessKeyID)
        #expect(identity.region == c.region)
    }

    @Test(
        "the signer reproduces botocore's Authorization header exactly",
        arguments: SigV4Tests.cases.filter { $0.request.headerValues("authorization").count == 1 }
    )
    func signerMatches(c: BotocoreCase) throws {
        let authorization = c.request.headerValues("authorization")[0]
        let signedNames = authorization.components(separatedBy: "SignedHeaders=")[1].components(separatedBy: ",")[0]
            .split(separator: ";").map(String.init)
        var unsigned = c.request
        unsigned.headers = c.request.headers.filter {
            let name = $0.name.lowercased()
            return signedNames.contains(name) && !["x-amz-date", "x-amz-security-token"].contains(name)
        }
        let added = SigV4Signer(credentials: c.credentials, region: c.region, service: c.service).signatureHeaders(
            for: unsigned,
            epochSeconds: c.epoch
        )
        #expect(added.first { $0.name == "Authorization" }?.value == authorization)
        #expect(added.first { $0.name == "X-Amz-Date" }?.value == "20231114T221320Z")
    }

    @Test("the presigned query carries botocore's signature")
    func presignedMatches() throws {
        let c = try #require(Self.cases.first { $0.name.contains("presigned") })
        let theirs = SigV4.queryItems(c.request.query).first { $0.name == "X-Amz-Signature" }?.value
        let ours = SigV4Signer(credentials: c.credentials, region: c.region, service: c.service)
            .presignedQuery(
                method: "GET",
                host: "gw.example:8443",
                path: c.request.path,
                query: "role=publish_subscribe",
                epochSeconds: c.epoch,
                expires: 60
            )
        #expect(SigV4.queryItems(ours).first { $0.name == "X-Amz-Signature" }?.value == theirs)
        // And the verifier accepts ours.
        let request = SigV4Request(
            method: "GET",
            path: c.request.path,
            query: ours,
            headers: [("Host", "gw.example:8443")]
        )
        _ = try SigV4Verifier(service: "ssmmessages").verify(
            request,
            nowEpochSeconds: c.epoch + 59,
            secretForAccessKey: self.secret(c)
        )
        #expect(
            self.code {
                try SigV4Verifier(service: "ssmmessages").verify(
                    request,
                    nowEpochSeconds: c.epoch + 61,
                    secretForAccessKey: self.secret(c)
                )
            } == .signatureExpired
        )
    }

    func code<T>(_ body: () throws -> T) -> WireError.Code? {
        do {
            _ = try body()
            return nil
        } catch {
            return (error as? WireError)?.code
        }
    }

    @Test("tampering, wrong keys, stale dates and the wrong service are rejected with the right error")
    func rejections() throws {
        let c = try #require(Self.cases.first { $0.name == "botocore StartSession" })
        let verifier = SigV4Verifier(service: "ssm")
        var tampered = c.request
        tampered.payloadHash = SigV4.hexSHA256(Array("{}".utf8))
        #expect(
            self.code { try verifier.verify(tampered, nowEpochSeconds: c.epoch, secretForAccessKey: self.secret(c)) }
                == .invalidSignature
        )
        var otherHeader = c.request
        otherHeader.headers = otherHeader.headers.map {
            $0.name == "X-Amz-Target" ? ($0.name, "AmazonSSM.TerminateSession") : $0
        }
        #expect(
            self.code { try verifier.verify(otherHeader, nowEpochSeconds: c.epoch, secretForAccessKey: self.secret(c)) }
                == .invalidSignature
        )
        #expect(
            self.code { try verifier.verify(c.request, nowEpochSeconds: c.epoch, secretForAccessKey: { _ in "wrong" }) }
                == .invalidSignature
        )
        #expect(
            self.code { try verifier.verify(c.request, nowEpochSeconds: c.epoch, secretForAccessKey: { _ in nil }) }
                == .unknownAccessKey
        )
        #expect(
            self.code {
                try verifier.verify(c.request, nowEpochSeconds: c.epoch + 301, secretForAccessKey: self.secret(c))
            } == .signatureExpired
        )
        #expect(
            self.code {
                try verifier.verify(c.request, nowEpochSeconds: c.epoch - 301, secretForAccessKey: self.secret(c))
            } == .signatureExpired
        )
        #expect(
            self.code {
                try verifier.verify(c.request, nowEpochSeconds: c.epoch + 300, secretForAccessKey: self.secret(c))
            } == nil
        )
        #expect(
            self.code {
                try SigV4Verifier(service: "ssmmessages").verify(
                    c.request,
                    nowEpochSeconds: c.epoch,
                    secretForAccessKey: self.secret(c)
                )
            } == .invalidSignature
        )
        var noAuth = c.request
        noAuth.headers.removeAll { $0.name == "Authorization" }
        #expect(
            self.code { try verifier.verify(noAuth, nowEpochSeconds: c.epoch, secretForAccessKey: self.secret(c)) }
                == .malformedAuthorization
        )
        for garbage in [
            "AWS4-HMAC-SHA256 junk", "Basic abc", "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
        ] {
            var bad = c.request
            bad.headers = bad.headers.map { $0.name == "Authorization" ? ($0.name, garbage) : $0 }
            #expect(
                self.code { try verifier.verify(bad, nowEpochSeconds: c.epoch, secretForAccessKey: self.secret(c)) }
                    == .malformedAuthorization
            )
        }
    }

    @Test("timestamps convert both ways across dates")
    func timestamps() {
        #expect(SigV4.timestamp(epochSeconds: 1_700_000_000) == "20231114T221320Z")
        #expect(SigV4.timestamp(epochSeconds: 0) == "19700101T000000Z")
        #expect(SigV4.timestamp(epochSeconds: 951_782_400) == "20000229T000000Z")
        // Past the four-digit years, at either end of Int64: the nearest end, not an overflow trap.
        #expect(SigV4.timestamp(epochSeconds: .min) == "00000101T000000Z")
        #expect(SigV4.timestamp(epochSeconds: .max) == "99991231T235959Z")
        for epoch in stride(from: Int64(0), to: 4_102_444_800, by: 86_399 * 37) {
            #expect(SigV4.epochSeconds(timestamp: SigV4.timestamp(epochSeconds: epoch)) == epoch)
        }
        #expect(SigV4.epochSeconds(timestamp: "20231314T221320Z") == nil)
        #expect(SigV4.epochSeconds(timestamp: "2023-11-14T22:13") == nil)
    }

    @Test("credentials never print their secret")
    func redaction() {
        let credentials = AWSCredentials(accessKeyID: "AKIA1", secretAccessKey: "very-secret")
        #expect(!"\(credentials)".contains("very-secret"))
    }
}
