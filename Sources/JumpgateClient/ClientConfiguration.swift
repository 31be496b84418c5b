import Foundation
import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOSSL

/// An error for the person at the terminal: what happened and what to do.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The AWS error type when the gateway refused a call (`DoesNotExistException`, ...), else nil.
    public var awsErrorType: String?
    public init(_ description: String, awsErrorType: String? = nil) {
        self.description = description
        self.awsErrorType = awsErrorType
    }
}

/// Credentials, region, endpoint and CA, found the way the AWS tools find them.
public struct ClientConfiguration: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var endpointURL: String
    public var caFile: String?

    /// `--profile`/AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), the shared
    /// credentials and config files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), AWS_ENDPOINT_URL_SSM /
    /// AWS_ENDPOINT_URL / `--endpoint-url`, and the CA from `--ca-file`, AWS_CA_BUNDLE or SSL_CERT_FILE.
    public static func resolve(
        profile: String?,
        region: String?,
        endpointURL: String?,
        caFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ClientConfiguration {
        let home = environment["HOME"] ?? NSHomeDirectory()
        let profileName = profile ?? environment["AWS_PROFILE"] ?? "default"
        let credentialsFile = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configFile = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let fileCredentials = INIFile.load(credentialsFile)[profileName] ?? [:]
        let configSection =
            INIFile.load(configFile)[profileName == "default" ? "default" : "profile \(profileName)"] ?? [:]

        let credentials: AWSCredentials
        if profile == nil, let key = environment["AWS_ACCESS_KEY_ID"],
            let secret = environment["AWS_SECRET_ACCESS_KEY"], !key.isEmpty
        {
            credentials = AWSCredentials(
                accessKeyID: key,
                secretAccessKey: secret,
                sessionToken: environment["AWS_SESSION_TOKEN"]
            )
        } else if let key = fileCredentials["aws_access_key_id"] ?? configSection["aws_access_key_id"],
            let secret = fileCredentials["aws_secret_access_key"] ?? configSection["aws_secret_access_key"]
        {
            credentials = AWSCredentials(
                accessKeyID: key,
                secretAccessKey: secret,
                sessionToken: fileCredentials["aws_session_token"]
            )
        } else {
            throw ClientError(
                "Unable to locate credentials for profile '\(profileName)'. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add the profile to \(credentialsFile) (a gateway writes its administrator's to DATA_DIR/admin.credentials)."
            )
        }
        let resolvedRegion =
            region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? configSection["region"]
            ?? "us-east-1"
        guard
            let endpoint = endpointURL ?? environment["AWS_ENDPOINT_URL_SSM"] ?? environment["AWS_ENDPOINT_URL"]
                ?? configSection["endpoint_url"]
        else {
            throw ClientError(
                "No gateway endpoint: pass --endpoint-url https://GATEWAY:PORT or set AWS_ENDPOINT_URL_SSM."
            )
        }
        let ca = caFile ?? environment["AWS_CA_BUNDLE"] ?? configSection["ca_bundle"] ?? environment["SSL_CERT_FILE"]
        return ClientConfiguration(credentials: credentials, region: resolvedRegion, endpointURL: endpoint, caFile: ca)
    }
}

/// Minimal INI reading for the AWS shared files: `[section]` and `key = value`.
enum INIFile {
    static func load(_ path: String) -> [String: [String: String]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var sections: [String: [String: String]] = [:]
        var current = ""
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { sections[current, default: [:]][parts[0]] = parts[1] }
        }
        return sections
    }
}

/// Signed calls to the gateway's SSM JSON API.
public struct SSMClient: Sendable {
    public let configuration: ClientConfiguration
    let endpoint: HTTPSEndpoint

    public init(configuration: ClientConfiguration) throws {
        self.configuration = configuration
        guard let (host, port, _) = HTTPSEndpoint.parse(url: configuration.endpointURL) else {
            throw ClientError("The endpoint URL '\(configuration.endpointURL)' is not https://HOST[:PORT].")
        }
        let context: NIOSSLContext
        do {
            context = try JumpgateTLS.clientContext(caFile: configuration.caFile)
        } catch {
            throw ClientError("Cannot load the CA file \(configuration.caFile ?? "(system roots)"): \(error)")
        }
        self.endpoint = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: context,
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
    }

    public func call(_ operation: String, _ input: JSONValue) async throws -> JSONValue {
        let body = input.serializedBytes()
        var headers: [(name: String, value: String)] = [
            ("Host", self.endpoint.hostHeader), ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "AmazonSSM.\(operation)"),
        ]
        let signer = SigV4Signer(
            credentials: self.configuration.credentials,
            region: self.configuration.region,
            service: "ssm"
        )
        headers += signer.signatureHeaders(
            for: SigV4Request(method: "POST", path: "/", headers: headers, body: body),
            epochSeconds: WallClock.nowSeconds()
        )
        let response: HTTPSResponse
        do {
            response = try await self.endpoint.request(
                method: "POST",
                path: "/",
                headers: headers,
                body: ByteBuffer(bytes: body)
            )
        } catch {
            throw ClientError("Could not reach the gateway at \(self.configuration.endpointURL): \(error)")
        }
        let json = try? JSONValue(parsing: response.body.readableBytesView)
        guard response.status == 200, let json else {
            var type = json?["__type"]?.stringValue ?? "HTTP \(response.status)"
            if let hash = type.lastIndex(of: "#") { type = String(type[type.index(after: hash)...]) }
            let message =
                json?["message"]?.stringValue ?? json?["Message"]?.stringValue ?? String(buffer: response.body)
            throw ClientError(
                "An error occurred (\(type)) when calling the \(operation) operation: \(message)",
                awsErrorType: type
            )
        }
        return json
    }

    /// ResumeSession: a new token and StreamUrl for a session whose data channel dropped.
    @Sendable public func resumeSession(_ sessionID: String) async throws -> SessionGrant {
        try SessionGrant(json: try await self.call("ResumeSession", ["SessionId": .string(sessionID)]))
    }
}
