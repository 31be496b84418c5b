import ArgumentParser
import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List, show or terminate sessions; read and replay their recordings.",
        subcommands: [
            SessionsListCommand.self, SessionsShowCommand.self, SessionsTerminateCommand.self,
            SessionsGetRecordingCommand.self, SessionsReplayCommand.self,
        ]
    )
}

/// DescribeSessions records as people and scripts read them: dates in ISO 8601, the destination, and
/// the duration of ended sessions. The gateway's byte counts are data-channel bytes (messages with their
/// headers and acknowledgements), not the application's bytes a client's status line counts.
enum SessionListing {
    /// One record for `--format json`: the gateway's fields, with StartDate and EndDate in ISO 8601.
    static func json(_ session: JSONValue) -> JSONValue {
        isoDates(session, keys: ["StartDate", "EndDate"])
    }

    static func date(_ session: JSONValue, _ key: String) -> String {
        session[key]?.int64Value.map { WallClock.iso8601(epochSeconds: $0) } ?? ""
    }

    /// `1h 02m`, `3m 20s`, `12s`.
    static func duration(_ session: JSONValue) -> String {
        guard let start = session["StartDate"]?.int64Value, let end = session["EndDate"]?.int64Value else { return "" }
        let seconds = max(0, end - start)
        if seconds >= 3600 { return "\(seconds / 3600)h \(DecimalText.zeroPadded((seconds % 3600) / 60, width: 2))m" }
        if seconds >= 60 { return "\(seconds / 60)m \(DecimalText.zeroPadded(seconds % 60, width: 2))s" }
        return "\(seconds)s"
    }

    static func bytes(_ session: JSONValue, _ key: String) -> String {
        ByteCount.text(session[key]?.int64Value ?? 0)
    }

    static func table(_ sessions: [JSONValue], history: Bool) -> String {
        if history {
            return Table.render(
                [
                    "SESSION ID", "TARGET", "DESTINATION", "STATUS", "STARTED", "ENDED", "DURATION", "WIRE UP",
                    "WIRE DOWN", "REASON",
                ],
                sessions.map { s in
                    [
                        s["SessionId"]?.stringValue ?? "", s["Target"]?.stringValue ?? "",
                        s["JumpgateDestination"]?.stringValue ?? "", s["Status"]?.stringValue ?? "",
                        date(s, "StartDate"), date(s, "EndDate"), duration(s),
                        bytes(s, "JumpgateBytesToTarget"), bytes(s, "JumpgateBytesFromTarget"),
                        s["Details"]?.stringValue ?? "",
                    ]
                }
            )
        }
        return Table.render(
            ["SESSION ID", "TARGET", "DESTINATION", "STATUS", "STARTED", "OWNER", "WIRE UP", "WIRE DOWN"],
            sessions.map { s in
                [
                    s["SessionId"]?.stringValue ?? "", s["Target"]?.stringValue ?? "",
                    s["JumpgateDestination"]?.stringValue ?? "", s["Status"]?.stringValue ?? "",
                    date(s, "StartDate"), s["Owner"]?.stringValue ?? "",
                    bytes(s, "JumpgateBytesToTarget"), bytes(s, "JumpgateBytesFromTarget"),
                ]
            }
        )
    }
}

struct SessionsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List active sessions (or ended ones with --history).",
        discussion:
            "WIRE UP and WIRE DOWN are the bytes the gateway relayed toward the target and back: Session Manager messages with their headers and acknowledgements, so more than the application's bytes."
    )
    @OptionGroup var gateway: GatewayOptions
    @Flag(name: .long, help: "List ended sessions instead of active ones.") var history = false
    @Option(name: .long, help: OutputFormat.help("{\"Sessions\": [...]}, as 'aws ssm describe-sessions'."))
    var format: OutputFormat = .text

    func run() async throws {
        var sessions: [JSONValue] = []
        var token: String?
        repeat {
            var input: [(key: String, value: JSONValue)] = [("State", .string(self.history ? "History" : "Active"))]
            if let token { input.append(("NextToken", .string(token))) }
            let page = try await self.gateway.call("DescribeSessions", .object(input))
            sessions += page["Sessions"]?.arrayValue ?? []
            token = page["NextToken"]?.stringValue
        } while token != nil && sessions.count < 10_000
        switch self.format {
        case .json:
            emit(JSONValue.object([("Sessions", .array(sessions.map(SessionListing.json)))]).serialized() + "\n")
        case .text:
            emit(SessionListing.table(sessions, history: self.history))
        }
    }
}

