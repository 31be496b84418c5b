import ArgumentParser
import Foundation
import JumpgateClient
import JumpgateWire
import Logging

struct StartSessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start-session",
        abstract: "Start a session, as 'aws ssm start-session' does, and forward a local port through it."
    )

    @Option(name: .long, help: "The managed instance (mi-...).") var target: String
    @Option(name: .long, help: "AWS-StartPortForwardingSession or AWS-StartPortForwardingSessionToRemoteHost.")
    var documentName: String = "AWS-StartPortForwardingSession"
    @Option(name: .long, help: "k=v,k=v or JSON, e.g. host=db.vpc.internal,portNumber=3306,localPortNumber=1213.")
    var parameters: String?
    @Option(name: .long, help: "Why the session is started (recorded).") var reason: String?
    @Option(name: .long, help: "The gateway URL (else AWS_ENDPOINT_URL_SSM).") var endpointURL: String?
    @Option(name: .long, help: "Region for signing (any works with Jumpgate).") var region: String?
    @Option(name: .long, help: "A profile from the AWS credentials file.") var profile: String?
    @Option(name: .long, help: "The gateway's CA certificate (else AWS_CA_BUNDLE or SSL_CERT_FILE).") var caFile:
        String?
    @Option(
        name: .long,
        help: "How long to keep resuming after the connection to the gateway drops (90s, 5m, 1h)."
    )
    var resumeTimeout: String = "5m"
    @Option(name: .long, help: "Log level (trace, debug, info, notice, warning, error).") var logLevel: String?

    func run() async throws {
        CommandLogging.bootstrap(level: self.logLevel ?? "warning")
        let logger = Logger(label: "jumpgate.client")
        let resumeTimeout = try Jumpgate.resumeTimeout(self.resumeTimeout)
        do {
            let parameters = try SessionParameters.parse(self.parameters ?? "")
            let configuration = try ClientConfiguration.resolve(
                profile: self.profile,
                region: self.region,
                endpointURL: self.endpointURL,
                caFile: self.caFile
            )
            let client = try SSMClient(configuration: configuration)
            var request: [(key: String, value: JSONValue)] = [
                ("Target", .string(self.target)), ("DocumentName", .string(self.documentName)),
                ("Parameters", .object(parameters.map { (key: $0.key, value: .array($0.value.map { .string($0) })) })),
            ]
            if let reason = self.reason { request.append(("Reason", .string(reason))) }
            let grant = try SessionGrant(json: try await client.call("StartSession", .object(request)))
            let localPort = Int(parameters.first { $0.key == "localPortNumber" }?.value.first ?? "0") ?? 0
            // On stderr: stdout carries the official plugin's lines, which tools parse.
            if let notice = grant.limitsNotice { FileHandle.standardError.write(Data((notice + "\n").utf8)) }
            let status = await SessionRunner.run(
                grant: grant,
                localPort: localPort,
                client: client,
                resumeTimeout: resumeTimeout,
                logger: logger
            )
            if status != 0 { throw ExitCode(status) }
        } catch let error as ClientError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `--parameters` in the AWS CLI's two forms: `k=v,k=v` (shorthand) or JSON `{"k":["v"]}`.
enum SessionParameters {
    static func parse(_ text: String) throws -> [(key: String, value: [String])] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return [] }
        if trimmed.hasPrefix("{") {
            guard let json = try? JSONValue(parsing: trimmed), let members = json.objectValue else {
                throw ClientError("--parameters is not valid JSON: \(text)")
            }
            return try members.map { key, value in
                if let s = value.stringValue { return (key, [s]) }
                guard let list = value.arrayValue?.compactMap(\.stringValue) else {
                    throw ClientError("--parameters: \(key) must be a string or a list of strings")
                }
                return (key, list)
            }
        }
        return try trimmed.split(separator: ",").map { pair in
            guard let eq = pair.firstIndex(of: "=") else {
                throw ClientError("--parameters: '\(pair)' is not key=value")
            }
            var value = String(pair[pair.index(after: eq)...])
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            return (String(pair[..<eq]), [value])
        }
    }
}
