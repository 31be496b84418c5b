import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOSSL

/// An error for the person at the terminal: what happened and what to do.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The AWS error type when the gateway refused a call (`DoesNotExistException`, ...), else nil.
    public var awsErrorType: String?
    /// The gateway's message with that error, else nil.
    public var awsErrorMessage: String?
    public init(_ description: String, awsErrorType: String? = nil, awsErrorMessage: String? = nil) {
        self.description = description
        self.awsErrorType = awsErrorType
        self.awsErrorMessage = awsErrorMessage
    }
}

/// Where the gateway is and how to trust it, found the way the AWS tools find an endpoint: what a
/// command needs before it has (or when it needs no) credentials, as `agent register`.
public struct GatewayLocation: Sendable {
    public var endpointURL: String
    public var region: String
    public var caFile: String?
    /// The profile's name and the files it came from, for credentials and for error messages.
    var profileName: String
    var profileNamed: Bool
    var credentialsFile: String
    var configFile: String
    var configSection: [String: String]

    /// `--endpoint-url`, AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL or the profile's `endpoint_url`; the region
    /// from `--region`, AWS_REGION, AWS_DEFAULT_REGION or the profile (us-east-1 if none); the CA from
    /// `--ca-file`, AWS_CA_BUNDLE, the profile's `ca_bundle` or SSL_CERT_FILE. The profile is `--profile`,
    /// AWS_PROFILE or `default`, in AWS_CONFIG_FILE (~/.aws/config).
    public static func resolve(
        profile: String?,
        region: String?,
        endpointURL: String?,
        caFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> GatewayLocation {
        // A variable set to nothing counts as unset, as for the AWS tools.
        let environment = environment.filter { !$0.value.isEmpty }
        let home = FilePathText.homeDirectory(environment: environment)
        let profileName = profile ?? environment["AWS_PROFILE"] ?? "default"
        let configFile = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let configSection =
            INIFile.load(configFile)[profileName == "default" ? "default" : "profile \(profileName)"] ?? [:]
        let credentialsFile = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let profileNamed = profile != nil || environment["AWS_PROFILE"] != nil
        // A named profile that neither file holds: say so first (a typo in --profile or AWS_PROFILE). As for
        // the AWS CLI, `default` may be missing (credentials can come from the environment).
        if profileNamed, profileName != "default", configSection.isEmpty,
            INIFile.load(credentialsFile)[profileName] == nil
        {
            throw ClientError(
                ClientConfiguration.missingCredentials(
                    profile: profileName,
                    named: true,
                    credentialsFile: credentialsFile,
                    configFile: configFile
                )
            )
        }
        guard
            let endpoint = endpointURL ?? environment["AWS_ENDPOINT_URL_SSM"] ?? environment["AWS_ENDPOINT_URL"]
                ?? configSection["endpoint_url"]
        else {
            throw ClientError(
                "No gateway given. Pass --endpoint-url https://GATEWAY:PORT, or set AWS_ENDPOINT_URL_SSM (the gateway prints its URL when it starts)."
            )
        }
        return GatewayLocation(
            endpointURL: endpoint,
            region: region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? configSection["region"]
                ?? "us-east-1",
            caFile: caFile ?? environment["AWS_CA_BUNDLE"] ?? configSection["ca_bundle"]
                ?? environment["SSL_CERT_FILE"],
            profileName: profileName,
            profileNamed: profileNamed,
            credentialsFile: credentialsFile,
            configFile: configFile,
            configSection: configSection
        )
    }
}

/// Credentials, region, endpoint and CA, found the way the AWS tools find them.
public struct ClientConfiguration: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var endpointURL: String
    public var caFile: String?

    /// The `GatewayLocation`, and credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// (+ AWS_SESSION_TOKEN) unless `--profile` names one, else the profile in the shared credentials file
    /// (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) or the config file.
    public static func resolve(
        profile: String?,
        region: String?,
        endpointURL: String?,
        caFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ClientConfiguration {
        let location = try GatewayLocation.resolve(
            profile: profile,
            region: region,
            endpointURL: endpointURL,
            caFile: caFile,
            environment: environment
        )
        let environment = environment.filter { !$0.value.isEmpty }
        let fileCredentials = INIFile.load(location.credentialsFile)[location.profileName] ?? [:]
        let configSection = location.configSection
        // As botocore: one source gives the whole set (key, secret, token), in this order: the environment
        // (unless --profile names a profile), the credentials file, the config file.
        let fromEnvironment = profile == nil ? environment : [:]
        let sources: [(key: String?, secret: String?, token: String?, name: String)] = [
            (
                fromEnvironment["AWS_ACCESS_KEY_ID"], fromEnvironment["AWS_SECRET_ACCESS_KEY"],
                fromEnvironment["AWS_SESSION_TOKEN"], "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            (
                fileCredentials["aws_access_key_id"], fileCredentials["aws_secret_access_key"],
                fileCredentials["aws_session_token"], "profile \(location.profileName) in \(location.credentialsFile)"
            ),
            (
                configSection["aws_access_key_id"], configSection["aws_secret_access_key"],
                configSection["aws_session_token"], "profile \(location.profileName) in \(location.configFile)"
            ),
        ]
        var found: AWSCredentials?
        for source in sources where source.key != nil || source.secret != nil {
            guard let key = source.key, let secret = source.secret else {
                throw ClientError(
                    "Partial credentials in \(source.name): both the access key id and the secret access key are needed."
                )
            }
            found = AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: source.token)
            break
        }
        let credentials: AWSCredentials
        if let found {
            credentials = found
        } else {
            throw ClientError(
                Self.missingCredentials(
                    profile: location.profileName,
                    named: location.profileNamed,
                    credentialsFile: location.credentialsFile,
                    configFile: location.configFile
                )
            )
        }
        return ClientConfiguration(
            credentials: credentials,
            region: location.region,
            endpointURL: location.endpointURL,
            caFile: location.caFile
        )
    }
}

