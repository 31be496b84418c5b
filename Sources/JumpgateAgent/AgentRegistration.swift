import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOCore

/// `jumpgate agent register`: trades an activation for an instance id and secret, and stores them.
public enum AgentRegistration {
    /// The AgentVersion this agent reports: 4 parts, above 3.1.1511.0 (see docs/PROTOCOL.md).
    public static let version = JumpgateVersion.agentProtocolVersion

    public static func register(
        endpoint: String,
        caFile: String,
        activationID: String,
        activationCode: String,
        stateDirectory: String,
        allow: [String],
        deny: [String],
        name: String?,
        force: Bool,
        tags: [(key: String, value: String)] = []
    ) async throws -> String {
        _ = try AllowList(allow: allow, deny: deny)  // reject bad patterns before anything else
        if AgentStateDirectory.exists(at: stateDirectory), !force {
            throw AgentError("\(stateDirectory) already holds a registration. Use --force to replace it.")
        }
        if let problem = FailureText.caFileProblem(caFile) { throw AgentError(problem) }
        try AgentStateDirectory.prepare(stateDirectory)
        guard let caPEM = try? String(contentsOfFile: caFile, encoding: .utf8) else {
            throw AgentError("The CA file \(caFile) cannot be read.")
        }
        guard let (host, port, _) = HTTPSEndpoint.parse(url: endpoint) else {
            throw AgentError("The gateway URL '\(endpoint)' is not https://HOST[:PORT]; check --endpoint-url.")
        }
        let gateway = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: try JumpgateTLS.clientContext(caFile: caFile),
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
        let hostname = ProcessInfo.processInfo.hostName
        // No Name unless --name: the gateway names the instance after the activation's
        // DefaultInstanceName, else this hostname (as AWS does).
        var request: [(key: String, value: JSONValue)] = [
            ("ActivationId", .string(activationID)), ("ActivationCode", .string(activationCode)),
            ("PlatformType", "Linux"), ("PlatformName", .string(AgentPlatform.name)),
            ("PlatformVersion", .string(AgentPlatform.version)), ("AgentVersion", .string(Self.version)),
            ("Hostname", .string(hostname)), ("IPAddress", .string(AgentPlatform.primaryAddress())),
        ]
        if let name { request.append(("Name", .string(name))) }
        // Jumpgate's own member (AWS's RegisterManagedInstance has none): the instance's tags, over the
        // activation's.
        if !tags.isEmpty {
            request.append(("Tags", .array(tags.map { ["Key": .string($0.key), "Value": .string($0.value)] })))
        }
        let response: HTTPSResponse
        do {
            response = try await gateway.request(
                method: "POST",
                path: "/",
                headers: [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", "AmazonSSM.RegisterManagedInstance"),
                ],
                body: ByteBuffer(bytes: JSONValue.object(request).serializedBytes())
            )
        } catch {
            throw AgentError(FailureText.reachingGateway(endpoint, caFile: caFile, NetworkFailure(error)))
        }
        let json = try? JSONValue(parsing: response.body.readableBytesView)
        guard response.status == 200, let instanceID = json?["InstanceId"]?.stringValue,
            let secret = json?["SecretAccessKey"]?.stringValue
        else {
            var type = json?["__type"]?.stringValue ?? "HTTP \(response.status)"
            if let hash = type.lastIndex(of: "#") { type = String(type[type.index(after: hash)...]) }
            let message = json?["message"]?.stringValue ?? String(buffer: response.body)
            let advice =
                type == "InvalidActivation"
                ? " Create a new activation ('jumpgate admin create-activation' or 'aws ssm create-activation'), or ask the gateway's administrator for one."
                : ""
            throw AgentError("The gateway refused the registration (\(type)): \(message)\(advice)")
        }
        let state = AgentStateDirectory(
            path: stateDirectory,
            endpoint: endpoint,
            instanceID: instanceID,
            secret: secret,
            name: name ?? "",
            allow: allow,
            deny: deny
        )
        do {
            try state.save(caPEM: caPEM)
        } catch let error as AgentError {
            throw AgentError(
                "Registered as \(instanceID), but \(error.description). Fix the directory (or choose another --state-dir) and register again with a new activation; then deregister \(instanceID) ('jumpgate instances deregister')."
            )
        }
        return instanceID
    }
}

/// What the agent reports about its host.
enum AgentPlatform {
    static var name: String { osRelease("NAME") ?? "Linux" }
    static var version: String { osRelease("VERSION_ID") ?? "" }

    static func osRelease(_ key: String) -> String? {
        guard let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + "=") {
            let value = line.dropFirst(key.count + 1)
            return String(value.drop { $0 == "\"" }.reversed().drop { $0 == "\"" }.reversed())
        }
        return nil
    }

    /// The first non-loopback IPv4 address of the host, for DescribeInstanceInformation.
    static func primaryAddress() -> String {
        (try? System.enumerateDevices())?.compactMap { device -> String? in
            guard let address = device.address, case .v4 = address, let ip = address.ipAddress, !ip.hasPrefix("127.")
            else { return nil }
            return ip
        }.first ?? ""
    }
}
