import FoundationEssentials
import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a granted port session the way the official plugin does, for both `jumpgate start-session` and
/// the `session-manager-plugin` executable: the official console lines, Ctrl+C sends TerminateSession
/// (flag and API), and unlike the official plugin a failure is reported clearly and exits non-zero.
public enum SessionRunner {
    /// How long the TerminateSession call at the end may take, its connection included.
    public static let terminateTimeout: TimeAmount = .seconds(5)

    /// Returns how the session ended (its `exitStatus` is the process's). `onReady` is called with the
    /// local port once it listens.
    public static func run(
        grant: SessionGrant,
        localPort: Int,
        client: SSMClient,
        console: any ForwarderConsole = StandardOutputConsole(),
        resumeTimeout: TimeAmount = .minutes(5),
        logger: Logger,
        onReady: (@Sendable (Int) -> Void)? = nil
    ) async -> PortForwarder.Outcome {
        let forwarder = PortForwarder(
            grant: grant,
            localPort: localPort,
            caFile: client.configuration.caFile,
            upgradeSigner: client.upgradeSigner,
            console: console,
            logger: logger,
            onAgentStatus: { status in console.agentStatusChanged(status) },
            resume: client.resumeSession(_:askingBlindPath:),
            resumeTimeout: resumeTimeout
        )
        // At a signal: end the session, tell the user at once, and tell the gateway (TerminateSession,
        // bounded: a gone gateway must not hold the user's Ctrl+C for long). Once `run` returns, this is
        // awaited, so the process never exits before the line is written or the call is answered.
        let interrupted = NIOLockedValueBox(false)
        let interrupt = Task {
            _ = await TerminationSignal.wait()
            interrupted.withLockedValue { $0 = true }
            // The session first: after SIGHUP the terminal may be gone, and writing may fail.
            forwarder.terminate()
            console.write("Terminate signal received, exiting.\n")
            _ = try? await client.call(
                "TerminateSession",
                ["SessionId": .string(grant.sessionID)],
                timeout: Self.terminateTimeout
            )
        }
        if let onReady { forwarder.readyPort.whenSuccess(onReady) }
        let outcome: PortForwarder.Outcome
        do {
            outcome = try await forwarder.run()
        } catch {
            outcome = .failed((error as? ClientError)?.description ?? "\(error)")
        }
        let byUser = interrupted.withLockedValue { $0 }
        if byUser {
            await interrupt.value
        } else {
            interrupt.cancel()
        }
        // Unlike the official plugin (which exits 0 whatever happened), the status tells a script how the
        // session ended: 0 by the user, 1 failed here, 2 ended by the other side, a shell's own status when
        // it exited (docs/CLIENT.md).
        switch outcome {
        case .endedByUser, .exited:
            console.write("\n\nExiting session with sessionId: \(grant.sessionID).\n\n")
        case .ended(let reason):
            console.write("\n\nSessionId: \(grant.sessionID) : \(reason)\n\n")
        case .failed(let message):
            console.write("Cannot perform start session: \(message)\n")
            guard !byUser else { break }  // the signal's task called it already
            _ = try? await client.call(
                "TerminateSession",
                ["SessionId": .string(grant.sessionID)],
                timeout: Self.terminateTimeout
            )
        }
        return outcome
    }
}
