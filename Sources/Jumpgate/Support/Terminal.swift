import ArgumentParser
import Dispatch
import FoundationEssentials
import Glibc
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore

/// Writes a line to standard output at once (tools wait for lines on a pipe), clearing the terminal
/// status line first if one is shown.
func emit(_ text: String) {
    StatusLine.withLineCleared { StandardStream.output.write(text) }
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
            StandardStream.error.write("\r\u{1B}[K" + String(text.prefix(79)))
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
                StandardStream.error.write("\r\u{1B}[K")
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

/// `--format`: lines for people (tables, sentences) or JSON for scripts (docs/CLIENT.md has every shape).
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json

    static func help(_ json: String) -> ArgumentHelp {
        ArgumentHelp("text (default) or json: \(json)", valueName: "format")
    }
}

/// JSON events on standard output, one object a line, each with `event` and `time` (ISO 8601, UTC, ms).
enum JSONEvents {
    static func emit(_ name: String, _ fields: [(key: String, value: JSONValue)]) {
        let event: JSONValue = .object([("event", .string(name)), ("time", .string(Self.now()))] + fields)
        Jumpgate.emit(event.serialized() + "\n")
    }

    static func now() -> String {
        WallClock.iso8601Now()
    }
}

/// A peer's `host:port` (NIO's `[IPv4]127.0.0.1/127.0.0.1:38266` is for logs, not people).
func hostPort(_ address: SocketAddress?) -> String {
    guard let address, let ip = address.ipAddress, let port = address.port else { return "" }
    return HostPort.text(ip, port)
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

/// Left-aligned columns separated by two spaces.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padded(toLength: widths[column])
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}

/// The gateway's epoch-seconds dates under `keys` as ISO 8601 strings, as `--format json` prints them.
func isoDates(_ record: JSONValue, keys: Set<String>) -> JSONValue {
    guard case .object(let members) = record else { return record }
    return .object(
        members.map { key, value in
            guard keys.contains(key), let epoch = value.int64Value else { return (key, value) }
            return (key, .string(WallClock.iso8601(epochSeconds: epoch)))
        }
    )
}
