import Foundation
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
        force: Bool
    ) async throws -> String {
        _ = try AllowList(allow: allow, deny: deny)  // reject bad patterns before anything else
        if AgentStateDirectory.exists(at: stateDirectory), !force {
            throw AgentError("\(stateDirectory) already holds a registration. Use --force to replace it.")
        }
        guard let caPEM = try? String(contentsOfFile: caFile, encoding: .utf8) else {
            throw AgentError("cannot read the CA file \(caFile).")
        }
        guard let (host, port, _) = HTTPSEndpoint.parse(url: endpoint) else {
            throw AgentError("--endpoint must be https://HOST[:PORT], not '\(endpoint)'.")
        }
        let gateway = HTTPSEndpoint(
            host: host,
            port: port,
            sslContext: try JumpgateTLS.clientContext(caFile: caFile),
            serverHostname: JumpgateTLS.serverHostname(for: host)
        )
        let hostname = ProcessInfo.processInfo.hostName
        let request: JSONValue = [
            "ActivationId": .string(activationID), "ActivationCode": .string(activationCode),
            "Name": .string(name ?? hostname), "PlatformType": "Linux", "PlatformName": .string(AgentPlatform.name),
            "PlatformVersion": .string(AgentPlatform.version), "AgentVersion": .string(Self.version),
            "Hostname": .string(hostname), "IPAddress": .string(AgentPlatform.primaryAddress()),
        ]
        let response = try await gateway.request(
            method: "POST",
            path: "/",
            headers: [
                ("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "AmazonSSM.RegisterManagedInstance"),
            ],
            body: ByteBuffer(bytes: request.serializedBytes())
        )
        let json = try? JSONValue(parsing: response.body.readableBytesView)
        guard response.status == 200, let instanceID = json?["InstanceId"]?.stringValue,
            let secret = json?["SecretAccessKey"]?.stringValue
        else {
            let type = json?["__type"]?.stringValue ?? "HTTP \(response.status)"
            let message = json?["message"]?.stringValue ?? String(buffer: response.body)
            throw AgentError("registration failed: \(type): \(message)")
        }
        let state = AgentStateDirectory(
            path: stateDirectory,
            endpoint: endpoint,
            instanceID: instanceID,
            secret: secret,
            name: name ?? hostname,
            allow: allow,
            deny: deny
        )
        try state.save(caPEM: caPEM)
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
            return String(line.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
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
