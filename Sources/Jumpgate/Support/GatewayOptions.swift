import ArgumentParser
import FoundationEssentials
import JumpgateClient
import JumpgateWire

/// Where to reach the gateway and as whom: the AWS tools' flags and variables, the same on every command
/// that talks to a gateway.
struct GatewayOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The gateway, https://HOST:PORT (else AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL, the profile's endpoint_url).",
            valueName: "url"
        )
    )
    var endpointURL: String?
    @Option(
        name: [.customLong("ca-file"), .customLong("ca-bundle")],
        help: ArgumentHelp(
            "The gateway's CA certificate, DATA_DIR/tls/ca.pem (else AWS_CA_BUNDLE, the profile's ca_bundle, SSL_CERT_FILE); --ca-bundle as in the AWS CLI.",
            valueName: "file"
        )
    )
    var caFile: String?
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A profile of the AWS credentials and config files (else AWS_PROFILE, then default).",
            valueName: "name"
        )
    )
    var profile: String?
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Region to sign for (else AWS_REGION, AWS_DEFAULT_REGION, the profile; any works with Jumpgate).",
            valueName: "region"
        )
    )
    var region: String?

    // A ClientError already says what happened and what to do: it reaches the user as it is
    // (ArgumentParser prints `Error: <description>`, exit 1).

    func configuration() throws -> ClientConfiguration {
        // Commands without --log-level still honour (and check) JUMPGATE_LOG_LEVEL.
        try CommandLogging.bootstrap(level: nil, default: .warning)
        return try ClientConfiguration.resolve(
            profile: self.profile,
            region: self.region,
            endpointURL: self.endpointURL,
            caFile: self.caFile
        )
    }

    /// The endpoint, region and CA without credentials (`agent register`).
    func location() throws -> GatewayLocation {
        try CommandLogging.bootstrap(level: nil, default: .warning)
        return try GatewayLocation.resolve(
            profile: self.profile,
            region: self.region,
            endpointURL: self.endpointURL,
            caFile: self.caFile
        )
    }

    func client() throws -> SSMClient {
        try SSMClient(configuration: try self.configuration())
    }

    /// Calls the API; a refusal keeps AWS's wording, a network failure says what to do.
    func call(_ operation: String, _ input: JSONValue) async throws -> JSONValue {
        try await self.client().call(operation, input)
    }

    /// Calls Jumpgate's administrative API (users, groups, keys, policies, audit).
    func admin(_ operation: String, _ input: JSONValue = [:]) async throws -> JSONValue {
        try await self.client().call(operation, input, api: "JumpgateAdmin")
    }
}

extension GatewayOptions {
    /// Calls `operation` for each id in turn. Text: a `<done> <id>` line per success; json: one
    /// `{"<done>": [ids]}` object, printed also when a later id fails (then the error follows, exit 1).
    func callEach(
        _ ids: [String],
        operation: String,
        inputKey: String,
        done: String,
        format: OutputFormat,
        api: String = "AmazonSSM",
        extra: [(key: String, value: JSONValue)] = []
    ) async throws {
        var finished: [String] = []
        defer {
            // On success every id; after a failure, the ones done before it (none: nothing to print).
            if format == .json, !finished.isEmpty {
                emit(JSONValue.object([(done, .array(finished.map { .string($0) }))]).serialized() + "\n")
            }
        }
        for id in ids {
            _ = try await self.client().call(operation, .object([(inputKey, .string(id))] + extra), api: api)
            finished.append(id)
            if format == .text { emit("\(done) \(id)\n") }
        }
    }
}
