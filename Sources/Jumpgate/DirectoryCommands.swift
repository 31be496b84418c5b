import ArgumentParser
import FoundationEssentials
import JumpgateNIO
import JumpgateWire

/// `jumpgate admin users|groups|keys`: thin wrappers over the administrative API.
struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users",
        abstract: "Create, list and delete users.",
        subcommands: [Create.self, List.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user (no access until a policy allows it).")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The user's name: letters, digits and + = , . @ _ - (at most 64).") var name: String
        @Flag(name: .long, help: "Make an administrator: every action, no policy needed (administrators only).")
        var administrator = false
        @Option(name: .long, help: OutputFormat.help("{\"User\": {...}}.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin(
                "CreateUser",
                ["UserName": .string(self.name), "Administrator": .bool(self.administrator)]
            )
            printAnswer(
                answer,
                self.format,
                text: "created user \(self.name)\(self.administrator ? " (administrator)" : "")\n"
            )
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users with their groups, policies and keys.")
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: OutputFormat.help("{\"Users\": [...]}, dates in ISO 8601.")) var format:
            OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("ListUsers")
            let users = answer["Users"]?.arrayValue ?? []
            switch self.format {
            case .json:
                emit(
                    JSONValue.object([("Users", .array(users.map { isoDates($0, keys: ["CreateDate"]) }))]).serialized()
                        + "\n"
                )
            case .text:
                emit(
                    Table.render(
                        ["USER", "ADMIN", "GROUPS", "POLICIES", "KEYS"],
                        users.map { user in
                            [
                                user["UserName"]?.stringValue ?? "",
                                user["Administrator"]?.boolValue == true ? "yes" : "no",
                                names(user["Groups"]), names(user["AttachedPolicies"]),
                                "\(user["AccessKeys"]?.int64Value ?? 0)",
                            ]
                        }
                    )
                )
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete users, with their keys and memberships.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The users to delete.") var names: [String]
        @Option(name: .long, help: OutputFormat.help("{\"deleted\": [names]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.names,
                operation: "DeleteUser",
                inputKey: "UserName",
                done: "deleted",
                format: self.format,
                api: "JumpgateAdmin"
            )
        }
    }
}

struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "Create and delete groups, and add users to them or remove them.",
        subcommands: [Create.self, List.self, Delete.self, AddUser.self, RemoveUser.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a group.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The group's name.") var name: String
        @Option(name: .long, help: OutputFormat.help("{\"Group\": {...}}.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("CreateGroup", ["GroupName": .string(self.name)])
            printAnswer(answer, self.format, text: "created group \(self.name)\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List groups with their members and policies.")
        @OptionGroup var gateway: GatewayOptions
        @Option(name: .long, help: OutputFormat.help("{\"Groups\": [...]}.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin("ListGroups")
            let groups = answer["Groups"]?.arrayValue ?? []
            switch self.format {
            case .json:
                emit(
                    JSONValue.object([("Groups", .array(groups.map { isoDates($0, keys: ["CreateDate"]) }))])
                        .serialized() + "\n"
                )
            case .text:
                emit(
                    Table.render(
                        ["GROUP", "MEMBERS", "POLICIES"],
                        groups.map {
                            [$0["GroupName"]?.stringValue ?? "", names($0["Members"]), names($0["AttachedPolicies"])]
                        }
                    )
                )
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete groups.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The groups to delete.") var names: [String]
        @Option(name: .long, help: OutputFormat.help("{\"deleted\": [names]}.")) var format: OutputFormat = .text

        func run() async throws {
            try await self.gateway.callEach(
                self.names,
                operation: "DeleteGroup",
                inputKey: "GroupName",
                done: "deleted",
                format: self.format,
                api: "JumpgateAdmin"
            )
        }
    }

    struct AddUser: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-user", abstract: "Add a user to a group.")
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The group.") var group: String
        @Argument(help: "The user.") var user: String
        @Option(name: .long, help: OutputFormat.help("{} once done.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin(
                "AddUserToGroup",
                ["GroupName": .string(self.group), "UserName": .string(self.user)]
            )
            printAnswer(answer, self.format, text: "added \(self.user) to \(self.group)\n")
        }
    }

    struct RemoveUser: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-user",
            abstract: "Remove a user from a group."
        )
        @OptionGroup var gateway: GatewayOptions
        @Argument(help: "The group.") var group: String
        @Argument(help: "The user.") var user: String
        @Option(name: .long, help: OutputFormat.help("{} once done.")) var format: OutputFormat = .text

        func run() async throws {
            let answer = try await self.gateway.admin(
                "RemoveUserFromGroup",
                ["GroupName": .string(self.group), "UserName": .string(self.user)]
            )
            printAnswer(answer, self.format, text: "removed \(self.user) from \(self.group)\n")
        }
    }
}

/// A list of names as `a,b` (`-` for none).
func names(_ value: JSONValue?) -> String {
    let list = value?.arrayValue?.compactMap(\.stringValue) ?? []
    return list.isEmpty ? "-" : list.joined(separator: ",")
}

/// The answer as JSON, or `text`.
func printAnswer(_ answer: JSONValue, _ format: OutputFormat, text: String) {
    switch format {
    case .json: emit(answer.serialized() + "\n")
    case .text: emit(text)
    }
}
