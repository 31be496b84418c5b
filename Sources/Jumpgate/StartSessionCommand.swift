import ArgumentParser
import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import Logging
import NIOPosix

struct StartSessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start-session",
        abstract:
            "Start a session, as 'aws ssm start-session' does: a shell on the target (no --document-name), or a forwarded local port."
    )

    @Option(name: .long, help: ArgumentHelp("The managed instance (mi-...).", valueName: "target")) var target: String
    @Option(
        name: .long,
        help: ArgumentHelp(
            "AWS-StartPortForwardingSession, AWS-StartPortForwardingSessionToRemoteHost or AWS-StartSSHSession (standard input and output, for ssh's ProxyCommand); none (the default) opens a shell, as the AWS CLI does.",
            valueName: "document"
        )
    )
    var documentName: String?
    @Option(
        name: .long,
        help: ArgumentHelp(
            "k=v,k=v or JSON, e.g. host=db.vpc.internal,portNumber=3306,localPortNumber=1213.",
            valueName: "parameters"
        )
    )
    var parameters: String?
    @Option(name: .long, help: ArgumentHelp("Why the session is started (recorded).", valueName: "text"))
    var reason: String?
    @OptionGroup var gateway: GatewayOptions
    @Option(
        name: .long,
        help: OutputFormat.help(
            "JSON events (ready, resuming, resumed, ended) instead of the official plugin's lines."
        )
    )
    var format: OutputFormat = .text
    @Option(
        name: .long,
        help: ArgumentHelp(
            "How long to keep resuming after the connection to the gateway drops (90s, 5m, 1h).",
            valueName: "duration"
        )
    )
    var resumeTimeout: String = "5m"
    @Option(name: .long, help: LogLevel.help) var logLevel: LogLevel?

    func validate() throws {
        _ = try Jumpgate.resumeTimeout(self.resumeTimeout)
        if SessionDocuments.outputIsTheStream(self.documentName), self.format == .json {
            throw ValidationError(
                "--format json cannot be used with \(self.documentName ?? ""): standard output is the session's."
            )
        }
        do {
            _ = try SessionParameters.parse(self.parameters ?? "")
        } catch let error as ClientError {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        try CommandLogging.bootstrap(level: self.logLevel, default: .warning)
        let logger = Logger(label: "jumpgate.client")
        HeapTrimmer.start(on: MultiThreadedEventLoopGroup.singleton.next())
        let resumeTimeout = try Jumpgate.resumeTimeout(self.resumeTimeout)
        let parameters = try SessionParameters.parse(self.parameters ?? "")
        let client = try self.gateway.client()
        var request: [(key: String, value: JSONValue)] = [("Target", .string(self.target))]
        if let document = self.documentName { request.append(("DocumentName", .string(document))) }
        if !parameters.isEmpty {
            request.append(
                ("Parameters", .object(parameters.map { (key: $0.key, value: .array($0.value.map { .string($0) })) }))
            )
        }
        if let reason = self.reason { request.append(("Reason", .string(reason))) }
        let grant = try SessionGrant(json: try await self.gateway.call("StartSession", .object(request)))
        let value = { (key: String) in parameters.first { $0.key == key }?.value.first }
        let json = self.format == .json
        // Whether stdout is the session's own: what the gateway resolved the document to, else the name.
        let outputIsTheStream = grant.outputIsTheStream ?? SessionDocuments.outputIsTheStream(self.documentName)
        if json, outputIsTheStream {
            _ = try? await self.gateway.call("TerminateSession", ["SessionId": .string(grant.sessionID)])
            throw CommandFailure(
                "--format json cannot be used with \(self.documentName ?? "this document"): standard output is the session's. The session was terminated."
            )
        }
        // On stderr: stdout carries the official plugin's lines, which tools parse.
        if !json, let notice = grant.limitsNotice, !outputIsTheStream {
            StandardStream.error.write(notice + "\n")
        }
        // The destination and local port as the gateway resolved them (a document may fix them).
        let resolved = { (key: String) in grant.properties[key] ?? value(key) }
        let localPort = Int(resolved("localPortNumber") ?? "0") ?? 0
        let (target, host) = (self.target, resolved("host") ?? "localhost")
        let destinationPort = Int64(resolved("portNumber") ?? "") ?? 0
        let outcome = await SessionRunner.run(
            grant: grant,
            localPort: localPort,
            client: client,
            console: json
                ? ForwardConsole(sessionID: grant.sessionID, json: true)
                : (outputIsTheStream ? StandardErrorConsole() as any ForwarderConsole : StandardOutputConsole()),
            resumeTimeout: resumeTimeout,
            logger: logger,
            onReady: { port in
                guard json else { return }
                var fields: [(key: String, value: JSONValue)] = [
                    ("sessionId", .string(grant.sessionID)), ("localPort", .integer(Int64(port))),
                    ("target", .string(target)), ("host", .string(host)), ("port", .integer(destinationPort)),
                ]
                if let idle = grant.idleTimeoutSeconds { fields.append(("idleTimeoutSeconds", .integer(idle))) }
                if let maximum = grant.maximumDurationSeconds {
                    fields.append(("maxSessionDurationSeconds", .integer(maximum)))
                }
                JSONEvents.emit("ready", fields)
            }
        )
        if json { SessionEvents.report(outcome, sessionID: grant.sessionID, json: true) }
        if outcome.exitStatus != 0 { throw ExitCode(outcome.exitStatus) }
    }
}

/// `--parameters` in the AWS CLI's two forms: `k=v,k=v` (shorthand) or JSON `{"k":["v"]}`.
enum SessionParameters {
    static func parse(_ text: String) throws -> [(key: String, value: [String])] {
        let trimmed = text.trimmingWhitespace()
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
