import ArgumentParser
import FoundationEssentials
import JumpgateAccess
import JumpgateClient
import JumpgateGateway
import JumpgateNIO
import JumpgateWire
import Logging
import NIOPosix

/// `jumpgate audit list|verify`: the gateway's audit trail.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "List and verify the gateway's tamper-evident audit trail.",
        subcommands: [List.self, Verify.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List audit records (CloudTrail records), oldest first."
        )
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: "Only this user's records.") var user: String?
        @Option(name: .long, help: ArgumentHelp("Only records about this instance.", valueName: "mi-...")) var target:
            String?
        @Option(name: .long, help: "Only this session's records.") var session: String?
        @Option(name: .long, help: "Only this event (StartSession, SessionEnded, ...).") var event: String?
        @Option(
            name: .long,
            help: ArgumentHelp("From this time: ISO 8601, or a duration ago (1h, 7d).", valueName: "time")
        )
        var since: String?
        @Option(name: .long, help: ArgumentHelp("Up to this time: ISO 8601, or a duration ago.", valueName: "time"))
        var until: String?
        @Option(name: .long, help: "At most this many records, the newest (1000).") var maxResults: Int = 1000
        @Option(name: .long, help: OutputFormat.help("one JSON array of the CloudTrail records.")) var format:
            OutputFormat = .text

        func validate() throws {
            for (flag, value) in [("--since", self.since), ("--until", self.until)] {
                if let value, Self.time(value, now: WallClock.nowSeconds()) == nil {
                    throw ValidationError(
                        "\(flag) '\(value)' is neither an ISO 8601 time with its zone (2026-12-31T18:00:00Z), "
                            + "a date (2026-12-31) nor a duration such as 1h."
                    )
                }
            }
        }

        static func time(_ text: String, now: Int64) -> Int64? {
            if let seconds = DurationText.seconds(text) { return now - seconds }
            return WallClock.parseISO8601(text)
        }

        func run() async throws {
            let now = WallClock.nowSeconds()
            var input: [(key: String, value: JSONValue)] = [("MaxResults", .integer(Int64(self.maxResults)))]
            if let user = self.user { input.append(("UserName", .string(user))) }
            if let target = self.target { input.append(("Target", .string(target))) }
            if let session = self.session { input.append(("SessionId", .string(session))) }
            if let event = self.event { input.append(("EventName", .string(event))) }
            if let since = self.since.flatMap({ Self.time($0, now: now) }) {
                input.append(("StartTime", .integer(since)))
            }
            if let until = self.until.flatMap({ Self.time($0, now: now) }) {
                input.append(("EndTime", .integer(until)))
            }
            let events = try await self.gateway.admin("ListAuditEvents", .object(input))["Events"]?.arrayValue ?? []
            switch self.format {
            case .json: emit(JSONValue.array(events).serialized() + "\n")
            case .text: emit(Self.table(events))
            }
        }

        static func table(_ events: [JSONValue]) -> String {
            Table.render(
                ["TIME", "EVENT", "USER", "SOURCE", "RESULT", "DETAIL"],
                events.map { event in
                    let details = event["serviceEventDetails"]
                    var detail = ""
                    if let destination = details?["destination"]?.stringValue ?? Self.destination(event) {
                        detail = destination
                    }
                    if let session = details?["sessionId"]?.stringValue
                        ?? event["responseElements"]?["SessionId"]?.stringValue
                    {
                        detail += (detail.isEmpty ? "" : " ") + session
                    }
                    if let sent = details?["bytesToTarget"]?.int64Value,
                        let received = details?["bytesFromTarget"]?.int64Value
                    {
                        detail += " sent \(sent) B, received \(received) B"
                    }
                    if let reason = details?["closeReason"]?.stringValue, !reason.isEmpty { detail += " (\(reason))" }
                    if let count = details?["count"]?.int64Value { detail = "\(count) refused" }
                    let result = event["errorCode"]?.stringValue ?? "ok"
                    return [
                        event["eventTime"]?.stringValue ?? "", event["eventName"]?.stringValue ?? "",
                        event["userIdentity"]?["userName"]?.stringValue ?? "-",
                        event["sourceIPAddress"]?.stringValue ?? "", result, detail,
                    ]
                }
            )
        }

        static func destination(_ event: JSONValue) -> String? {
            guard let parameters = event["requestParameters"]?["Parameters"],
                let port = parameters["portNumber"]?.arrayValue?.first?.stringValue
            else { return nil }
            let host = parameters["host"]?.arrayValue?.first?.stringValue ?? "localhost"
            return "\(event["requestParameters"]?["Target"]?.stringValue ?? "") \(HostPort.text(host, port))"
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the audit trail's hash chain; exit 0 intact, 1 naming the first bad record.",
            discussion: """
                Against a running gateway (a signed call), or offline with --data-dir DIR (the gateway may be
                running or not). --log FILE also compares the store with the --audit-log file, which catches a
                store rewritten with recomputed hashes, or truncated.
                """
        )
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: ArgumentHelp("Verify this data directory's store directly.", valueName: "dir"))
        var dataDir: String?
        @Option(
            name: .long,
            help: ArgumentHelp("The gateway's --audit-log file to check against (offline).", valueName: "file")
        )
        var log: String?
        @Option(name: .long, help: OutputFormat.help("{\"Intact\", \"Records\", \"Head\", \"Problem\"}.")) var format:
            OutputFormat = .text

        func validate() throws {
            if self.log != nil, self.dataDir == nil {
                throw ValidationError("--log goes with --data-dir (online, the gateway checks its own --audit-log).")
            }
        }

        func run() async throws {
            let answer: JSONValue
            if let directory = self.dataDir {
                answer = try await Self.offline(directory: directory, log: self.log)
            } else {
                answer = try await self.gateway.admin("VerifyAudit")
            }
            let intact = answer["Intact"]?.boolValue == true
            var text: String
            if intact {
                text = "audit trail intact: \(answer["Records"]?.int64Value ?? 0) records"
                text +=
                    ", sequence \(answer["FirstSequence"]?.int64Value ?? 0) to \(answer["LastSequence"]?.int64Value ?? 0)"
                text += ", head \(answer["Head"]?.stringValue ?? "")"
                if answer["CheckedAgainstLogFile"]?.boolValue == true { text += ", matches the log file" }
            } else {
                let problem = answer["Problem"]
                text = "audit trail BROKEN at record \(problem?["Sequence"]?.int64Value ?? 0) "
                text += "(eventID \(problem?["EventId"]?.stringValue ?? "")): \(problem?["Reason"]?.stringValue ?? "")"
            }
            printAnswer(answer, self.format, text: text + "\n")
            if !intact { throw ExitCode(1) }
        }

        static func offline(directory: String, log: String?) async throws -> JSONValue {
            guard FileManager.default.fileExists(atPath: directory + "/jumpgate.sqlite") else {
                throw CommandFailure(
                    "\(directory) holds no gateway store (jumpgate.sqlite); give the gateway's --data-dir."
                )
            }
            let store: GatewayStore
            do {
                store = try await GatewayStore.open(
                    directory: directory,
                    eventLoop: MultiThreadedEventLoopGroup.singleton.any(),
                    logger: Logger(label: "jumpgate.audit")
                )
            } catch {
                throw CommandFailure("The store in \(directory) cannot be opened: \(error).")
            }
            defer { Task { try? await store.close() } }
            let (anchor, entries) = try await store.auditChain()
            let lines: [AuditLogLine]?
            do {
                lines = try log.map { try AuditLogFile.read($0) }
            } catch {
                throw CommandFailure("The audit log \(log ?? "") cannot be read.")
            }
            return AuditTrail.verification(anchor: anchor, entries: entries, log: lines)
        }
    }
}
