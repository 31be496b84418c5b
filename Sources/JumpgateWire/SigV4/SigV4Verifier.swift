/// Who signed a request that verified.
public struct SigV4Identity: Hashable, Sendable {
    public var accessKeyID: String
    public var region: String
    public var service: String
    public var epochSeconds: Int64
}

/// Verifies Signature Version 4 requests (Authorization header or presigned query) against the secret
/// of the access key they name. The signature is compared in constant time; the date must be within
/// ``maximumClockSkew`` of now (and a presigned URL unexpired).
public struct SigV4Verifier: Sendable {
    public var service: String
    public var maximumClockSkew: Int64

    public init(service: String, maximumClockSkew: Int64 = 300) {
        self.service = service
        self.maximumClockSkew = maximumClockSkew
    }

    /// The fields of an `Authorization` header or presigned query.
    struct Parsed {
        var accessKeyID: String
        var date: String
        var region: String
        var service: String
        var signedHeaders: [String]
        var signature: String
        var timestamp: String
        var expires: Int64?
    }

    public func verify(
        _ request: SigV4Request,
        nowEpochSeconds: Int64,
        secretForAccessKey: (String) -> String?
    ) throws(WireError) -> SigV4Identity {
        let queryItems = SigV4.queryItems(request.query)
        let isPresigned = queryItems.contains { $0.name == "X-Amz-Signature" }
        let parsed = isPresigned ? try Self.parsePresigned(queryItems) : try Self.parseAuthorization(request)
        guard parsed.service == self.service else {
            throw WireError(
                .invalidSignature,
                "credential scope names service '\(parsed.service)', expected '\(self.service)'"
            )
        }
        guard let signedAt = SigV4.epochSeconds(timestamp: parsed.timestamp) else {
            throw WireError(.malformedAuthorization, "X-Amz-Date '\(parsed.timestamp)' is not YYYYMMDDTHHMMSSZ")
        }
        guard parsed.timestamp.hasPrefix(parsed.date) else {
            throw WireError(
                .invalidSignature,
                "credential scope date \(parsed.date) does not match X-Amz-Date \(parsed.timestamp)"
            )
        }
        if let expires = parsed.expires {
            guard (1...604_800).contains(expires) else {
                throw WireError(.malformedAuthorization, "X-Amz-Expires must be between 1 and 604800 seconds")
            }
            guard nowEpochSeconds <= signedAt + expires, signedAt - self.maximumClockSkew <= nowEpochSeconds else {
                throw WireError(.signatureExpired, "the presigned request expired or is dated in the future")
            }
        } else {
            guard abs(nowEpochSeconds - signedAt) <= self.maximumClockSkew else {
                throw WireError(
                    .signatureExpired,
                    "Signature expired: \(parsed.timestamp) is more than \(self.maximumClockSkew / 60) minutes from the server time \(SigV4.timestamp(epochSeconds: nowEpochSeconds))"
                )
            }
        }
        guard parsed.signedHeaders.contains("host") else {
            throw WireError(.invalidSignature, "the Host header must be signed")
        }
        for name in parsed.signedHeaders where request.headerValues(name).isEmpty {
            throw WireError(.invalidSignature, "signed header '\(name)' is missing from the request")
        }
        guard let secret = secretForAccessKey(parsed.accessKeyID) else {
            throw WireError(.unknownAccessKey, "The security token included in the request is invalid.")
        }
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: parsed.accessKeyID, secretAccessKey: secret),
            region: parsed.region,
            service: parsed.service
        )
        let scope = "\(parsed.date)/\(parsed.region)/\(parsed.service)/aws4_request"
        let items = isPresigned ? queryItems.filter { $0.name != "X-Amz-Signature" } : queryItems
        var payloadHash = request.payloadHash
        if !isPresigned, let declared = request.headerValues("x-amz-content-sha256").first {
            guard declared == SigV4.unsignedPayload || declared == request.payloadHash else {
                throw WireError(.invalidSignature, "x-amz-content-sha256 does not match the body")
            }
            payloadHash = declared
        }
        let canonical = SigV4.canonicalRequest(
            request,
            queryItems: items,
            signedHeaders: parsed.signedHeaders,
            payloadHash: payloadHash
        )
        let expected = signer.signature(timestamp: parsed.timestamp, scope: scope, canonicalRequest: canonical)
        guard SigV4.constantTimeEquals(expected, parsed.signature) else {
            throw WireError(
                .invalidSignature,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
            )
        }
        return SigV4Identity(
            accessKeyID: parsed.accessKeyID,
            region: parsed.region,
            service: parsed.service,
            epochSeconds: signedAt
        )
    }

    static func parseScope(_ credential: String) throws(WireError) -> (String, String, String, String) {
        let parts = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[4] == "aws4_request", !parts[0].isEmpty, parts[1].utf8.count == 8 else {
            throw WireError(
                .malformedAuthorization,
                "Credential must be ACCESSKEY/YYYYMMDD/REGION/SERVICE/aws4_request"
            )
        }
        return (parts[0], parts[1], parts[2], parts[3])
    }

    static func parseAuthorization(_ request: SigV4Request) throws(WireError) -> Parsed {
        guard let header = request.headerValues("authorization").first else {
            throw WireError(.malformedAuthorization, "Missing Authentication Token")
        }
        guard header.hasPrefix(SigV4.algorithm + " ") else {
            throw WireError(.malformedAuthorization, "Authorization must use \(SigV4.algorithm)")
        }
        var fields: [String: String] = [:]
        for part in header.dropFirst(SigV4.algorithm.count + 1).split(separator: ",") {
            let trimmed = part.trimmingSpaces
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw WireError(.malformedAuthorization, "Authorization field '\(trimmed)' is not key=value")
            }
            fields[String(trimmed[..<eq])] = String(trimmed[trimmed.index(after: eq)...])
        }
        guard let credential = fields["Credential"], let signedHeaders = fields["SignedHeaders"],
            let signature = fields["Signature"]
        else {
            throw WireError(.malformedAuthorization, "Authorization needs Credential, SignedHeaders and Signature")
        }
        guard let timestamp = request.headerValues("x-amz-date").first else {
            throw WireError(.malformedAuthorization, "the X-Amz-Date header is missing")
        }
        let (key, date, region, service) = try parseScope(credential)
        return Parsed(
            accessKeyID: key,
            date: date,
            region: region,
            service: service,
            signedHeaders: signedHeaders.split(separator: ";").map { $0.lowercased() },
            signature: signature,
            timestamp: timestamp,
            expires: nil
        )
    }

    static func parsePresigned(_ items: [(name: String, value: String)]) throws(WireError) -> Parsed {
        func value(_ name: String) throws(WireError) -> String {
            guard let v = items.first(where: { $0.name == name })?.value else {
                throw WireError(.malformedAuthorization, "presigned request is missing \(name)")
            }
            return v
        }
        guard try value("X-Amz-Algorithm") == SigV4.algorithm else {
            throw WireError(.malformedAuthorization, "X-Amz-Algorithm must be \(SigV4.algorithm)")
        }
        let (key, date, region, service) = try parseScope(try value("X-Amz-Credential"))
        guard let expires = Int64(try value("X-Amz-Expires")) else {
            throw WireError(.malformedAuthorization, "X-Amz-Expires is not a number")
        }
        return Parsed(
            accessKeyID: key,
            date: date,
            region: region,
            service: service,
            signedHeaders: try value("X-Amz-SignedHeaders").split(separator: ";").map { $0.lowercased() },
            signature: try value("X-Amz-Signature"),
            timestamp: try value("X-Amz-Date"),
            expires: expires
        )
    }
}
