import ArgumentParser
import FoundationEssentials
import JumpgateNIO
import JumpgateWire

/// `jumpgate admin keys`: a user's access keys (at most two, for rotation).
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list, disable, enable and delete users' access keys (two per user at most).",
        subcommands: [Create.self, List.self, Disable.self, Enable.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key; print it as an AWS credentials-file profile (the secret is shown once).",
            discussion: """
                stdout holds only the profile ([USER], aws_access_key_id, aws_secret_access_key), so
                  jumpgate admin keys create dev > dev.credentials
                makes a file for AWS_SHARED_CREDENTIALS_FILE (AWS_PROFILE=dev). Notes go to stderr.
                """
        )
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The user the key is for.") var user: String
        @Option(name: .long, help: OutputFormat.help("{\"AccessKey\": {... \"SecretAccessKey\"}}.")) var format:
            OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("CreateAccessKey", ["UserName": .string(self.user)])
            let key = answer["AccessKey"]
            switch self.format {
            case .json:
                emit(answer.serialized() + "\n")
            case .text:
                emit(
                    "[\(self.user)]\naws_access_key_id = \(key?["AccessKeyId"]?.stringValue ?? "")\n"
                        + "aws_secret_access_key = \(key?["SecretAccessKey"]?.stringValue ?? "")\n"
                )
                note(
                    "jumpgate: the secret is not shown again. Use it with AWS_SHARED_CREDENTIALS_FILE=FILE "
                        + "AWS_PROFILE=\(self.user) (and the gateway's aws.config for the endpoint and CA).\n"
                )
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a user's keys (yours without a name).")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The user.") var user: String?
        @Option(name: .long, help: OutputFormat.help("{\"AccessKeyMetadata\": [...]}, dates in ISO 8601."))
        var format: OutputFormat = .text

        func run() async throws {
            var input: [(key: String, value: JSONValue)] = []
            if let user = self.user { input.append(("UserName", .string(user))) }
            let answer = try await self.gateway.admin("ListAccessKeys", .object(input))
            let keys = (answer["AccessKeyMetadata"]?.arrayValue ?? []).map {
                isoDates($0, keys: ["CreateDate", "LastUsedDate"])
            }
            switch self.format {
            case .json:
                emit(JSONValue.object([("AccessKeyMetadata", .array(keys))]).serialized() + "\n")
            case .text:
                emit(
                    Table.render(
                        ["ACCESS KEY", "USER", "STATUS", "CREATED", "LAST USED"],
                        keys.map { key in
                            [
                                key["AccessKeyId"]?.stringValue ?? "", key["UserName"]?.stringValue ?? "",
                                key["Status"]?.stringValue ?? "", key["CreateDate"]?.stringValue ?? "",
                                key["LastUsedDate"]?.stringValue ?? "never",
                            ]
                        }
                    )
                )
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make keys inactive (refused until enabled).")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "Access key ids.") var ids: [String]
        @Option(name: .long, help: OutputFormat.help("{\"disabled\": [ids]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.ids,
                operation: "UpdateAccessKey",
                inputKey: "AccessKeyId",
                done: "disabled",
                format: self.format,
                api: "JumpgateAdmin",
                extra: [("Status", "Inactive")]
            )
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make keys active again.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "Access key ids.") var ids: [String]
        @Option(name: .long, help: OutputFormat.help("{\"enabled\": [ids]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.ids,
                operation: "UpdateAccessKey",
                inputKey: "AccessKeyId",
                done: "enabled",
                format: self.format,
                api: "JumpgateAdmin",
                extra: [("Status", "Active")]
            )
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete keys for good.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "Access key ids.") var ids: [String]
        @Option(name: .long, help: OutputFormat.help("{\"deleted\": [ids]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.ids,
                operation: "DeleteAccessKey",
                inputKey: "AccessKeyId",
                done: "deleted",
                format: self.format,
                api: "JumpgateAdmin"
            )
        }
    }
}

/// A note on stderr (stdout stays machine-readable).
func note(_ text: String) {
    StandardStream.error.write(text)
}
