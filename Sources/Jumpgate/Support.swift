import ArgumentParser
import Dispatch
import Foundation
import JumpgateClient
import JumpgateNIO
import Logging
import NIOConcurrencyHelpers
import NIOCore

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

/// Writes a line to standard output at once (tools wait for lines on a pipe), clearing the terminal
/// status line first if one is shown.
func emit(_ text: String) {
    StatusLine.withLineCleared { FileHandle.standardOutput.write(Data(text.utf8)) }
}

/// One status line on a terminal (standard error), redrawn in place; nothing when stderr is not a terminal.
enum StatusLine {
    private static let shown = NIOLockedValueBox(false)

    static var isAvailable: Bool {
        isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// Replaces the line with `text` (kept short enough not to wrap on an 80-column terminal).
    static func draw(_ text: String) {
        self.shown.withLockedValue { shown in
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + String(text.prefix(79))).utf8))
            shown = true
        }
    }

    /// Removes the line (before other output, and at the end).
    static func clear() {
        self.withLineCleared {}
    }

    static func withLineCleared(_ body: () -> Void) {
        self.shown.withLockedValue { shown in
            if shown {
                FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
                shown = false
            }
            body()
        }
    }

    /// `2 connections open (7 in all), 1.20 MiB up, 24.0 MiB down`.
    static func text(_ traffic: PortSessionTraffic) -> String {
        let open = traffic.openConnections == 1 ? "1 connection open" : "\(traffic.openConnections) connections open"
        return "\(open) (\(traffic.totalConnections) in all), \(ByteCount.text(traffic.bytesIn)) up, "
            + "\(ByteCount.text(traffic.bytesOut)) down"
    }
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

/// `--resume-timeout`: how long a session whose connection to the gateway dropped keeps trying to resume.
func resumeTimeout(_ text: String) throws -> TimeAmount {
    guard let seconds = DurationText.seconds(text), seconds > 0 else {
        throw ValidationError("--resume-timeout '\(text)' must be a positive duration such as 90s, 5m or 1h")
    }
    return .seconds(seconds)
}
