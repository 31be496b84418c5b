import ArgumentParser
import JumpgateWire

@main
struct JumpgateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jumpgate",
        abstract:
            "A self-hostable Session Manager: reach private databases, queues and services through an agent that only dials out.",
        discussion: """
            ENVIRONMENT
              AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL  the gateway, when --endpoint-url is not given
              AWS_CA_BUNDLE, SSL_CERT_FILE            the gateway's CA, when --ca-file is not given
              AWS_PROFILE                             the profile, when --profile is not given
              AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                                                      credentials (unless --profile names a profile)
              AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE
                                                      the AWS files (a gateway writes DATA_DIR/admin.credentials
                                                      and DATA_DIR/aws.config for its administrator)
              AWS_REGION, AWS_DEFAULT_REGION          the region to sign for (any works)
              JUMPGATE_LOG_LEVEL                      the log level, when --log-level is not given
              JUMPGATE_RESUME_TIMEOUT                 session-manager-plugin only: how long to resume

            EXIT STATUS
              0  done; a session ended by the user (Ctrl+C, SIGTERM, the end of --exec)
              1  failed: the error line says what happened and what to do
              2  a session was ended by the other side (terminated, idle timeout, agent gone)
              64 a command line that does not parse (the usage follows)
              With --exec, forward exits with the command's status.

            SHELL COMPLETION
              jumpgate --generate-completion-script bash > /etc/bash_completion.d/jumpgate   (or zsh, fish)
            """,
        version: JumpgateVersion.product,
        subcommands: [
            ServerCommand.self, AgentCommand.self, StartSessionCommand.self, ForwardCommand.self, SessionsCommand.self,
            InstancesCommand.self, AdminCommand.self, AuditCommand.self, DebugCommand.self, VersionCommand.self,
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
