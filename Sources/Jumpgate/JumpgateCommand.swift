import ArgumentParser
import JumpgateWire

@main
struct JumpgateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jumpgate",
        abstract:
            "A self-hostable Session Manager: reach private databases, queues and services through an agent that only dials out.",
        version: JumpgateVersion.product,
        subcommands: [
            ServerCommand.self, AgentCommand.self, StartSessionCommand.self, ForwardCommand.self, SessionsCommand.self,
            InstancesCommand.self, AdminCommand.self, DebugCommand.self, VersionCommand.self,
        ]
    )
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the versions Jumpgate reports."
    )

    func run() {
        print("jumpgate \(JumpgateVersion.product)")
        print("agent protocol version \(JumpgateVersion.agentProtocolVersion)")
        print("client protocol version \(JumpgateVersion.clientProtocolVersion)")
    }
}
