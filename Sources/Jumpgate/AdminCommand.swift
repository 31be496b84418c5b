import ArgumentParser
import Foundation
import JumpgateClient
import JumpgateWire

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Administrative calls to a gateway (signed with the administrator's credentials).",
        subcommands: [CreateActivationCommand.self]
    )
}

/// Where to reach the gateway and as whom: the AWS tools' flags and variables.
struct GatewayOptions: ParsableArguments {
    @Option(name: .long, help: "The gateway URL (else AWS_ENDPOINT_URL_SSM).") var endpointURL: String?
    @Option(name: .long, help: "Region for signing (any works with Jumpgate).") var region: String?
    @Option(name: .long, help: "A profile from the AWS credentials file.") var profile: String?
    @Option(name: .long, help: "The gateway's CA certificate (else AWS_CA_BUNDLE or SSL_CERT_FILE).") var caFile:
        String?

    func client() throws -> SSMClient {
        try SSMClient(
            configuration: ClientConfiguration.resolve(
                profile: self.profile,
                region: self.region,
                endpointURL: self.endpointURL,
                caFile: self.caFile
            )
        )
    }
}

struct CreateActivationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-activation",
        abstract: "Create an activation for registering agents; prints ActivationId and ActivationCode as JSON."
    )

    @OptionGroup var gateway: GatewayOptions
    @Option(name: .long, help: "Recorded with the activation, as the AWS API requires one.") var iamRole: String =
        "SSMServiceRole"
    @Option(name: .long, help: "How many agents may register with it.") var registrationLimit: Int = 1
    @Option(name: .long, help: "The default name of agents registered with it.") var defaultInstanceName: String?

    func run() async throws {
        do {
            var input: [(key: String, value: JSONValue)] = [
                ("IamRole", .string(self.iamRole)), ("RegistrationLimit", .integer(Int64(self.registrationLimit))),
            ]
            if let name = self.defaultInstanceName { input.append(("DefaultInstanceName", .string(name))) }
            let result = try await self.gateway.client().call("CreateActivation", .object(input))
            emit(result.serialized() + "\n")
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
