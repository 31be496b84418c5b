import ArgumentParser
import FoundationEssentials
import JumpgateNIO
import JumpgateWire

struct InstancesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instances",
        abstract: "List or deregister agents.",
        subcommands: [InstancesListCommand.self, InstancesDeregisterCommand.self]
    )
}

struct InstancesListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List registered agents and whether they are online."
    )
    @OptionGroup var gateway: GatewayOptions
    @Option(
        name: .long,
        help: OutputFormat.help(
            "{\"InstanceInformationList\": [...]}, as 'aws ssm describe-instance-information', dates in ISO 8601."
        )
    )
    var format: OutputFormat = .text

    func run() async throws {
        let result = try await self.gateway.call("DescribeInstanceInformation", [:])
        let instances = result["InstanceInformationList"]?.arrayValue ?? []
        switch self.format {
        case .json:
            emit(
                JSONValue.object([("InstanceInformationList", .array(instances.map(Self.json)))]).serialized() + "\n"
            )
        case .text:
            emit(
                Table.render(
                    ["INSTANCE ID", "NAME", "STATUS", "AGENT VERSION", "PLATFORM", "IP", "LAST PING"],
                    instances.map { i in
                        let ping = i["LastPingDateTime"]?.int64Value ?? 0
                        return [
                            i["InstanceId"]?.stringValue ?? "", i["Name"]?.stringValue ?? "",
                            ping > 0 ? (i["PingStatus"]?.stringValue ?? "") : "NeverConnected",
                            i["AgentVersion"]?.stringValue ?? "", i["PlatformName"]?.stringValue ?? "",
                            i["IPAddress"]?.stringValue ?? "",
                            ping > 0 ? WallClock.iso8601(epochSeconds: ping) : "never",
                        ]
                    }
                )
            )
        }
    }

    /// Dates in ISO 8601 (an agent that never connected has no LastPingDateTime).
    static func json(_ instance: JSONValue) -> JSONValue {
        isoDates(instance, keys: ["LastPingDateTime", "RegistrationDate"])
    }
}

struct InstancesDeregisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deregister",
        abstract: "Deregister agents: their credentials stop working and their sessions end.",
        discussion: "The same as 'aws ssm deregister-managed-instance'. The agent must be registered again to return."
    )
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: ArgumentHelp("Instance ids (mi-...).", valueName: "instance-id")) var instanceIDs: [String]
    @Option(name: .long, help: OutputFormat.help("{\"Deregistered\": [ids]}."))
    var format: OutputFormat = .text

    func run() async throws {
        try await self.gateway.callEach(
            self.instanceIDs,
            operation: "DeregisterManagedInstance",
            inputKey: "InstanceId",
            done: "Deregistered",
            format: self.format
        )
    }
}
