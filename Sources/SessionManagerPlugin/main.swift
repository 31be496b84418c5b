import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Writes at once: tools read the plugin's lines from a pipe as they appear. Once SIGPIPE is ignored (NIO
/// ignores it when it opens the first socket), a write to an output that went away drops the text, where
/// Foundation's `FileHandle.write` trapped; before that, SIGPIPE ends the plugin as it did.
func emit(_ text: String) {
    StandardStream.output.write(text)
}

/// Fails the way the official plugin words it, but with a non-zero exit (it exits 0).
func fail(_ message: String) -> Never {
    emit("Cannot perform start session: \(message)\n")
    exit(1)
}

/// Fails after the session was granted: terminates it first, so it does not stay Connected with nobody
/// on the client side.
func fail(_ message: String, terminating sessionID: String, with client: SSMClient) async -> Never {
    _ = try? await client.call("TerminateSession", ["SessionId": .string(sessionID)])
    fail(message)
}

// JUMPGATE_LOG_LEVEL, as for `jumpgate` (the AWS CLI passes plugins no options); a bad value is refused.
let logLevelText = ProcessInfo.processInfo.environment["JUMPGATE_LOG_LEVEL"].flatMap { $0.isEmpty ? nil : $0 }
guard let logLevel = Logger.Level(rawValue: (logLevelText ?? "warning").lowercased()) else {
    fail(
        "JUMPGATE_LOG_LEVEL='\(logLevelText ?? "")' is not a log level: use trace, debug, info, notice, warning, error or critical"
    )
}
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = logLevel
    return handler
}

switch PluginInvocation(arguments: Array(CommandLine.arguments.dropFirst())) {
case .banner:
    emit(PluginInvocation.bannerText)
case .version:
    emit(PluginInvocation.versionText)
case .unknownOperation(let operation):
    emit(PluginInvocation.unknownOperationText(operation))
case .startSession(let response, let region, let operation, let profile, let parameters, let endpoint):
    guard operation == "StartSession" else { fail("Invalid Operation \(operation): the AWS CLI passes StartSession") }
    var responseText = response
    if response.hasPrefix("AWS_SSM_START_SESSION_RESPONSE") {
        // The AWS CLI passes the response in this variable; read it, then remove it from the environment.
        guard let value = ProcessInfo.processInfo.environment[response] else {
            fail("the environment variable \(response) is not set")
        }
        responseText = value
        unsetenv(response)
    }
    guard let responseJSON = try? JSONValue(parsing: responseText), let grant = try? SessionGrant(json: responseJSON)
    else {
        fail("the StartSession response is not JSON with SessionId, TokenValue and StreamUrl")
    }
    let client: SSMClient
    do {
        let configuration = try ClientConfiguration.resolve(
            profile: profile.isEmpty ? nil : profile,
            region: region,
            endpointURL: endpoint,
            caFile: nil
        )
        client = try SSMClient(configuration: configuration)
    } catch {
        fail(
            "\((error as? ClientError)?.description ?? "\(error)") The session \(grant.sessionID) could not be terminated from here: end it with aws ssm terminate-session."
        )
    }
    guard let request = try? JSONValue(parsing: parameters), let target = request["Target"]?.stringValue,
        !target.isEmpty
    else {
        await fail("the StartSession request parameters lack Target", terminating: grant.sessionID, with: client)
    }
    let localPort = request["Parameters"]?["localPortNumber"]?.arrayValue?.first?.stringValue.flatMap(Int.init) ?? 0
    // The AWS CLI passes no options to plugins: the resume time comes from the environment.
    var resumeTimeout = TimeAmount.minutes(5)
    if let text = ProcessInfo.processInfo.environment["JUMPGATE_RESUME_TIMEOUT"] {
        guard let seconds = DurationText.seconds(text), seconds > 0 else {
            await fail(
                "JUMPGATE_RESUME_TIMEOUT '\(text)' must be a positive duration such as 90s, 5m or 1h",
                terminating: grant.sessionID,
                with: client
            )
        }
        resumeTimeout = .seconds(seconds)
    }
    // The AWS CLI killed (SIGTERM, SIGKILL) does not stop its plugin: the plugin would keep the port and
    // the session. When the parent goes, end the session as Ctrl+C would (SIGTERM to ourselves).
    let parent = getppid()
    Task.detached {
        while getppid() == parent { try? await Task.sleep(nanoseconds: 500_000_000) }
        kill(getpid(), SIGTERM)
    }
    let outcome = await SessionRunner.run(
        grant: grant,
        localPort: localPort,
        client: client,
        console: StandardErrorConsole.forDocument(request["DocumentName"]?.stringValue),
        resumeTimeout: resumeTimeout,
        logger: Logger(label: "session-manager-plugin")
    )
    // A shell's own status is not passed on here: the AWS CLI runs plugins with check_call, so a non-zero
    // status would become its own failure (a Python traceback and exit 255). `jumpgate start-session` passes it.
    if case .exited = outcome { exit(0) }
    exit(outcome.exitStatus)
}
