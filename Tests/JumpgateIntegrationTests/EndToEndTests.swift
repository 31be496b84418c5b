import Foundation
import JumpgateClient
import JumpgateWire
import NIOCore
import Testing

/// Gateway, agent and client as real processes on 127.0.0.1, forwarding to an echo target.
@Suite("End to end: jumpgate server + agent + start-session", .serialized)
struct EndToEndTests {
    struct Lab {
        var directory: String
        var gateway: ChildProcess
        var agent: ChildProcess
        var url: String
        var caFile: String
        /// A port known to be taken (the gateway's own).
        var gatewayPort: Int
        var instanceID: String
        var environment: [String: String]
        var ssm: SSMClient
        /// The account the lab's processes run as, when not this test's (root's).
        var account: UnprivilegedAccount?

        /// `jumpgate forward` (`--format json`) from a free local port to 127.0.0.1:`port`, once it is ready;
        /// returns it and its local port.
        func forward(to port: Int) throws -> (ChildProcess, Int) {
            let forward = try self.jumpgate(
                "forward",
                [
                    "forward", self.instanceID, "-L", "0:127.0.0.1:\(port)", "--format", "json", "--endpoint-url",
                    self.url, "--ca-file", self.caFile,
                ],
                environment: self.environment
            )
            let ready = try JSONValue(parsing: try forward.waitForLine { $0.contains("\"event\":\"ready\"") })
            guard let localPort = ready["localPort"]?.int64Value else {
                forward.stop()
                throw HarnessError("forward's ready event has no localPort: \(ready)")
            }
            return (forward, Int(localPort))
        }

        /// `jumpgate arguments` as the lab's processes run.
        func jumpgate(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess
        {
            try launchJumpgate(name, arguments, environment: environment, as: self.account)
        }
    }

