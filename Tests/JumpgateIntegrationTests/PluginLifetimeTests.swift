import Foundation
import JumpgateWire
import NIOCore
import Testing

/// The AWS CLI killed (SIGKILL: it forwards nothing) does not leave its plugin holding the local port
/// and the session open: the plugin notices its parent is gone and ends the session as Ctrl+C would.
@Suite("session-manager-plugin outliving the AWS CLI", .serialized)
struct PluginLifetimeTests {
    /// Alive and not a zombie (an orphan's new parent may be slow to reap it, or never do).
    static func isRunning(_ pid: Int32) -> Bool {
        guard let state = processState(pid) else { return false }
        return state != "Z"
    }

    @Test("kill -9 the AWS CLI: the plugin terminates the session and exits")
    func parentKilled() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (aws, localPort, sessionID) = try EndToEndTests.awsStartSession(lab, port: echoPort)
            defer { aws.stop() }
            #expect(try await echoRoundTrip(port: localPort, bytes: randomBuffer(1000)).readableBytes == 1000)
            let plugins = aws.childPIDs()
            #expect(plugins.count == 1)
            kill(aws.process.processIdentifier, SIGKILL)
            // The session ends (the plugin's TerminateSession), then the plugin exits.
            #expect(try await EndToEndTests.historyStatus(lab, sessionID, waitingFor: "Terminated") == "Terminated")
            for pid in plugins {
                let deadline = Date().addingTimeInterval(10)
                while Self.isRunning(pid), Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
                #expect(!Self.isRunning(pid), "the plugin \(pid) still runs 10 s after the AWS CLI died")
            }
        }
    }
}
