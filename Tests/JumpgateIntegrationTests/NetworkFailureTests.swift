import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateAgent

/// Errors sorted into what a person can act on, and the sentences built from them.
@Suite("NetworkFailure and FailureText")
struct NetworkFailureTests {
    /// The agent's sentence for db.internal:5432 when these addresses failed with these errno values.
    static func connectFailure(_ failures: [(address: String, errno: Int32)]) -> String {
        TargetDialer.connectFailure(
            host: "db.internal",
            port: 5432,
            timeout: .seconds(10),
            failures: failures.map { ($0.address, IOError(errnoCode: $0.errno, reason: "connect")) }
        )
    }

    @Test("the agent's failed connects name their cause, each errno a sentence of its own")
    func agentConnectFailures() {
        func text(_ errno: Int32) -> String { Self.connectFailure([("10.0.0.5:5432", errno)]) }
        #expect(text(ECONNREFUSED) == "cannot connect to db.internal:5432: nothing listens there (connection refused)")
        #expect(text(ETIMEDOUT) == "cannot connect to db.internal:5432: timed out after 10 s without an answer")
        #expect(text(EHOSTUNREACH) == "cannot connect to db.internal:5432: no route from the agent's host")
        #expect(
            text(ECONNRESET).hasSuffix(
                "the connection was reset or closed as it opened (a server restarting or at its connection limit, or this agent stopping)"
            )
        )
        #expect(
            text(EADDRNOTAVAIL).hasSuffix(
                "the agent's host has no local port left for it (too many connections, or in TIME_WAIT)"
            )
        )
        #expect(text(EACCES).hasSuffix("the agent's host does not permit it (a firewall rule, or a broadcast address)"))
        // Every errno the sorting names gets its own sentence: none falls back to the vague one.
        for errno in [
            ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNRESET, EPIPE, ECONNABORTED,
            EADDRINUSE, EADDRNOTAVAIL, EACCES, EPERM, EMFILE,
        ] {
            #expect(!text(errno).hasSuffix("the connection failed"), "errno \(errno): \(text(errno))")
        }
    }

    @Test("a destination whose addresses failed differently names each reason with its addresses")
    func agentConnectFailuresPerAddress() {
        #expect(
            Self.connectFailure([("[2001:db8::5]:5432", ENETUNREACH), ("10.0.0.5:5432", ECONNREFUSED)])
                == "cannot connect to db.internal:5432 at any of its addresses: [2001:db8::5]:5432: no route from the agent's host; 10.0.0.5:5432: nothing listens there (connection refused)"
        )
        // Addresses that failed alike are named together, in the order their reason first came.
        #expect(
            Self.connectFailure([
                ("10.0.0.5:5432", ECONNREFUSED), ("[2001:db8::5]:5432", ENETUNREACH), ("10.0.0.6:5432", ECONNREFUSED),
            ])
                == "cannot connect to db.internal:5432 at any of its addresses: 10.0.0.5:5432, 10.0.0.6:5432: nothing listens there (connection refused); [2001:db8::5]:5432: no route from the agent's host"
        )
        // The same reason everywhere is said once, as for one address.
        #expect(
            Self.connectFailure([("[::1]:5432", ECONNREFUSED), ("127.0.0.1:5432", ECONNREFUSED)])
                == "cannot connect to db.internal:5432: nothing listens there (connection refused)"
        )
        #expect(Self.connectFailure([]) == "cannot connect to db.internal:5432: no address answered")
    }

    @Test("errno values and NIO errors sort into the failures people can act on")
    func classification() {
        #expect(NetworkFailure(errno: ECONNREFUSED) == .refused)
        #expect(NetworkFailure(errno: EHOSTUNREACH) == .unreachable)
        #expect(NetworkFailure(errno: ENETUNREACH) == .unreachable)
        #expect(NetworkFailure(errno: ETIMEDOUT) == .timedOut)
        #expect(NetworkFailure(errno: ECONNRESET) == .closed)
        #expect(NetworkFailure(errno: EADDRINUSE) == .addressInUse)
        #expect(NetworkFailure(errno: EACCES) == .permissionDenied)
        #expect(NetworkFailure(errno: EADDRNOTAVAIL) == .addressNotAvailable)
        #expect(NetworkFailure(errno: EMFILE) == .other("too many open files"))
        #expect(NetworkFailure(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == .refused)
        #expect(NetworkFailure(ChannelError.connectTimeout(.seconds(10))) == .timedOut)
        #expect(NetworkFailure(ChannelError.eof) == .closed)
        #expect(
            NetworkFailure(WireError(.invalidWebSocketFrame, "the server refused the WebSocket upgrade: HTTP 404"))
                == .answered("the server refused the WebSocket upgrade: HTTP 404")
        )
    }

    @Test("a real refused connection and a real busy port, through NIO")
    func realErrors() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        do {
            _ = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: port).get()
            Issue.record("binding a bound port succeeded")
        } catch {
            #expect(NetworkFailure(error) == .addressInUse, "\(error)")
        }
        try await server.close()
        do {
            _ = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
            Issue.record("connecting to a closed port succeeded")
        } catch {
            #expect(NetworkFailure(error) == .refused, "\(error)")
        }
    }

    @Test("every sentence says what to do and names no library")
    func sentences() {
        let failures: [NetworkFailure] = [
            .refused, .unreachable, .timedOut, .nameNotResolved, .untrustedCertificate, .wrongHostname, .notTLS,
            .closedEarly, .closed, .addressInUse, .permissionDenied, .addressNotAvailable, .answered("x"),
            .other("y"),
        ]
        for failure in failures {
            for text in [
                FailureText.reachingGateway("https://gw:8443", caFile: "/ca.pem", failure),
                FailureText.binding(host: "::1", port: 1213, failure),
            ] {
                #expect(text.hasSuffix(".") || text.contains("ss -ltnp"), "\(text)")
                for word in FirstHourErrorTests.internals { #expect(!text.contains(word), "\(text)") }
            }
        }
        #expect(FailureText.binding(host: "::1", port: 80, .permissionDenied).contains("[::1]:80"))
        #expect(
            FailureText.reachingGateway("https://gw:8443", caFile: nil, .untrustedCertificate).contains("system's CAs")
        )
    }

    @Test("CA files: missing, a directory, not PEM, and a good one")
    func caFiles() throws {
        let directory = NSTemporaryDirectory() + "jumpgate-ca-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(FailureText.caFileProblem(directory + "/missing.pem")?.contains("does not exist") == true)
        #expect(FailureText.caFileProblem(directory)?.contains("not a regular file") == true)
        try "not a certificate".write(toFile: directory + "/bad.pem", atomically: true, encoding: .utf8)
        #expect(FailureText.caFileProblem(directory + "/bad.pem")?.contains("holds no PEM certificate") == true)
        try "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(
            toFile: directory + "/good.pem",
            atomically: true,
            encoding: .utf8
        )
        #expect(FailureText.caFileProblem(directory + "/good.pem") == nil)
    }

    /// awscli 1.46.1+ (customizations/sessionmanager.py) warns "outdated SessionManagerPlugin" unless the
    /// plugin's `--version`, whitespace removed, matches ^\d+(\.\d+){0,3}$ and is >= 1.2.764.0 compared
    /// part by part as integers; above 1.2.497.0 it passes the response in an environment variable.
    @Test("the plugin's --version passes awscli's outdated-plugin check and selects the env-var mode")
    func pluginVersion() throws {
        let version = PluginInvocation.versionText.filter { !$0.isWhitespace }
        #expect(version.range(of: #"^\d+(\.\d+){0,3}$"#, options: .regularExpression) != nil)
        func parts(_ text: String) -> [Int] {
            let numbers = text.split(separator: ".").map { Int($0) ?? 0 }
            return numbers + Array(repeating: 0, count: max(0, 4 - numbers.count))
        }
        #expect(!parts(version).lexicographicallyPrecedes(parts("1.2.764.0")))
        #expect(parts("1.2.497.0").lexicographicallyPrecedes(parts(version)))
        #expect(JumpgateVersion.clientProtocolVersion == version)
    }
}
