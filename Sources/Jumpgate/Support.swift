import ArgumentParser
import Dispatch
import Foundation
import JumpgateClient
import Logging

/// Logs go to standard error; standard output carries only what tools parse.
enum CommandLogging {
    static func bootstrap(level: String?) {
        let resolved =
            Logger.Level(
                rawValue: (level ?? ProcessInfo.processInfo.environment["JUMPGATE_LOG_LEVEL"] ?? "info").lowercased()
            ) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = resolved
            return handler
        }
    }
}

/// Writes a line to standard output at once (tools wait for lines on a pipe).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

/// Waits for SIGINT or SIGTERM and returns which arrived.
func waitForTerminationSignal() async -> Int32 {
    await TerminationSignal.wait([SIGINT, SIGTERM])
}

/// `HOST:PORT`, `[IPv6]:PORT`.
func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
        (0...65535).contains(port)
    else {
        throw ValidationError("'\(text)' must be HOST:PORT, for example 127.0.0.1:8443")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("'\(text)' has no host") }
    return (host, port)
}