    /// Starts a gateway, registers and runs an agent allowed to reach `allow`, and waits until it is Online.
    /// The gateway listens on a free port of 127.0.0.1 chosen when it binds; `gatewayPort` learns it
    /// before the agent registers. `unprivileged` runs the gateway and the agent as an account without
    /// privileges (``UnprivilegedAccount``).
    static func startLab(
        allow: [String],
        gatewayArguments: [String] = [],
        gatewayPort: GatewayPort? = nil,
        agentArguments: [String] = [],
        agentEndpoint: String? = nil,
        unprivileged: UnprivilegedAccount.User? = nil
    ) async throws -> Lab {
        // An unprivileged lab lives in /tmp, which every account can reach (TMPDIR might not be).
        let directory =
            (unprivileged != nil ? "/tmp/" : NSTemporaryDirectory()) + "jumpgate-e2e-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // A lab that fails to start leaves nothing behind (an unprivileged one holds a copy of the binary).
        var started = false
        defer { if !started { try? FileManager.default.removeItem(atPath: directory) } }
        let account = try unprivileged.map { try UnprivilegedAccount(owning: directory, as: $0) }
        let gateway = try launchJumpgate(
            "gateway",
            ["server", "--data-dir", directory + "/gw", "--listen", "127.0.0.1:0", "--format", "json"]
                + gatewayArguments,
            as: account
        )
        let ready = try JSONValue(parsing: try gateway.waitForLine { $0.hasPrefix("{") })
        let port = Int(try #require(ready["port"]?.int64Value))
        gatewayPort?.value = port
        let url = try #require(ready["url"]?.stringValue)
        let caFile = try #require(ready["caFile"]?.stringValue)
        let environment = [
            "AWS_SHARED_CREDENTIALS_FILE": try #require(ready["credentialsFile"]?.stringValue),
            "AWS_PROFILE": "jumpgate-admin",
            "HOME": directory, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
        ]
        let ssm = try SSMClient(
            configuration: ClientConfiguration.resolve(
                profile: "jumpgate-admin",
                region: "eu-west-1",
                endpointURL: url,
                caFile: caFile,
                environment: environment
            )
        )
        let activation = try await ssm.call("CreateActivation", ["IamRole": "SSMServiceRole", "RegistrationLimit": 1])
        let (status, output, errors) = try runJumpgate(
            [
                "agent", "register", "--endpoint-url", agentEndpoint ?? url, "--ca-file", caFile,
                "--activation-id", try #require(activation["ActivationId"]?.stringValue),
                "--activation-code", try #require(activation["ActivationCode"]?.stringValue),
                "--state-dir", directory + "/agent", "--name", "e2e-jump",
            ] + allow.flatMap { ["--allow", $0] },
            account: account
        )
        #expect(status == 0, "\(errors)")
        let instanceID = output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(instanceID.hasPrefix("mi-") && instanceID.count == 20)
        let agent = try launchJumpgate(
            "agent",
            ["agent", "run", "--state-dir", directory + "/agent"] + agentArguments,
            as: account
        )
        for _ in 0..<100 {
            let info = try await ssm.call("DescribeInstanceInformation", [:])
            if info["InstanceInformationList"]?.arrayValue?.first?["PingStatus"]?.stringValue == "Online" { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        started = true
        return Lab(
            directory: directory,
            gateway: gateway,
            agent: agent,
            url: url,
            caFile: caFile,
            gatewayPort: port,
            instanceID: instanceID,
            environment: environment,
            ssm: ssm,
            account: account
        )
    }

    /// Runs `body` with an echo target and a lab whose agent may reach `allow` (nil: the echo target), and
    /// stops both afterwards.
    static func withLab(
        allow: [String]? = nil,
        gatewayArguments: [String] = [],
        gatewayPort: GatewayPort? = nil,
        agentArguments: [String] = [],
        agentEndpoint: String? = nil,
        unprivileged: UnprivilegedAccount.User? = nil,
        _ body: (Lab, Int) async throws -> Void
    ) async throws {
        let echo = try await startEchoServer()
        defer { echo.close(promise: nil) }
        let echoPort = try #require(echo.localAddress?.port)
        let lab = try await Self.startLab(
            allow: allow ?? ["127.0.0.1:\(echoPort)"],
            gatewayArguments: gatewayArguments,
            gatewayPort: gatewayPort,
            agentArguments: agentArguments,
            agentEndpoint: agentEndpoint,
            unprivileged: unprivileged
        )
        defer {
            lab.agent.stop()
            lab.gateway.stop()
            try? FileManager.default.removeItem(atPath: lab.directory)
        }
        try await body(lab, echoPort)
    }

    /// The session's status in DescribeSessions History, polled (bounded, 5 s) until it is `wanted`.
    static func historyStatus(_ lab: Lab, _ sessionID: String, waitingFor wanted: String) async throws -> String {
        var status = ""
        for _ in 0..<50 {
            let history = try await lab.ssm.call("DescribeSessions", ["State": "History"])
            let session = history["Sessions"]?.arrayValue?.first { $0["SessionId"]?.stringValue == sessionID }
            status = session?["Status"]?.stringValue ?? ""
            if status == wanted { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return status
    }

    func startSession(
        _ lab: Lab,
        host: String,
        port: Int,
        extraArguments: [String] = []
    ) throws -> (ChildProcess, Int, String) {
        let client = try ChildProcess(
            "start-session",
            [
                "start-session", "--target", lab.instanceID, "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters", "host=\(host),portNumber=\(port),localPortNumber=0", "--endpoint-url", lab.url,
                "--ca-file", lab.caFile,
            ] + extraArguments,
            environment: lab.environment
        )
        let line = try client.waitForLine { $0.hasPrefix("Port ") && $0.contains(" opened for sessionId ") }
        let parts = line.split(separator: " ")
        let localPort = try #require(Int(parts[1]))
        let sessionID = String(parts[5].dropLast())  // "...sessionId <sid>."
        return (client, localPort, sessionID)
    }

    @Test("50 parallel connections and a 256 MiB transfer echo byte-exact; Ctrl+C ends the session")
    func forwardAndTerminate() async throws {
        try await Self.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try self.startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            #expect(client.output.contains("Starting session with SessionId: \(sessionID)"))
            #expect(client.output.contains("Waiting for connections..."))

            #expect(try await parallelEchoes(port: localPort, count: 50, baseSize: 64 * 1024, step: 997) == 50)
            let large = randomBuffer(256 << 20)
            let echoed = try await echoRoundTrip(port: localPort, bytes: large)
            #expect(echoed.readableBytes == large.readableBytes)
            #expect(echoed == large)
            #expect(client.output.contains("Connection accepted for session [\(sessionID)]"))

            let gatewayFlags = ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
            let (listStatus, table, _) = try runJumpgate(
                ["sessions", "list"] + gatewayFlags,
                environment: lab.environment
            )
            #expect(listStatus == 0)
            #expect(table.hasPrefix("SESSION ID"))
            #expect(table.contains(sessionID) && table.contains("Connected"))
            let (_, instances, _) = try runJumpgate(
                ["instances", "list", "--format", "json"] + gatewayFlags,
                environment: lab.environment
            )
            let instanceList = try JSONValue(parsing: instances)["InstanceInformationList"]
            #expect(instanceList?.arrayValue?.first?["InstanceId"]?.stringValue == lab.instanceID)
            #expect(instanceList?.arrayValue?.first?["PingStatus"]?.stringValue == "Online")
            let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            let listed = try #require(
                active["Sessions"]?.arrayValue?.first { $0["SessionId"]?.stringValue == sessionID }
            )
            // What went through, each way (WebSocket payloads: the data plus SSM and smux headers).
            #expect(try #require(listed["JumpgateBytesToTarget"]?.int64Value) > 256 << 20)
            #expect(try #require(listed["JumpgateBytesFromTarget"]?.int64Value) > 256 << 20)
            #expect(table.contains("MiB"))

            client.signal(SIGINT)
            #expect(try client.waitForExit() == 0)
            Self.expectTerminatedByUser(client.output, sessionID)
            #expect(try await Self.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
            try await Self.expectNoAgentRefusals(lab)
        }
    }

    /// The lab's environment for the AWS CLI: Jumpgate's binaries first on PATH (so it finds Jumpgate's
    /// session-manager-plugin), the lab's CA in AWS_CA_BUNDLE (as a user sets it up), and a region.
    static func awsEnvironment(_ lab: Lab) -> [String: String] {
        var environment = lab.environment
        environment["PATH"] =
            ChildProcess.productsDirectory.path + ":"
            + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        environment["AWS_CA_BUNDLE"] = lab.caFile
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        return environment
    }

    /// `aws ssm start-session` to 127.0.0.1:`port` with Jumpgate's plugin on PATH (trusting the lab's CA
    /// through AWS_CA_BUNDLE, as a user sets it up); returns the CLI, the local port and the session id.
    static func awsStartSession(_ lab: Lab, port: Int) throws -> (ChildProcess, Int, String) {
        let aws = try ChildProcess(
            "aws ssm start-session",
            [
                "ssm", "start-session", "--target", lab.instanceID, "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters", "host=127.0.0.1,portNumber=\(port),localPortNumber=0", "--endpoint-url", lab.url,
            ],
            executable: "aws",
            environment: Self.awsEnvironment(lab)
        )
        let line = try aws.waitForLine(timeout: 60) { $0.hasPrefix("Port ") && $0.contains(" opened for sessionId ") }
        let parts = line.split(separator: " ")
        return (aws, try #require(Int(parts[1])), String(parts[5].dropLast()))
    }

    @Test(
        "aws ssm start-session with Jumpgate's plugin on PATH: 20 connections and 256 MiB each way, byte-exact; Ctrl+C ends it"
    )
    func awsCLIWithPlugin() async throws {
        try await Self.withLab { lab, echoPort in
            let (aws, localPort, sessionID) = try Self.awsStartSession(lab, port: echoPort)
            defer { aws.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 20, baseSize: 32 * 1024, step: 131) == 20)
            // 256 MiB each way (up to the echo target and back).
            let large = randomBuffer(256 << 20)
            #expect(try await echoRoundTrip(port: localPort, bytes: large) == large)
            // The AWS CLI ignores Ctrl+C itself and leaves it to the plugin, its child.
            let plugins = aws.childPIDs()
            #expect(plugins.count == 1)
            for pid in plugins { kill(pid, SIGINT) }
            #expect(try aws.waitForExit() == 0)
            Self.expectTerminatedByUser(aws.output, sessionID)
            #expect(try await Self.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
            try await Self.expectNoAgentRefusals(lab)
        }
    }

    /// A client stopped by a signal says so before its last line, as the official plugin does: the line is
    /// written before the process may exit (it once raced the exit and was missing).
    static func expectTerminatedByUser(
        _ output: [String],
        _ sessionID: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let signalled = output.firstIndex(of: "Terminate signal received, exiting.")
        let exiting = output.firstIndex(of: "Exiting session with sessionId: \(sessionID).")
        #expect(signalled != nil && exiting != nil, "\(output)", sourceLocation: sourceLocation)
        if let signalled, let exiting { #expect(signalled < exiting, "\(output)", sourceLocation: sourceLocation) }
    }

    /// An honest session makes the agent refuse nothing. The agent is stopped first: at SIGTERM it sends
    /// whatever refusals it has not reported yet, so /metrics is complete once it has exited.
    static func expectNoAgentRefusals(_ lab: Lab) async throws {
        lab.agent.signal(SIGTERM)
        _ = try lab.agent.waitForExit()
        let text = try await GatewayLimitsTests.metrics(lab)
        for type in SessionRefusal.allCases {
            #expect(
                GatewayLimitsTests.counter(text, "jumpgate_agent_refusals_total", type: type.rawValue) == 0,
                "\(type)"
            )
        }
    }

    @Test("a destination outside the allow-list is refused per connection; the session stays up until terminated")
    func allowListRefusal() async throws {
        // A one-thread gateway (--threads 1) does everything the default one does.
        try await Self.withLab(allow: ["127.0.0.2:1"], gatewayArguments: ["--threads", "1"]) { lab, echoPort in
            let (client, localPort, sessionID) = try self.startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            // The agent refused: the stream is closed with no data.
            #expect(try await bytesBeforeRefusal(port: localPort, bytes: ByteBuffer(string: "hello")) == 0)
            _ = try client.waitForLine { $0.contains("Connection to destination port failed, check SSM Agent logs.") }
            // A Jumpgate agent also says why (connect-errors), on the line after the official one.
            let why = try client.waitForLine { $0.hasPrefix("The agent says: ") }
            #expect(why.contains("127.0.0.1:\(echoPort)") && why.contains("not in this agent's allow-list"), "\(why)")
            #expect(client.process.isRunning)
            #expect(lab.agent.waitForStandardError(containing: "not in this agent's allow-list"))
            // jumpgate forward reports it as an event (--format json).
            let (forward, forwardPort) = try lab.forward(to: echoPort)
            defer { forward.stop() }
            #expect(try await bytesBeforeRefusal(port: forwardPort, bytes: ByteBuffer(string: "hi")) == 0)
            let failed = try JSONValue(
                parsing: try forward.waitForLine { $0.contains("\"event\":\"connect-failed\"") }
            )
            #expect(failed["destination"]?.stringValue == "127.0.0.1:\(echoPort)")
            #expect(failed["reason"]?.stringValue?.contains("allow-list") == true)
            // jumpgate sessions terminate ends it from the API side; the client prints the reason and exits.
            let (terminateStatus, terminated, _) = try runJumpgate(
                ["sessions", "terminate", sessionID, "--endpoint-url", lab.url, "--ca-file", lab.caFile],
                environment: lab.environment
            )
            #expect(terminateStatus == 0)
            #expect(terminated.contains("Terminated \(sessionID)"))
            #expect(try client.waitForExit() == 2, "terminated from the API: exit status 2")
            #expect(
                client.output.contains {
                    $0.contains("SessionId: \(sessionID) : Session terminated by jumpgate-admin.")
                }
            )
        }
    }

    /// Runs `forward --exec` with a command (`prefix`, then a background sleep whose pid it writes to a file),
    /// sends forward `signal`, and waits (bounded) for forward to exit 0 and for the sleep to be gone.
    static func execGroupStopped(
        _ lab: Lab,
        echoPort: Int,
        name: String,
        prefix: String,
        by signal: Int32
    ) async throws {
        let pidFile = NSTemporaryDirectory() + "jumpgate-exec-\(name)-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let forward = try ChildProcess(
            "forward --exec (\(name))",
            [
                "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "--endpoint-url", lab.url, "--ca-file",
                lab.caFile, "--exec",
                prefix + "sleep 300 & echo $! > \(pidFile).tmp && mv \(pidFile).tmp \(pidFile); wait",
            ],
            environment: lab.environment
        )
        defer { forward.stop() }
        var sleeper: pid_t?
        try await ConnectionRecordsTests.eventually("the --exec command's pid file (\(name))") {
            sleeper = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap {
                pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            return sleeper != nil
        }
        let sleeperPID = try #require(sleeper)
        #expect(kill(sleeperPID, 0) == 0)
        forward.signal(signal)
        #expect(try forward.waitForExit() == 0)
        try await ConnectionRecordsTests.eventually("the --exec command's child to be stopped (\(name))") {
            // Gone, or a zombie that whoever adopted it has not reaped yet.
            guard let state = processState(sleeperPID) else { return true }
            return state == "Z"
        }
    }

    @Test(
        "jumpgate forward: two forwards with JSON readiness, --bind 0.0.0.0, --exec, a busy port fails before any session"
    )
    func forward() async throws {
        try await Self.withLab { lab, echoPort in
            let gatewayFlags = ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
            let forward = try ChildProcess(
                "forward",
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "-L", "0.0.0.0:0:127.0.0.1:\(echoPort)",
                    "--format", "json",
                ] + gatewayFlags,
                environment: lab.environment
            )
            defer { forward.stop() }
            _ = try forward.waitForLine { $0.contains("\"event\":\"ready\"") && $0.contains("0.0.0.0") }
            let ready = try forward.output.filter { $0.contains("\"event\":\"ready\"") }.map {
                try JSONValue(parsing: $0)
            }
            #expect(ready.count == 2)
            #expect(ready.map { $0["localAddress"]?.stringValue } == ["127.0.0.1", "0.0.0.0"])
            #expect(Set(ready.compactMap { $0["sessionId"]?.stringValue }).count == 2)  // one session per forward
            for object in ready {
                let port = try #require(object["localPort"]?.int64Value)
                #expect(port > 0)
                #expect(try await parallelEchoes(port: Int(port), count: 5, baseSize: 4096, step: 17) == 5)
            }
            _ = try forward.waitForLine { $0.contains("\"event\":\"closed\"") }
            forward.signal(SIGINT)
            #expect(try forward.waitForExit() == 0)
            #expect(!forward.standardError.contains("connections open"))  // no status line off a terminal
            for object in ready {
                let sessionID = try #require(object["sessionId"]?.stringValue)
                #expect(try await Self.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
            }
            // forward waits for its TerminateSession calls before it exits: each session's is on record.
            let (auditStatus, auditText, _) = try runJumpgate(
                ["audit", "list", "--event", "TerminateSession", "--format", "json"] + gatewayFlags,
                environment: lab.environment
            )
            #expect(auditStatus == 0)
            let terminated = Set(
                (try JSONValue(parsing: auditText).arrayValue ?? []).compactMap {
                    $0["requestParameters"]?["SessionId"]?.stringValue
                }
            )
            for object in ready {
                let sessionID = try #require(object["sessionId"]?.stringValue)
                #expect(terminated.contains(sessionID), "\(terminated)")
            }

            // --exec runs once both are ready, with the ports in its environment; its exit ends the sessions.
            let (execStatus, _, _) = try runJumpgate(
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "-L", "0:127.0.0.1:\(echoPort)",
                    "--exec", "test -n \"$JUMPGATE_PORT_1\" && test -n \"$JUMPGATE_PORT_2\" && exit 7",
                ] + gatewayFlags,
                environment: lab.environment
            )
            #expect(execStatus == 7)
            // The command holds nothing of forward's (its listeners and TLS connections are not close-on-exec
            // in NIO): only 0, 1, 2 and the directory ls opens, 3.
            let (fdStatus, fdOutput, fdErrors) = try runJumpgate(
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)",
                    "--exec", "echo fds: $(ls /proc/self/fd | tr '\\n' ' ')",
                ] + gatewayFlags,
                environment: lab.environment
            )
            #expect(fdStatus == 0, "\(fdErrors)")
            let fdLine = fdOutput.split(separator: "\n").first { $0.hasPrefix("fds: ") }
            #expect(fdLine?.dropFirst(5).split(separator: " ") == ["0", "1", "2", "3"], "\(fdOutput)")

