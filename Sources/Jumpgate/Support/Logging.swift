import ArgumentParser
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers

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
    private static let bootstrapped = NIOLockedValueBox(false)

    /// `--log-level`, else JUMPGATE_LOG_LEVEL, else `fallback`. A JUMPGATE_LOG_LEVEL that names no level
    /// is refused, as a bad `--log-level` is.
    static func bootstrap(
        level: LogLevel?,
        default fallback: LogLevel = .info,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        // Once per process (swift-log allows one bootstrap): the first caller's level wins.
        guard
            Self.bootstrapped.withLockedValue({ done in
                defer { done = true }
                return !done
            })
        else { return }
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
