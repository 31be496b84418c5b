import Foundation
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// The agent's end of a shell session: the session's one stream is a login shell on a pseudo-terminal of
/// its own, under the run-as account (``ShellAccounts``). The client's size is applied to the terminal, and
/// the session ends once the shell's terminal closes and its exit status is known. Lives on the session's
/// event loop (created there; callbacks from elsewhere come back through `NIOLoopBound`).
final class ShellSessionDelegate: PortSessionDelegate {
    let runner: AgentRunner
    let sessionID: String
    let eventLoop: any EventLoop
    var logger: Logger

    /// The shell, once started.
    var process: PseudoTerminalProcess?
    /// The PTY's channel while it is open: the master descriptor is only used (resized) while it is.
    var terminal: (any Channel)?
    /// The latest size the client sent (applied at the start if it came before).
    var size: TerminalSize?
    /// Completed by the thread that waits for the shell (it reaps it).
    var exit: EventLoopFuture<PseudoTerminalProcess.ExitStatus>?
    /// Whether the shell is reaped (on the event loop): from then on its pid is never signalled.
    var reaped = false
    /// Whether the PTY's master descriptor is open (from the spawn until its channel closes).
    var masterOpen = false
    /// The PTY channel's first handler, which counts the reads (the drain after the shell's exit).
    var boundary: UTF8BoundaryHandler?
    var ended = false

    /// How long a shell has to exit after SIGHUP when its session ends, before SIGKILL.
    static let hangupGrace = TimeAmount.seconds(5)
    /// After the shell exited, the terminal is hung up once it gave no output for this long while the
    /// session could send, or after this many such ticks of steady output (a background job writing on).
    static let exitDrainTime = TimeAmount.milliseconds(200)
    static let exitDrainLimit = 50

    init(runner: AgentRunner, sessionID: String, eventLoop: any EventLoop) {
        self.runner = runner
        self.sessionID = sessionID
        self.eventLoop = eventLoop
        var logger = runner.logger
        logger[metadataKey: "jumpgate.session_id"] = "\(sessionID)"
        self.logger = logger
    }

    func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {
        self.logger.info(
            "handshake complete",
            metadata: [
                "session_type": "\(negotiated.sessionType)", "extensions": "\(negotiated.extensions)",
                "client": "\(negotiated.clientVersion)",
            ]
        )
    }

