import ArgumentParser
import Foundation
import JumpgateClient
import Logging

/// An error for the person at the terminal: what happened, then what to do. ArgumentParser prints it as
/// `Error: <description>` and exits 1, the one error style of every command (its own parse errors use it
/// too). Library errors never reach the user as they are: they are explained first (`FailureText`).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
    init(_ error: ClientError) { self.description = error.description }
}

/// `--log-level` and JUMPGATE_LOG_LEVEL: one of swift-log's levels, anything else refused.
enum LogLevel: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: self.rawValue) ?? .info }

    static var help: ArgumentHelp {
        ArgumentHelp(
            "Log level: trace, debug, info, notice, warning, error or critical (else JUMPGATE_LOG_LEVEL).",
            valueName: "level"
        )
    }
}

/// Logs go to standard error; standard output carries only what tools parse.
enum CommandLogging {
    /// `--log-level`, else JUMPGATE_LOG_LEVEL, else `fallback`. A JUMPGATE_LOG_LEVEL that names no level
    /// is refused, as a bad `--log-level` is.
    static func bootstrap(
        level: LogLevel?,
        default fallback: LogLevel = .info,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        var resolved = fallback
        if let level {
            resolved = level
        } else if let text = environment["JUMPGATE_LOG_LEVEL"], !text.isEmpty {
            guard let parsed = LogLevel(rawValue: text.lowercased()) else {
                throw CommandFailure(
                    "JUMPGATE_LOG_LEVEL='\(text)' is not a log level. Use one of "
                        + LogLevel.allCases.map(\.rawValue).joined(separator: ", ") + ", or unset it."
                )
            }
            resolved = parsed
        }
        let chosen = resolved.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen
            return handler
        }
    }
}
