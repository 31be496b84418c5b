import ArgumentParser
import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Administrative calls to a gateway: activations, users, groups, keys and policies.",
        subcommands: [
            CreateActivationCommand.self, UsersCommand.self, GroupsCommand.self, KeysCommand.self,
            PoliciesCommand.self,
        ]
    )
}

struct CreateActivationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-activation",
        abstract: "Create an activation for registering agents (as 'aws ssm create-activation').",
        discussion:
            "Prints ActivationId and ActivationCode (the code is shown once), and the command that registers an agent with them."
    )

    @OptionGroup var gateway: GatewayOptions
    @Option(
        name: .long,
        help: ArgumentHelp("Recorded with the activation, as the AWS API requires one.", valueName: "role")
    )
    var iamRole: String = "SSMServiceRole"
    @Option(name: .long, help: ArgumentHelp("How many agents may register with it (1 to 1000).", valueName: "n"))
    var registrationLimit: Int = 1
    @Option(
        name: .long,
        help: ArgumentHelp("The name of agents registered with it that give no --name.", valueName: "name")
    )
    var defaultInstanceName: String?
    @Option(name: .long, help: ArgumentHelp("A note kept with the activation.", valueName: "text"))
    var description: String?
    @Option(
        name: .long,
        help: ArgumentHelp(
            "When it expires: an ISO 8601 time (2026-12-31T18:00:00Z) or a duration from now (2h, 7d); default 24h, at most 30 days.",
            valueName: "time"
        )
    )
    var expirationDate: String?
    @Option(name: .long, help: OutputFormat.help("the gateway's answer, {\"ActivationId\", \"ActivationCode\"}."))
    var format: OutputFormat = .text

    func validate() throws {
        guard (1...1000).contains(self.registrationLimit) else {
            throw ValidationError("--registration-limit must be from 1 to 1000.")
        }
        if let text = self.expirationDate { _ = try Self.expiration(text, now: WallClock.nowSeconds()) }
    }

    /// `--expiration-date` as epoch seconds: in the future and at most 30 days ahead (AWS's limits).
    static func expiration(_ text: String, now: Int64) throws -> Int64 {
        let epoch: Int64
        if let seconds = DurationText.seconds(text), seconds > 0 {
            epoch = now + seconds
        } else if let seconds = WallClock.parseISO8601(text) {
            epoch = seconds
        } else {
            throw ValidationError(
                "--expiration-date '\(text)' is neither an ISO 8601 time with its zone (2026-12-31T18:00:00Z, 2026-12-31T18:00+02:00) or a date (2026-12-31) nor a duration (2h, 7d)."
            )
        }
        guard epoch > now else {
            throw ValidationError(
                "--expiration-date \(WallClock.iso8601(epochSeconds: epoch)) is in the past; give a later time."
            )
        }
        guard epoch <= now + 30 * 86400 else {
            throw ValidationError("--expiration-date may be at most 30 days from now.")
        }
        return epoch
    }

    func run() async throws {
        var input: [(key: String, value: JSONValue)] = [
            ("IamRole", .string(self.iamRole)), ("RegistrationLimit", .integer(Int64(self.registrationLimit))),
        ]
        if let name = self.defaultInstanceName { input.append(("DefaultInstanceName", .string(name))) }
        if let text = self.description { input.append(("Description", .string(text))) }
        if let text = self.expirationDate {
            do {
                input.append(("ExpirationDate", .integer(try Self.expiration(text, now: WallClock.nowSeconds()))))
            } catch let error as ValidationError {
                throw CommandFailure(error.message)  // a time that passed since validate(): no usage
            }
        }
        let result = try await self.gateway.call("CreateActivation", .object(input))
        switch self.format {
        case .json:
            emit(result.serialized() + "\n")
        case .text:
            let id = result["ActivationId"]?.stringValue ?? ""
            let code = result["ActivationCode"]?.stringValue ?? ""
            let location = try self.gateway.location()
            emit(
                """
                ActivationId    \(id)
                ActivationCode  \(code)
                Register an agent with it (the code is not shown again):
                  jumpgate agent register --endpoint-url \(location.endpointURL)\(location.caFile.map { " --ca-file \($0)" } ?? "") \\
                      --activation-id \(id) --activation-code \(code) --state-dir DIR --allow HOST:PORT

                """
            )
        }
    }
}
