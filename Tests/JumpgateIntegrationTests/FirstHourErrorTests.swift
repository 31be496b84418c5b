import Foundation
import JumpgateClient
import JumpgateGateway
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

/// The common mistakes of a first hour, each through the real binary: the message says what happened
/// and what to do, and no library type, errno dump or build path reaches the user.
@Suite("First hour: errors that say what to do", .serialized)
struct FirstHourErrorTests {
    /// What never reaches a user: library type names, errno dumps, build paths, Swift debug dumps.
    static let internals = [
        "NIO", "BoringSSL", "errno", ".build/", "checkouts", "Error Domain", "NSCocoaErrorDomain",
        "SingleConnectionFailure", "IOError", "noSuchFilesystemObject", "handshakeFailed", "ChannelError",
        "Optional(", "WireError", "CocoaError", "bind(descriptor",
    ]

    static func expectClean(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for word in Self.internals {
            #expect(!text.contains(word), "'\(word)' reached the user: \(text)", sourceLocation: sourceLocation)
        }
    }

    /// Credentials that sign but that no gateway knows, and none of this machine's AWS settings.
    static let anonymous = [
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_CA_BUNDLE": "",
        "AWS_PROFILE": "", "AWS_ENDPOINT_URL_SSM": "", "AWS_ENDPOINT_URL": "", "AWS_CONFIG_FILE": "/dev/null",
        "JUMPGATE_LOG_LEVEL": "",
    ]