struct SessionsShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one session, active or ended: target, destination, owner, dates, traffic, why it ended."
    )
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: ArgumentHelp("The session id.", valueName: "session-id")) var sessionID: String
    @Option(name: .long, help: OutputFormat.help("{\"Session\": {...}}, the fields of 'sessions list'."))
    var format: OutputFormat = .text

    func run() async throws {
        var found: JSONValue?
        for state in ["Active", "History"] where found == nil {
            let input: JSONValue = [
                "State": .string(state), "Filters": [["key": "SessionId", "value": .string(self.sessionID)]],
            ]
            found = try await self.gateway.call("DescribeSessions", input)["Sessions"]?.arrayValue?.first
        }
        guard let session = found else {
            throw CommandFailure(
                "No session \(self.sessionID) on this gateway. 'jumpgate sessions list' (--history for ended ones) lists them."
            )
        }
        switch self.format {
        case .json:
            emit(JSONValue.object([("Session", SessionListing.json(session))]).serialized() + "\n")
        case .text:
            let s = session
            var rows: [(String, String)] = [
                ("Session", s["SessionId"]?.stringValue ?? ""), ("Status", s["Status"]?.stringValue ?? ""),
                ("Target", s["Target"]?.stringValue ?? ""),
                ("Destination", s["JumpgateDestination"]?.stringValue ?? ""),
                ("Document", s["DocumentName"]?.stringValue ?? ""), ("Owner", s["Owner"]?.stringValue ?? ""),
                ("Reason", s["Reason"]?.stringValue ?? ""), ("Started", SessionListing.date(s, "StartDate")),
            ]
            if s["EndDate"] != nil {
                rows += [("Ended", SessionListing.date(s, "EndDate")), ("Duration", SessionListing.duration(s))]
            }
            rows += [
                ("Wire up", SessionListing.bytes(s, "JumpgateBytesToTarget")),
                ("Wire down", SessionListing.bytes(s, "JumpgateBytesFromTarget")),
            ]
            if let details = s["Details"]?.stringValue { rows.append(("Ended because", details)) }
            if let recording = s["JumpgateRecording"] {
                let state =
                    recording["Truncated"]?.boolValue == true
                    ? "cut at its size limit" : recording["Complete"]?.boolValue == true ? "complete" : "in progress"
                rows.append(
                    (
                        "Recording",
                        "\(ByteCount.text(recording["Bytes"]?.int64Value ?? 0)), \(state) (jumpgate sessions replay \(s["SessionId"]?.stringValue ?? ""))"
                    )
                )
            }
            emit(
                rows.map { "\($0.0 + ":")".padded(toLength: 15) + $0.1 }.joined(
                    separator: "\n"
                ) + "\n"
            )
        }
    }
}

struct SessionsTerminateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "terminate", abstract: "Terminate sessions by id.")
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: ArgumentHelp("Session ids.", valueName: "session-id")) var sessionIDs: [String]
    @Option(name: .long, help: OutputFormat.help("{\"Terminated\": [ids]}."))
    var format: OutputFormat = .text

    func run() async throws {
        try await self.gateway.callEach(
            self.sessionIDs,
            operation: "TerminateSession",
            inputKey: "SessionId",
            done: "Terminated",
            format: self.format
        )
    }
}
