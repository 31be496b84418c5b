import ArgumentParser
import FoundationEssentials
import JumpgateNIO
import JumpgateWire

/// `jumpgate admin policies`: IAM-style policies, their attachments, and simulation.
struct PoliciesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policies",
        abstract: "Put, list, get, delete, attach, detach and simulate policies (AWS IAM's JSON grammar).",
        subcommands: [Put.self, List.self, Get.self, Delete.self, Attach.self, Detach.self, Simulate.self]
    )

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or replace a policy; a malformed document is refused, naming the part that is wrong."
        )
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The policy's name.") var name: String
        @Option(name: .long, help: ArgumentHelp("The policy document: a file, or - for stdin.", valueName: "file"))
        var document: String
        @Option(name: .long, help: OutputFormat.help("{\"Policy\": {...}}.")) var format: OutputFormat = .text

        func run() async throws {
            let data: Data?
            if self.document == "-" {
                data = Data(StandardStream.readInputToEnd())
            } else {
                data = FileManager.default.contents(atPath: self.document)
            }
            guard let data else { throw CommandFailure("Cannot read the policy document \(self.document).") }
            let answer = try await self.gateway.admin(
                "PutPolicy",
                ["PolicyName": .string(self.name), "PolicyDocument": .string(String(decoding: data, as: UTF8.self))]
            )
            printAnswer(answer, self.format, text: "put policy \(self.name)\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List policies and whom they are attached to.")
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: OutputFormat.help("{\"Policies\": [...]}, dates in ISO 8601.")) var format:
            OutputFormat = .text

        func run() async throws {
            let policies = (try await self.gateway.admin("ListPolicies")["Policies"]?.arrayValue ?? []).map {
                isoDates($0, keys: ["CreateDate", "UpdateDate"])
            }
            switch self.format {
            case .json: emit(JSONValue.object([("Policies", .array(policies))]).serialized() + "\n")
            case .text:
                emit(
                    Table.render(
                        ["POLICY", "ATTACHED TO", "UPDATED"],
                        policies.map {
                            [
                                $0["PolicyName"]?.stringValue ?? "", names($0["AttachedTo"]),
                                $0["UpdateDate"]?.stringValue ?? "",
                            ]
                        }
                    )
                )
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a policy's document (as it was put).")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The policy's name.") var name: String
        @Option(name: .long, help: OutputFormat.help("{\"Policy\": {... \"PolicyDocument\"}}.")) var format:
            OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("GetPolicy", ["PolicyName": .string(self.name)])
            let document = answer["Policy"]?["PolicyDocument"]?.stringValue ?? ""
            printAnswer(answer, self.format, text: document.hasSuffix("\n") ? document : document + "\n")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete policies (detach them first).")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The policies.") var names: [String]
        @Option(name: .long, help: OutputFormat.help("{\"deleted\": [names]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.names,
                operation: "DeletePolicy",
                inputKey: "PolicyName",
                done: "deleted",
                format: self.format,
                api: "JumpgateAdmin"
            )
        }
    }

    /// `--user U | --group G --policy NAME`.
    struct Attachment: ParsableArguments {
        @Option(name: .long, help: "The user.") var user: String?
        @Option(name: .long, help: "The group.") var group: String?
        @Option(name: .long, help: "The policy.") var policy: String

        func validate() throws {
            guard (self.user == nil) != (self.group == nil) else {
                throw ValidationError("Give either --user or --group.")
            }
        }

        var input: JSONValue {
            var members: [(key: String, value: JSONValue)] = [("PolicyName", .string(self.policy))]
            if let user = self.user { members.append(("UserName", .string(user))) }
            if let group = self.group { members.append(("GroupName", .string(group))) }
            return .object(members)
        }

        var principal: String { self.user.map { "user \($0)" } ?? "group \(self.group ?? "")" }
    }

    struct Attach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Attach a policy to a user or a group.")
        @OptionGroup var gateway: GatewayOptions
        @OptionGroup var attachment: Attachment
        @Option(name: .long, help: OutputFormat.help("{} once done.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("AttachPolicy", self.attachment.input)
            printAnswer(
                answer,
                self.format,
                text: "attached \(self.attachment.policy) to \(self.attachment.principal)\n"
            )
        }
    }

    struct Detach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Detach a policy from a user or a group.")
        @OptionGroup var gateway: GatewayOptions
        @OptionGroup var attachment: Attachment
        @Option(name: .long, help: OutputFormat.help("{} once done.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("DetachPolicy", self.attachment.input)
            printAnswer(
                answer,
                self.format,
                text: "detached \(self.attachment.policy) from \(self.attachment.principal)\n"
            )
        }
    }

    struct Simulate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What a user's policies decide for an action on a resource, and which statement decided.",
            discussion: """
                Example: jumpgate admin policies simulate --user dev --action ssm:StartSession \\
                  --resource arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123 \\
                  --context jumpgate:RemoteHost=db.internal --context jumpgate:RemotePort=5432
                Exit status: 0 allowed, 1 denied.
                """
        )
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: "The user whose policies are evaluated.") var user: String
        @Option(name: .long, help: "The action, such as ssm:StartSession.") var action: String
        @Option(name: .long, help: "The resource's ARN.") var resource: String
        @Option(
            name: .long,
            help: ArgumentHelp("A condition key's value (repeat for several).", valueName: "KEY=VALUE")
        )
        var context: [String] = []
        @Option(name: .long, help: OutputFormat.help("{\"EvalDecision\", \"MatchedPolicy\", \"MatchedStatement\"}."))
        var format: OutputFormat = .text

        func validate() throws {
            for entry in self.context where !entry.contains("=") {
                throw ValidationError("--context '\(entry)' is not KEY=VALUE.")
            }
        }

        func run() async throws {
            var grouped: [(String, [String])] = []
            for entry in self.context {
                let key = String(entry.prefix { $0 != "=" })
                let value = String(entry.drop { $0 != "=" }.dropFirst())
                if let index = grouped.firstIndex(where: { $0.0 == key }) {
                    grouped[index].1.append(value)
                } else {
                    grouped.append((key, [value]))
                }
            }
            let entries = grouped.map { key, values -> JSONValue in
                ["ContextKeyName": .string(key), "ContextKeyValues": .array(values.map { .string($0) })]
            }
            let answer = try await self.gateway.admin(
                "SimulatePolicy",
                [
                    "UserName": .string(self.user), "ActionName": .string(self.action),
                    "ResourceArn": .string(self.resource), "ContextEntries": .array(entries),
                ]
            )
            let decision = answer["EvalDecision"]?.stringValue ?? ""
            var text = decision
            if let policy = answer["MatchedPolicy"]?.stringValue { text += " by policy \(policy)" }
            if let statement = answer["MatchedStatement"]?.stringValue { text += ", statement \(statement)" }
            printAnswer(answer, self.format, text: text + "\n")
            if decision != "allowed" { throw ExitCode(1) }
        }
    }
}
