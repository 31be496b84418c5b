import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// `jumpgate debug load` (what scripts/bench-scale runs) against a real gateway, small: the simulated
/// agents connect from their own addresses, every session and connection is made and verified, and the
/// sessions end when the load stops.
@Suite("jumpgate debug load: simulated agents and sessions against a real gateway", .serialized)
struct LoadCommandTests {
    /// The local IPv4 addresses of established TCP connections to `port` on 127.0.0.1 (from /proc/net/tcp).
    static func sources(connectedTo port: Int) throws -> [String] {
        // Read to the end with read(2): /proc files report a size of 0, and the table is long after the
        // suites that open thousands of connections.
        let fd = open("/proc/net/tcp", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HarnessError("cannot open /proc/net/tcp") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        let table = String(decoding: bytes, as: UTF8.self)
        let remote = String(format: "0100007F:%04X", port)
        return table.split(separator: "\n").dropFirst().compactMap { row in
            let fields = row.split(separator: " ")
            guard fields.count > 3, fields[2] == remote, fields[3] == "01" else { return nil }
            // Little-endian hex: 0200007F is 127.0.0.2.
            let hex = fields[1].prefix(8)
            guard let value = UInt32(hex, radix: 16) else { return nil }
            return [0, 8, 16, 24].map { String(value >> $0 & 0xFF) }.joined(separator: ".")
        }
    }

    @Test("4 agents on 2 addresses and 3 sessions x 2 connections: all up, every round trip verified, all ended")
    func smallLoad() async throws {
        try await EndToEndTests.withLab { lab, _ in
            let echo = try ChildProcess("load-echo", ["debug", "load", "echo"])
            defer { echo.stop() }
            let port = try #require(try JSONValue(parsing: echo.waitForLine { $0.hasPrefix("{") })["port"]?.int64Value)
            let activation = try await lab.ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "RegistrationLimit": 4]
            )
            let gateway = ["--endpoint-url", lab.url, "--ca-file", lab.caFile]
            let agents = try ChildProcess(
                "load-agents",
                [
                    "debug", "load", "agents", "--count", "4", "--sources", "2", "--first-source", "127.0.0.2",
                    "--state-dir", lab.directory + "/load", "--allow", "127.0.0.1:\(port)",
                    "--activation-id", try #require(activation["ActivationId"]?.stringValue),
                    "--activation-code", try #require(activation["ActivationCode"]?.stringValue),
                ] + gateway,
                environment: lab.environment
            )
            defer { agents.stop() }
            let connected = try JSONValue(parsing: agents.waitForLine(timeout: 60) { $0.contains("\"connected\"") })
            #expect(connected["agents"]?.int64Value == 4)
            // Each agent's control channel comes from its own address, two agents per address.
            let sources = try Self.sources(connectedTo: lab.gatewayPort)
            #expect(sources.filter { $0 == "127.0.0.2" }.count >= 2, "\(sources)")
            #expect(sources.filter { $0 == "127.0.0.3" }.count >= 2, "\(sources)")
            let online = try await lab.ssm.call("DescribeInstanceInformation", [:])
            let names = online["InstanceInformationList"]?.arrayValue?.compactMap { $0["Name"]?.stringValue } ?? []
            #expect(Set(names).isSuperset(of: ["load-0", "load-1", "load-2", "load-3"]), "\(names)")

            let sessions = try ChildProcess(
                "load-sessions",
                [
                    "debug", "load", "sessions", "--targets", lab.directory + "/load/instances", "--sessions", "3",
                    "--connections", "2", "--destination", "127.0.0.1:\(port)",
                ] + gateway,
                environment: lab.environment
            )
            defer { sessions.stop() }
            let ready = try JSONValue(parsing: sessions.waitForLine(timeout: 60) { $0.contains("\"ready\"") })
            #expect(ready["sessions"]?.int64Value == 3)
            #expect(ready["sessionFailures"]?.int64Value == 0)
            #expect(ready["connections"]?.int64Value == 6)
            #expect(ready["connectionFailures"]?.int64Value == 0)
            func milliseconds(_ value: JSONValue?) -> Double {
                switch value {
                case .double(let d): d
                case .integer(let i): Double(i)
                default: -1
                }
            }
            #expect(milliseconds(ready["readyP50"]) > 0)
            #expect(milliseconds(ready["firstRoundTripP50"]) > 0)
            #expect(milliseconds(ready["firstRoundTripP99"]) >= milliseconds(ready["firstRoundTripP50"]))
            // Each session's data channel comes from its own address (127.0.1.1 and up by default).
            let channels = try Self.sources(connectedTo: lab.gatewayPort)
            #expect(Set(["127.0.1.1", "127.0.1.2", "127.0.1.3"]).isSubset(of: channels), "\(channels)")
            let active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(active["Sessions"]?.arrayValue?.count == 3)

            // SIGTERM: the load closes its connections and terminates its sessions.
            sessions.signal(SIGTERM)
            #expect(try sessions.waitForExit() == 0)
            let left = try await lab.ssm.call("DescribeSessions", ["State": "Active"])
            #expect(left["Sessions"]?.arrayValue?.isEmpty == true)
        }
    }
}