    /// The handshake is done: the account is resolved (and the default one created) on a thread, then the
    /// shell starts on the event loop and its terminal becomes the session's stream.
    func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        let agentIsRoot = geteuid() == 0
        let configured = self.runner.options.shellUser
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        // The password database (and useradd) off the event loop.
        NIOThreadPool.singleton.runIfActive(eventLoop: self.eventLoop) { () throws -> (ShellAccount, Bool) in
            let choice = ShellAccounts.choose(
                configured: configured,
                agentIsRoot: agentIsRoot,
                agentUser: ShellAccounts.current()?.name ?? "uid \(geteuid())"
            )
            let account = try ShellAccounts.resolve(try choice.get())
            var isDirectory: ObjCBool = false
            let homeExists = FileManager.default.fileExists(atPath: account.home, isDirectory: &isDirectory)
            return (account, homeExists && isDirectory.boolValue)
        }.whenComplete { result in
            let (delegate, session) = bound.value
            switch result {
            case .success(let (account, homeExists)):
                delegate.start(session, id, account: account, agentIsRoot: agentIsRoot, homeExists: homeExists)
            case .failure(let error):
                delegate.refuse(session, id, reason: "\(error)")
            }
        }
    }

    func start(_ session: PortSession, _ id: SmuxStreamID, account: ShellAccount, agentIsRoot: Bool, homeExists: Bool) {
        guard !self.ended else { return }
        let launch = ShellAccounts.launch(
            for: account,
            agentIsRoot: agentIsRoot,
            sessionID: self.sessionID,
            size: self.size,
            homeExists: homeExists
        )
        let process: PseudoTerminalProcess
        do {
            process = try PseudoTerminalProcess.spawn(launch)
        } catch {
            return self.refuse(session, id, reason: "\(error)")
        }
        self.process = process
        self.logger.info("shell started", metadata: ["user": "\(account.name)", "pid": "\(process.pid)"])
        self.masterOpen = true
        // One thread per shell waits for it to end without reaping it; the event loop reaps it, and from
        // then on never signals its pid (which may be reused).
        let ended = self.eventLoop.makePromise(of: Void.self)
        Thread.detachNewThread {
            process.waitUntilEnded()
            ended.succeed(())
        }
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        let exit = ended.futureResult.map { () -> PseudoTerminalProcess.ExitStatus in
            guard let status = process.exitStatusIfEnded() else {
                // waitid said it ended but waitpid found nothing to reap: it is not known to be gone, so its
                // pid may still be signalled (reaped stays false).
                bound.value.0.logger.warning("the shell's exit status could not be read")
                return .exited(-1)
            }
            bound.value.0.reaped = true
            return status
        }
        self.exit = exit
        // The shell exited: the session ends with it, even if a job it left in the background still holds
        // the terminal. What it wrote is read first: the terminal is hung up once no output came for
        // ``exitDrainTime`` while the session could send (or after ``exitDrainLimit`` of steady output).
        exit.whenSuccess { _ in bound.value.0.hangUpWhenDrained(bound.value.1, reads: -1, ticks: 0) }
        // The second descriptor NIO needs, close-on-exec like the master.
        let output = fcntl(process.master, F_DUPFD_CLOEXEC, 0)
        guard output >= 0 else {
            close(process.master)
            self.masterOpen = false
            return self.refuse(
                session,
                id,
                reason: "no descriptor for the terminal: \(String(cString: strerror(errno)))"
            )
        }
        let boundary = UTF8BoundaryHandler()
        self.boundary = boundary
        // The channel is made on this event loop (the bootstrap's group is it), where the handler lives.
        let boundaryOnLoop = NIOLoopBound(boundary, eventLoop: self.eventLoop)
        NIOPipeBootstrap(group: self.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(boundaryOnLoop.value)
                }
            }
            .takingOwnershipOfDescriptors(input: process.master, output: output)
            .whenComplete { result in
                let (delegate, session) = bound.value
                switch result {
                case .success(let channel):
                    delegate.terminal = channel
                    channel.closeFuture.whenComplete { _ in
                        bound.value.0.terminal = nil
                        bound.value.0.masterOpen = false
                    }
                    // A size that came while the terminal was being set up.
                    if let size = delegate.size { try? PseudoTerminalProcess.resize(master: process.master, to: size) }
                    do {
                        try session.attach(channel, to: id)
                    } catch {
                        channel.close(promise: nil)
                    }
                case .failure(let error):
                    // NIO closes both descriptors when it fails once it took them; closing them again here
                    // could close another session's reused descriptor.
                    delegate.masterOpen = false
                    delegate.refuse(session, id, reason: "the terminal could not be read: \(error)")
                }
            }
    }

    /// After the shell exited: hangs the terminal up once it has been quiet for a tick while the session
    /// could send its output (`reads`: the count at the last tick).
    func hangUpWhenDrained(_ session: PortSession, reads: Int, ticks: Int) {
        guard let terminal = self.terminal else { return }
        let now = self.boundary?.reads ?? 0
        let waiting = session.terminalOutputWaits
        if (now == reads && !waiting) || ticks >= Self.exitDrainLimit {
            terminal.close(promise: nil)
            return
        }
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        self.eventLoop.scheduleTask(in: Self.exitDrainTime) {
            bound.value.0.hangUpWhenDrained(bound.value.1, reads: now, ticks: waiting ? ticks : ticks + 1)
        }
    }

    func refuse(_ session: PortSession, _ id: SmuxStreamID, reason: String) {
        self.logger.warning("shell could not start", metadata: ["reason": "\(reason)"])
        session.refuse(id, reason: reason)
    }

    func terminalResized(_ session: PortSession, to size: TerminalSize) {
        self.size = size
        // Not once the channel closed its descriptor (its number may be reused before closeFuture runs).
        guard let process = self.process, self.masterOpen, self.terminal?.isActive ?? true else { return }
        do {
            try PseudoTerminalProcess.resize(master: process.master, to: size)
        } catch {
            self.logger.debug("resize failed", metadata: ["error": "\(error)"])
        }
    }

    /// The terminal closed (the shell and everything it started on it are gone): the session ends with the
    /// shell's exit status.
    func terminalEnded(_ session: PortSession) {
        guard let exit = self.exit else {
            return session.endTerminal(exitStatus: nil, reason: "The shell's terminal closed.")
        }
        exit.assumeIsolated().whenSuccess { status in
            switch status {
            case .exited(let code):
                session.endTerminal(exitStatus: code, reason: "The shell exited with status \(code).")
            case .signalled(let signal):
                session.endTerminal(exitStatus: 128 + signal, reason: "The shell was killed by signal \(signal).")
            }
        }
    }

    /// However the session ended, the shell goes too: SIGHUP to its process group (as a terminal hanging up
    /// does), then SIGKILL if it is still there after ``hangupGrace``.
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        self.ended = true
        self.runner.sessionDidEnd(self.sessionID, reason: reason, byPeer: byPeer)
        guard let process = self.process, !self.reaped else { return }
        kill(-process.pid, SIGHUP)
        kill(process.pid, SIGHUP)
        // The shell is reaped on this event loop, which sets `reaped` at once: a pid is never signalled
        // once its process is gone.
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.eventLoop.scheduleTask(in: Self.hangupGrace) {
            guard !bound.value.reaped else { return }
            kill(-process.pid, SIGKILL)
            kill(process.pid, SIGKILL)
        }
    }

    func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {}

    func messageRefused(_ session: PortSession, _ refusal: SessionRefusal) {
        self.runner.messageRefused(refusal, sessionID: self.sessionID)
    }
}
