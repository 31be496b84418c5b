import JumpgateWire

/// How the AWS CLI calls `session-manager-plugin` (spec §2), and what the plugin must print for the
/// argument shapes that do not start a session. Shared by the plugin executable and its tests.
public enum PluginInvocation: Equatable, Sendable {
    /// No arguments: the "installed successfully" banner.
    case banner
    /// `--version`.
    case version
    /// 2 or 3 arguments: unknown operation.
    case unknownOperation(String)
    /// A session request: response JSON (or the name of the variable holding it), region, operation,
    /// profile, request parameters JSON and, from newer CLIs, the endpoint URL.
    case startSession(
        response: String,
        region: String,
        operation: String,
        profile: String,
        parameters: String,
        endpoint: String?
    )

    public init(arguments: [String]) {
        switch arguments.count {
        case 0: self = .banner
        case 1 where arguments[0] == "--version": self = .version
        case 1, 2: self = .unknownOperation(arguments[0])
        case 3:
            self = .startSession(
                response: arguments[0],
                region: arguments[1],
                operation: arguments[2],
                profile: "",
                parameters: "{}",
                endpoint: nil
            )
        default:
            self = .startSession(
                response: arguments[0],
                region: arguments[1],
                operation: arguments[2],
                profile: arguments[3],
                parameters: arguments.count > 4 ? arguments[4] : "{}",
                endpoint: arguments.count > 5 ? arguments[5] : nil
            )
        }
    }

    /// The official plugin's banner, word for word.
    public static let bannerText =
        "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n"

    public static func unknownOperationText(_ operation: String) -> String {
        "\nUnknown operation \(operation). \nUse session-manager-plugin --version to check the version.\n\n"
    }

    /// The version printed by `--version`: 4-part, above 1.2.650.0 (so awscli uses the environment
    /// variable mode, which needs more than 1.2.497.0).
    public static let versionText = JumpgateVersion.clientProtocolVersion + "\n"
}
