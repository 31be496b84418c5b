import ArgumentParser
import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List or terminate sessions.",
        subcommands: [SessionsListCommand.self, SessionsTerminateCommand.self]
    )
}

struct SessionsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List active sessions (or ended ones with --history)."
    )
    @OptionGroup var gateway: GatewayOptions
    @Flag(name: .long, help: "List ended sessions instead of active ones.") var history = false
    @Option(name: .long, help: "table or json.") var format: OutputFormat = .text

    func run() async throws {
        let result = try await callOrExit(
            self.gateway,
            "DescribeSessions",
            ["State": .string(self.history ? "History" : "Active")]
        )
        let sessions = result["Sessions"]?.arrayValue ?? []
        if self.format == .json {
            emit(JSONValue.array(sessions).serialized() + "\n")
            return
        }
        emit(
            Table.render(
                ["SESSION ID", "TARGET", "STATUS", "STARTED", "DOCUMENT", "TO TARGET", "FROM TARGET"],
                sessions.map { s in
                    [
                        s["SessionId"]?.stringValue ?? "", s["Target"]?.stringValue ?? "",
                        s["Status"]?.stringValue ?? "",
                        s["StartDate"]?.int64Value.map { WallClock.iso8601(epochSeconds: $0) } ?? "",
                        s["DocumentName"]?.stringValue ?? "",
                        ByteCount.text(s["JumpgateBytesToTarget"]?.int64Value ?? 0),
                        ByteCount.text(s["JumpgateBytesFromTarget"]?.int64Value ?? 0),
                    ]
                }
            )
        )
    }
}

struct SessionsTerminateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "terminate", abstract: "Terminate sessions by id.")
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: "Session ids.") var sessionIDs: [String]

    func run() async throws {
        for id in self.sessionIDs {
            _ = try await callOrExit(self.gateway, "TerminateSession", ["SessionId": .string(id)])
            emit("Terminated \(id)\n")
        }
    }
}

struct InstancesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instances",
        abstract: "List registered agents.",
        subcommands: [InstancesListCommand.self]
    )
}

struct InstancesListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List registered agents and whether they are online."
    )
    @OptionGroup var gateway: GatewayOptions
    @Option(name: .long, help: "table or json.") var format: OutputFormat = .text

    func run() async throws {
        let result = try await callOrExit(self.gateway, "DescribeInstanceInformation", [:])
        let instances = result["InstanceInformationList"]?.arrayValue ?? []
        if self.format == .json {
            emit(JSONValue.array(instances).serialized() + "\n")
            return
        }
        emit(
            Table.render(
                ["INSTANCE ID", "NAME", "PING", "AGENT VERSION", "PLATFORM", "IP", "LAST PING"],
                instances.map { i in
                    [
                        i["InstanceId"]?.stringValue ?? "", i["Name"]?.stringValue ?? "",
                        i["PingStatus"]?.stringValue ?? "",
                        i["AgentVersion"]?.stringValue ?? "", i["PlatformName"]?.stringValue ?? "",
                        i["IPAddress"]?.stringValue ?? "",
                        i["LastPingDateTime"]?.int64Value.map { $0 > 0 ? WallClock.iso8601(epochSeconds: $0) : "never" }
                            ?? "",
                    ]
                }
            )
        )
    }
}

/// Calls the API; on failure prints the AWS-style error and exits 1.
func callOrExit(_ gateway: GatewayOptions, _ operation: String, _ input: JSONValue) async throws -> JSONValue {
    do {
        return try await gateway.client().call(operation, input)
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Left-aligned columns separated by two spaces.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