    /// A port nothing listens on (bound, then closed).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        return port
    }

    /// A CA certificate that did not issue the gateway's.
    static func unrelatedCA(in directory: String) throws -> String {
        let path = directory + "/other-ca.pem"
        let other = try GatewayCertificates.generate(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        try other.caCertificatePEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("gateway down: nothing listens there, is the gateway running")
    func gatewayDown() async throws {
        let port = try await Self.freePort()
        let (status, _, errors) = try runJumpgate(
            ["sessions", "list", "--endpoint-url", "https://127.0.0.1:\(port)"],
            environment: Self.anonymous
        )
        #expect(status == 1)
        #expect(errors.hasPrefix("Error: Nothing is listening at https://127.0.0.1:\(port). Is the gateway running?"))
        Self.expectClean(errors)
    }

    @Test("a CA file that does not exist, and one that is not a certificate")
    func caFileProblems() async throws {
        let (status, _, errors) = try runJumpgate(
            ["instances", "list", "--endpoint-url", "https://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem"],
            environment: Self.anonymous
        )
        #expect(status == 1)
        #expect(errors.contains("The CA file /nonexistent/ca.pem does not exist"))
        #expect(errors.contains("DATA_DIR/tls/ca.pem"))
        Self.expectClean(errors)
        let notPEM = NSTemporaryDirectory() + "jumpgate-not-a-ca-\(MessageID.random()).txt"
        try "hello".write(toFile: notPEM, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: notPEM) }
        let (status2, _, errors2) = try runJumpgate(
            ["sessions", "list", "--endpoint-url", "https://127.0.0.1:1", "--ca-file", notPEM],
            environment: Self.anonymous
        )
        #expect(status2 == 1)
        #expect(errors2.contains("holds no PEM certificate"))
        Self.expectClean(errors2)
    }

    @Test("wrong CA, wrong profile, a used-up activation, a busy port, a disallowed target")
    func mistakesAgainstAGateway() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let base = Self.anonymous.merging(lab.environment) { _, new in new }
            // Wrong CA: the gateway's certificate is not trusted.
            let otherCA = try Self.unrelatedCA(in: lab.directory)
            var (status, output, errors) = try runJumpgate(
                ["sessions", "list", "--endpoint-url", lab.url, "--ca-file", otherCA],
                environment: base
            )
            #expect(status == 1)
            #expect(errors.contains("presented a certificate that the CA in \(otherCA) did not issue"))
            #expect(errors.contains("--ca-file DATA_DIR/tls/ca.pem"))
            Self.expectClean(errors)

            // Wrong profile: which profiles there are, and how to name one.
            (status, output, errors) = try runJumpgate(
                ["sessions", "list", "--endpoint-url", lab.url, "--ca-file", lab.caFile, "--profile", "jumpgate-admn"],
                environment: base
            )
            #expect(status == 1)
            #expect(errors.contains("There is no profile 'jumpgate-admn'"))
            #expect(errors.contains("the profiles jumpgate-admin"))
            Self.expectClean(errors)

            // A used-up activation (limit 1, used once).
            let activation = try await lab.ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "RegistrationLimit": 1]
            )
            let register = { (dir: String) in
                try runJumpgate(
                    [
                        "agent", "register", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                        "--activation-id", activation["ActivationId"]?.stringValue ?? "",
                        "--activation-code", activation["ActivationCode"]?.stringValue ?? "",
                        "--state-dir", lab.directory + dir, "--allow", "127.0.0.1:1",
                    ],
                    environment: base
                )
            }
            (status, output, errors) = try register("/agent-a")
            #expect(status == 0, "\(errors)")
            (status, output, errors) = try register("/agent-b")
            #expect(status == 1)
            #expect(errors.contains("The gateway refused the registration (InvalidActivation)"))
            #expect(errors.contains("Create a new activation"))
            Self.expectClean(errors)

            // A busy local port: nothing starts.
            (status, output, errors) = try runJumpgate(
                [
                    "forward", lab.instanceID, "-L", "\(lab.gatewayPort):127.0.0.1:\(echoPort)", "--endpoint-url",
                    lab.url, "--ca-file", lab.caFile,
                ],
                environment: base
            )
            #expect(status == 1)
            #expect(errors.contains("Port \(lab.gatewayPort) on 127.0.0.1 is already in use by another program"))
            #expect(errors.contains("No session was started"))
            Self.expectClean(errors)
            let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(active["Sessions"]?.arrayValue?.isEmpty == true)

            // The same through start-session (the official plugin's wording, then exit 1).
            (status, output, errors) = try runJumpgate(
                [
                    "start-session", "--target", lab.instanceID, "--document-name",
                    "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
                    "host=127.0.0.1,portNumber=\(echoPort),localPortNumber=\(lab.gatewayPort)", "--endpoint-url",
                    lab.url, "--ca-file", lab.caFile,
                ],
                environment: base
            )
            #expect(status == 1)
            #expect(
                output.contains("Cannot perform start session: Port \(lab.gatewayPort) on 127.0.0.1 is already in use")
            )
            Self.expectClean(output + errors)

            // A destination outside the agent's allow-list: the connection is refused and the reason shown.
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort + 1)", "--endpoint-url", lab.url,
                    "--ca-file", lab.caFile, "--exec",
                    "curl --silent --max-time 20 http://127.0.0.1:$JUMPGATE_PORT_1/; exit 0",
                ],
                environment: base
            )
            defer { forward.stop() }
            #expect(try forward.waitForExit(timeout: 30) == 0)
            forward.waitForOutputEnd()
            #expect(
                forward.standardError.contains(
                    "to 127.0.0.1:\(echoPort + 1) failed: 127.0.0.1:\(echoPort + 1) (127.0.0.1) is not in this agent's allow-list"
                ),
                "\(forward.standardError)"
            )
            #expect(
                forward.standardError.contains(
                    "Ask the agent's operator to allow it (jumpgate agent run --allow 127.0.0.1:\(echoPort + 1))"
                )
            )
            Self.expectClean(forward.standardError)
            _ = output
        }
    }

    @Test("the gateway: a busy address and a data directory that cannot be written")
    func gatewayStartProblems() async throws {
        try await EndToEndTests.withLab { lab, _ in
            var (status, _, errors) = try runJumpgate(
                ["server", "--data-dir", lab.directory + "/gw2", "--listen", "127.0.0.1:\(lab.gatewayPort)"],
                environment: Self.anonymous
            )
            #expect(status == 1)
            #expect(errors.contains("already in use"))
            #expect(errors.contains("--listen"))
            Self.expectClean(errors)
            // A data directory below a regular file cannot be created.
            let file = lab.directory + "/a-file"
            try "x".write(toFile: file, atomically: true, encoding: .utf8)
            (status, _, errors) = try runJumpgate(
                ["server", "--data-dir", file + "/gw", "--listen", "127.0.0.1:0"],
                environment: Self.anonymous
            )
            #expect(status == 1)
            #expect(errors.hasPrefix("Error: The gateway could not start: "))
            #expect(errors.contains("--data-dir"))
            Self.expectClean(errors)
            // A data directory whose tls is a file, not a directory.
            let blocked = lab.directory + "/gw3"
            try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)
            try "x".write(toFile: blocked + "/tls", atomically: true, encoding: .utf8)
            (status, _, errors) = try runJumpgate(
                ["server", "--data-dir", blocked, "--listen", "127.0.0.1:0"],
                environment: Self.anonymous
            )
            #expect(status == 1)
            #expect(
                errors.contains("\(blocked)/tls is not a directory; move that file away, or give another --data-dir")
            )
            Self.expectClean(errors)
            // One agent per state directory: a second `agent run` names the first and exits.
            (status, _, errors) = try runJumpgate(
                ["agent", "run", "--state-dir", lab.directory + "/agent"],
                environment: Self.anonymous
            )
            #expect(status == 1)
            #expect(
                errors.contains(
                    "another jumpgate agent (PID \(lab.agent.process.processIdentifier)) runs with the state directory"
                ),
                "\(errors)"
            )
            // And the agent's state directory, before anything is registered.
            (status, _, errors) = try runJumpgate(
                [
                    "agent", "register", "--endpoint-url", lab.url, "--ca-file", lab.caFile, "--activation-id", "x",
                    "--activation-code", "y", "--state-dir", file + "/agent", "--allow", "127.0.0.1:1",
                ],
                environment: Self.anonymous
            )
            #expect(status == 1)
            #expect(errors.contains("The state directory \(file)/agent cannot be created"))
            #expect(errors.contains("--state-dir"))
            Self.expectClean(errors)
        }
    }

    @Test("bad input: one error style, the subcommand's usage, log levels refused")
    func badInput() throws {
        // A validation error shows the subcommand's usage, not the root's.
        var (status, _, errors) = try runJumpgate(["forward", "mi-0123456789abcdef0"], environment: Self.anonymous)
        #expect(status == 64)
        #expect(errors.hasPrefix("Error: Give at least one -L"))
        #expect(errors.contains("Usage: jumpgate forward <target> [-L <[bind:]lport:host:port> ...]"))
        (status, _, errors) = try runJumpgate(
            ["forward", "mi-0123456789abcdef0", "-L", "1213:db"],
            environment: Self.anonymous
        )
        #expect(status == 64)
        #expect(errors.contains("must be [BIND:]LOCALPORT:HOST:PORT"))
        #expect(errors.contains("Usage: jumpgate forward"))
        // --log-level loud is refused, and so is JUMPGATE_LOG_LEVEL=loud.
        (status, _, errors) = try runJumpgate(
            ["agent", "run", "--state-dir", "/nonexistent", "--log-level", "loud"],
            environment: Self.anonymous
        )
        #expect(status == 64)
        #expect(errors.contains("'loud'"))
        #expect(errors.contains("Usage: jumpgate agent run"))
        var environment = Self.anonymous
        environment["JUMPGATE_LOG_LEVEL"] = "loud"
        (status, _, errors) = try runJumpgate(
            ["agent", "run", "--state-dir", "/nonexistent"],
            environment: environment
        )
        #expect(status == 1)
        #expect(errors.hasPrefix("Error: JUMPGATE_LOG_LEVEL='loud' is not a log level."))
        // An expiry in the past is refused before anything is sent.
        (status, _, errors) = try runJumpgate(
            [
                "admin", "create-activation", "--endpoint-url", "https://127.0.0.1:1", "--expiration-date",
                "2020-01-01T00:00:00Z",
            ],
            environment: Self.anonymous
        )
        #expect(status == 64)
        #expect(errors.contains("--expiration-date 2020-01-01T00:00:00Z is in the past"))
        // A missing state directory: what to do.
        environment["JUMPGATE_LOG_LEVEL"] = ""
        (status, _, errors) = try runJumpgate(
            ["agent", "run", "--state-dir", "/nonexistent"],
            environment: environment
        )
        #expect(status == 1)
        #expect(errors.contains("Run 'jumpgate agent register' first."))
        for text in [errors] { Self.expectClean(text) }
    }
}
