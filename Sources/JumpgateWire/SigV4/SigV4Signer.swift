/// Signs requests with Signature Version 4.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Returns the headers to add to `request` (X-Amz-Date, X-Amz-Security-Token when present, and
    /// Authorization). `request.headers` must already hold Host and every other header to be signed.
    public func signatureHeaders(for request: SigV4Request, epochSeconds: Int64) -> [(name: String, value: String)] {
        let timestamp = SigV4.timestamp(epochSeconds: epochSeconds)
        var signed = request
        var added: [(name: String, value: String)] = [("X-Amz-Date", timestamp)]
        if let token = self.credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        signed.headers.removeAll { ["x-amz-date", "authorization"].contains($0.name.lowercased()) }
        signed.headers.append(contentsOf: added)
        let names = Set(signed.headers.map { $0.name.lowercased() }).subtracting(SigV4.unsignedHeaders).sorted()
        let scope = "\(timestamp.prefix(8))/\(self.region)/\(self.service)/aws4_request"
        let canonical = SigV4.canonicalRequest(
            signed,
            queryItems: SigV4.queryItems(signed.query),
            signedHeaders: names,
            payloadHash: signed.payloadHash
        )
        let signature = self.signature(timestamp: timestamp, scope: scope, canonicalRequest: canonical)
        added.append(
            (
                "Authorization",
                "\(SigV4.algorithm) Credential=\(self.credentials.accessKeyID)/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
            )
        )
        return added
    }

    /// A presigned query string (signed headers: host) valid for `expires` seconds, to append to the URL
    /// after any existing query.
    public func presignedQuery(
        method: String,
        host: String,
        path: String,
        query: String = "",
        epochSeconds: Int64,
        expires: Int
    ) -> String {
        let timestamp = SigV4.timestamp(epochSeconds: epochSeconds)
        let scope = "\(timestamp.prefix(8))/\(self.region)/\(self.service)/aws4_request"
        var items = SigV4.queryItems(query)
        items.append(("X-Amz-Algorithm", SigV4.algorithm))
        items.append(("X-Amz-Credential", "\(self.credentials.accessKeyID)/\(scope)"))
        items.append(("X-Amz-Date", timestamp))
        items.append(("X-Amz-Expires", String(expires)))
        items.append(("X-Amz-SignedHeaders", "host"))
        if let token = self.credentials.sessionToken { items.append(("X-Amz-Security-Token", token)) }
        let request = SigV4Request(method: method, path: path, headers: [("host", host)], body: [])
        let canonical = SigV4.canonicalRequest(
            request,
            queryItems: items,
            signedHeaders: ["host"],
            payloadHash: request.payloadHash
        )
        let signature = self.signature(timestamp: timestamp, scope: scope, canonicalRequest: canonical)
        items.append(("X-Amz-Signature", signature))
        return SigV4.canonicalQuery(items)
    }

    func signature(timestamp: String, scope: String, canonicalRequest: String) -> String {
        let key = SigV4.signingKey(
            secret: self.credentials.secretAccessKey,
            date: String(timestamp.prefix(8)),
            region: self.region,
            service: self.service
        )
        return SigV4.hex(
            SigV4.hmac(key, SigV4.stringToSign(timestamp: timestamp, scope: scope, canonicalRequest: canonicalRequest))
        )
    }
}