            // Ctrl+C while --exec runs: forward ends its session, stops the command with everything it
            // started (its process group: the background sleep, the shell's child, not forward's) and exits 0.
            try await Self.execGroupStopped(lab, echoPort: echoPort, name: "sleeper", prefix: "", by: SIGINT)
            // A hangup while --exec runs a command that ignores SIGTERM (the sleep inherits the shell's trap):
            // forward ends its session, and SIGKILL reaches the command's group 5 s after the SIGTERM.
            try await Self.execGroupStopped(
                lab,
                echoPort: echoPort,
                name: "stubborn",
                prefix: "trap '' TERM; ",
                by: SIGHUP
            )

            // A port that cannot be bound: non-zero exit, the reason, and no session started.
            let before = try await lab.ssm.call("DescribeSessions", ["State": "Active"])["Sessions"]?.arrayValue?.count
            let (busyStatus, _, busyError) = try runJumpgate(
                [
                    "forward", lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "-L",
                    "\(lab.gatewayPort):127.0.0.1:\(echoPort)",
                ] + gatewayFlags,
                environment: lab.environment
            )
            #expect(busyStatus == 1)
            #expect(busyError.contains("Port \(lab.gatewayPort) on 127.0.0.1 is already in use"))
            #expect(busyError.contains("No session was started"))
            let after = try await lab.ssm.call("DescribeSessions", ["State": "Active"])["Sessions"]?.arrayValue?.count
            #expect(before == after)
        }
    }

    @Test("jumpgate forward on a terminal shows one status line: connections and bytes each way")
    func forwardStatusLine() async throws {
        try await Self.withLab { lab, echoPort in
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/testing/run_in_pty.py")
            let forward = try ChildProcess(
                "forward on a terminal",
                [
                    script.path, "6", ChildProcess.productsDirectory.appendingPathComponent("jumpgate").path, "forward",
                    lab.instanceID, "-L", "0:127.0.0.1:\(echoPort)", "--endpoint-url", lab.url, "--ca-file", lab.caFile,
                ],
                executable: "python3",
                environment: lab.environment
            )
            defer { forward.stop() }
            let ready = try forward.waitForLine { $0.contains("Forwarding 127.0.0.1:") }
            let address = try #require(ready.split(separator: " ").dropFirst().first)
            let port = try #require(Int(address.split(separator: ":").last ?? ""))
            #expect(try await parallelEchoes(port: port, count: 1, baseSize: 100 * 1024, step: 0) == 1)
            #expect(try forward.waitForExit(timeout: 20) == 0)
            let screen = forward.outputText
            // Redrawn in place (carriage return, erase line), and gone at the end.
            #expect(screen.contains("\r\u{1B}[K0 connections open (1 in all), 100 KiB up, 100 KiB down"), "\(screen)")
            #expect(screen.hasSuffix("\r\u{1B}[K"), "the line is erased at the end: \(screen.suffix(200))")
        }
    }

    @Test("SIGTERM drains the agent: each open session's client is told why, and the agent exits")
    func agentDrain() async throws {
        try await Self.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try self.startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 1024, step: 1) == 2)
            lab.agent.signal(SIGTERM)
            #expect(try lab.agent.waitForExit() == 0)
            #expect(try client.waitForExit() == 2, "the agent shut down: exit status 2")
            #expect(
                client.output.contains {
                    $0.contains("SessionId: \(sessionID) : The agent on \(lab.instanceID) is shutting down.")
                }
            )
            #expect(try await Self.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
        }
    }

    @Test("the API rejects a wrong secret with an AWS-style error")
    func wrongCredentials() async throws {
        try await Self.withLab(allow: ["127.0.0.1:1"]) { lab, _ in
            var environment = lab.environment
            let bad = lab.directory + "/bad.credentials"
            try "[jumpgate-admin]\naws_access_key_id = AKJGNOTAKEY0000000000\naws_secret_access_key = nope\n".write(
                toFile: bad,
                atomically: true,
                encoding: .utf8
            )
            environment["AWS_SHARED_CREDENTIALS_FILE"] = bad
            let (status, _, errors) = try runJumpgate(
                [
                    "start-session", "--target", lab.instanceID, "--parameters", "portNumber=22", "--endpoint-url",
                    lab.url,
                    "--ca-file", lab.caFile,
                ],
                environment: environment
            )
            #expect(status != 0)
            #expect(
                errors.contains(
                    "An error occurred (UnrecognizedClientException) when calling the StartSession operation"
                )
            )
        }
    }
}