extension ClientConfiguration {
    /// No credentials for the profile: which files were read, which profiles they hold, what to do.
    static func missingCredentials(profile: String, named: Bool, credentialsFile: String, configFile: String) -> String
    {
        let credentials = INIFile.load(credentialsFile)
        let config = INIFile.load(configFile)
        // Config sections are `default` and `profile NAME`; `sso-session`, `services` and others are not profiles.
        let known = Set(credentials.keys).union(
            config.keys.compactMap { $0 == "default" ? $0 : $0.hasPrefix("profile ") ? String($0.dropFirst(8)) : nil }
        ).filter { !$0.isEmpty }.sorted()
        let what: String
        if !named {
            what = "No credentials: AWS_ACCESS_KEY_ID is not set and \(credentialsFile) has no [default] profile."
        } else if known.contains(profile) {
            what = "The profile '\(profile)' has no aws_access_key_id and aws_secret_access_key in \(credentialsFile)."
        } else {
            let found = known.isEmpty ? "no profiles" : "the profiles " + known.joined(separator: ", ")
            what = "There is no profile '\(profile)': \(credentialsFile) and \(configFile) hold \(found)."
        }
        return what
            + " Name a profile with --profile or AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            + " A gateway writes its administrator's to DATA_DIR/admin.credentials (profile jumpgate-admin):"
            + " export AWS_SHARED_CREDENTIALS_FILE=DATA_DIR/admin.credentials AWS_PROFILE=jumpgate-admin"
    }
}

/// Minimal INI reading for the AWS shared files: `[section]` and `key = value`.
enum INIFile {
    static func load(_ path: String) -> [String: [String: String]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var sections: [String: [String: String]] = [:]
        var current = ""
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingWhitespace()
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
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
        if let caFile = configuration.caFile, let problem = FailureText.caFileProblem(caFile) {
            throw ClientError(problem)
        }
        let context: NIOSSLContext
        do {
            context = try JumpgateTLS.clientContext(caFile: configuration.caFile)
        } catch {
            throw ClientError(
                "The CA file \(configuration.caFile ?? "(system roots)") holds no certificate that can be used. Pass the gateway's DATA_DIR/tls/ca.pem."
            )
        }
        self.endpoint = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: context,
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
    }

    /// Calls an operation of the SSM API (`AmazonSSM`) or of Jumpgate's administrative API
    /// (`JumpgateAdmin`), signed as service `ssm`; `timeout` bounds the connection and the answer alike.
    public func call(
        _ operation: String,
        _ input: JSONValue,
        api: String = "AmazonSSM",
        timeout: TimeAmount = .seconds(30)
    ) async throws -> JSONValue {
        let body = input.serializedBytes()
        var headers: [(name: String, value: String)] = [
            ("Host", self.endpoint.hostHeader), ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "\(api).\(operation)"), ("User-Agent", "jumpgate/\(JumpgateVersion.product)"),
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
                body: ByteBuffer(bytes: body),
                timeout: timeout
            )
        } catch {
            throw ClientError(
                FailureText.reachingGateway(
                    self.configuration.endpointURL,
                    caFile: self.configuration.caFile,
                    NetworkFailure(error)
                )
            )
        }
        let json = try? JSONValue(parsing: response.body.readableBytesView)
        guard response.status == 200, let json else {
            var type = json?["__type"]?.stringValue ?? "HTTP \(response.status)"
            if let hash = type.lastIndex(of: "#") { type = String(type[type.index(after: hash)...]) }
            let message =
                json?["message"]?.stringValue ?? json?["Message"]?.stringValue ?? String(buffer: response.body)
            throw ClientError(
                "An error occurred (\(type)) when calling the \(operation) operation: \(message)",
                awsErrorType: type,
                awsErrorMessage: message
            )
        }
        return json
    }

    /// Signs data-channel upgrades (service `ssmmessages`), as the official plugin does since 1.2.764.0.
    public var upgradeSigner: SigV4Signer {
        SigV4Signer(
            credentials: self.configuration.credentials,
            region: self.configuration.region,
            service: "ssmmessages"
        )
    }

    /// ResumeSession: a new token and StreamUrl for a session whose data channel dropped.
    /// `askingBlindPath`: the session was on a relay-blind pair when it broke; ask for the path again
    /// (docs/BLIND-RELAY.md, "When it is not taken, and when it breaks").
    @Sendable public func resumeSession(_ sessionID: String, askingBlindPath: Bool) async throws -> SessionGrant {
        var input: [(key: String, value: JSONValue)] = [("SessionId", .string(sessionID))]
        if askingBlindPath { input.append(("JumpgateBlindPath", true)) }
        return try SessionGrant(json: try await self.call("ResumeSession", .object(input)))
    }
}
