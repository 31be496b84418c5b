import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// The agent's end of a shell or command session: the session's one stream is a login shell on a
/// pseudo-terminal of its own, under the run-as account (``ShellAccounts``), or a command run by that
/// account's shell: on a terminal (interactive) or with pipes (non-interactive, in
/// `ShellSessionDelegate+Pipes.swift`). The client's size is applied to the terminal, and the session ends
/// once the program's output has ended and its exit status is known. Lives on the session's event loop
/// (created there; callbacks from elsewhere come back through `NIOLoopBound`).
final class ShellSessionDelegate: PortSessionDelegate {
    let runner: AgentRunner
    let sessionID: String
    let eventLoop: any EventLoop
    var logger: Logger
    /// What runs: the login shell (nil), or this command.
    let command: String?
    /// Whether the program has a terminal (a shell, an interactive command) rather than pipes.
    let interactive: Bool

    /// The program, once started.
    var process: SpawnedProcess?
    /// The PTY's master side (a program on a terminal).
    var master: CInt?
    /// The channel of the program's output (the PTY, or its standard output's pipe) while it is open: the
    /// master descriptor is only used (resized) while it is.
    var terminal: (any Channel)?
    /// A non-interactive command's standard error, while it is open, and what reads it.
    var errors: (any Channel)?
    var errorReader: StandardErrorReader?
    /// Succeeded once a non-interactive command's standard error has been read to its end (or could not be
    /// read at all): its exit code is sent only after.
    var errorsEnded: EventLoopFuture<Void>?
    /// The latest size the client sent (applied at the start if it came before).
    var size: TerminalSize?
    /// Completed by the thread that waits for the shell (it reaps it).
    var exit: EventLoopFuture<SpawnedProcess.ExitStatus>?
    /// Whether the shell is reaped (on the event loop): from then on its pid is never signalled.
    var reaped = false
    /// Whether the PTY's master descriptor is open (from the spawn until its channel closes).
    var masterOpen = false
    /// The PTY channel's first handler, which counts the reads (the drain after the shell's exit).
    var boundary: UTF8BoundaryHandler?
    var ended = false
    /// Whether the session ends because the program's output ended (its normal end).
    var programEnded = false
    /// What the gateway asked to record (nil: nothing), and the recording once the program started.
    let recording: RecordingRequest?
    /// The account the session's document asks for (runAsDefaultUser), and the commands a shell starts
    /// with (shellProfile), written to its terminal first.
    let runAs: String?
    let profile: String?
    var recorder: SessionRecorder?

    /// How long a shell has to exit after SIGHUP when its session ends, before SIGKILL.
    static let hangupGrace = TimeAmount.seconds(5)
    /// After the shell exited, the terminal is hung up once it gave no output for this long while the
    /// session could send, or after this many such ticks of steady output (a background job writing on).
    static let exitDrainTime = TimeAmount.milliseconds(200)
    static let exitDrainLimit = 50

    init(
        runner: AgentRunner,
        sessionID: String,
        eventLoop: any EventLoop,
        command: String? = nil,
        interactive: Bool = true,
        recording: RecordingRequest? = nil,
        runAs: String? = nil,
        profile: String? = nil
    ) {
        self.recording = recording
        self.runAs = runAs
        self.profile = command == nil ? profile : nil
        self.runner = runner
        self.sessionID = sessionID
        self.eventLoop = eventLoop
        self.command = command
        self.interactive = interactive || command == nil
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
        let (configured, requested, allowed) = (
            self.runner.options.shellUser, self.runAs, self.runner.options.allowedRunAs
        )
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        // The password database (and useradd) off the event loop.
        NIOThreadPool.singleton.runIfActive(eventLoop: self.eventLoop) { () throws -> (ShellAccount, Bool) in
            let choice = ShellAccounts.choose(
                configured: configured,
                requested: requested,
                allowed: allowed,
                agentIsRoot: agentIsRoot,
                agentUser: ShellAccounts.current()?.name ?? "uid \(geteuid())"
            )
            let account = try ShellAccounts.resolve(try choice.get())
            return (account, FilePathText.isDirectory(account.home) == true)
        }.whenComplete { result in
            let (delegate, session) = bound.value
            switch result {
            case .success(let (account, homeExists)):
                delegate.start(session, id, account: account, agentIsRoot: agentIsRoot, homeExists: homeExists)
            case .failure(let error):
                // The account choice is a security decision: a rule's refusal is audited (`SessionRefused`);
                // a failure (useradd, the thread pool shutting down) only ends the session.
                if let refusal = error as? ShellAccounts.Refusal, refusal.isDecision {
                    delegate.runner.journalSessionRefusal(
                        delegate.sessionID,
                        refusedBy: "shell-account",
                        reason: refusal.description
                    )
                }
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
            homeExists: homeExists,
            command: self.command
        )
        self.recorder = self.runner.makeRecorder(
            sessionID: self.sessionID,
            request: self.recording,
            environment: [("SHELL", account.shell), ("TERM", "xterm-256color"), ("USER", account.name)],
            logger: self.logger
        )
        if let size = self.size { self.recorder?.resized(size) }
        guard self.interactive else { return self.startPiped(session, id, launch, account: account) }
        let program: PseudoTerminalProcess
        do {
            program = try PseudoTerminalProcess.spawn(launch)
        } catch {
            return self.refuse(session, id, reason: "\(error)")
        }
        self.started(program.process, session, account: account)
        self.master = program.master
        self.masterOpen = true
        // The second descriptor NIO needs, close-on-exec like the master.
        let output = fcntl(program.master, F_DUPFD_CLOEXEC, 0)
        guard output >= 0 else {
            close(program.master)
            self.masterOpen = false
            return self.refuse(
                session,
                id,
                reason: "no descriptor for the terminal: \(String(cString: strerror(errno)))"
            )
        }
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.openOutput(session, id, discardingInput: false) {
            $0.takingOwnershipOfDescriptors(input: program.master, output: output)
        } opened: {
            // A size that came while the terminal was being set up.
            if let size = bound.value.size { try? PseudoTerminalProcess.resize(master: program.master, to: size) }
            // The shell profile's commands, typed first (as SSM's agent does): before anything the client sends.
            if let profile = bound.value.profile, let terminal = bound.value.terminal {
                terminal.writeAndFlush(ByteBuffer(string: profile + "\n"), promise: nil)
            }
        }
    }

    /// The program started: logged, and one thread waits for it to end without reaping it; the event loop
    /// reaps it, and from then on never signals its pid (which may be reused). Once it has exited, its output
    /// is read to the end (``hangUpWhenDrained(_:reads:ticks:)``).
    func started(_ process: SpawnedProcess, _ session: PortSession, account: ShellAccount) {
        self.process = process
        self.logger.info(
            self.command == nil ? "shell started" : "command started",
            metadata: [
                "user": "\(account.name)", "pid": "\(process.pid)", "interactive": "\(self.interactive)",
                "command": "\(self.command.map { String($0.prefix(500)) } ?? "(login shell)")",
            ]
        )
        let ended = self.eventLoop.makePromise(of: Void.self)
        DetachedThread.start {
            process.waitUntilEnded()
            ended.succeed(())
        }
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        let exit = ended.futureResult.map { () -> SpawnedProcess.ExitStatus in
            guard let status = process.exitStatusIfEnded() else {
                // waitid said it ended but waitpid found nothing to reap: it is not known to be gone, so its
                // pid may still be signalled (reaped stays false).
                bound.value.0.logger.warning("the program's exit status could not be read")
                return .exited(-1)
            }
            bound.value.0.reaped = true
            return status
        }
        self.exit = exit
        // The program exited: the session ends with it, even if a job it left in the background still holds
        // its terminal or pipes. What it wrote is read first: the output is closed once none came for
        // ``exitDrainTime`` while the session could send (or after ``exitDrainLimit`` of steady output).
        exit.whenSuccess { _ in bound.value.0.hangUpWhenDrained(bound.value.1, reads: -1, ticks: 0) }
    }

    /// Opens the channel of the program's output (the PTY, or its standard output's pipe, whose input
    /// the command never reads: `discardingInput`) behind a ``UTF8BoundaryHandler`` and makes it the
    /// session's stream; `opened` runs once it is.
    func openOutput(
        _ session: PortSession,
        _ id: SmuxStreamID,
        discardingInput: Bool,
        descriptors: (NIOPipeBootstrap) -> EventLoopFuture<any Channel>,
        opened: @escaping @Sendable () -> Void = {}
    ) {
        let boundary = UTF8BoundaryHandler()
        self.boundary = boundary
        let bound = NIOLoopBound((self, session), eventLoop: self.eventLoop)
        // The channel is made on this event loop (the bootstrap's group is it), where the handlers live.
        let boundaryOnLoop = NIOLoopBound((boundary, self.recorder), eventLoop: self.eventLoop)
        let bootstrap = NIOPipeBootstrap(group: self.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (boundary, recorder) = boundaryOnLoop.value
                    try channel.pipeline.syncOperations.addHandler(boundary)
                    if let recorder {
                        try channel.pipeline.syncOperations.addHandler(RecordingHandler(recorder: recorder))
                    }
                    if discardingInput { try channel.pipeline.syncOperations.addHandler(DiscardedInput()) }
                }
            }
        descriptors(bootstrap).whenComplete { result in
            let (delegate, session) = bound.value
            switch result {
            case .success(let channel):
                delegate.terminal = channel
                channel.closeFuture.whenComplete { _ in
                    bound.value.0.terminal = nil
                    bound.value.0.masterOpen = false
                }
                opened()
                do {
                    try session.attach(channel, to: id)
                } catch {
                    channel.close(promise: nil)
                }
            case .failure(let error):
                // NIO closes the descriptors when it fails once it took them; closing them again here could
                // close another session's reused descriptor.
                delegate.masterOpen = false
                delegate.refuse(session, id, reason: "the program's output could not be read: \(error)")
            }
        }
    }

    /// After the program exited: closes its output (the terminal, or the pipes) once it has been quiet for a
    /// tick while the session could send it (`reads`: the count at the last tick).
    func hangUpWhenDrained(_ session: PortSession, reads: Int, ticks: Int) {
        guard self.terminal != nil || self.errors != nil, !self.ended else { return }
        let now = (self.boundary?.reads ?? 0) + (self.errorReader?.reads ?? 0)
        let waiting = session.terminalOutputWaits || (self.errors != nil && session.standardErrorWaits)
        if (now == reads && !waiting) || ticks >= Self.exitDrainLimit {
            self.terminal?.close(promise: nil)
            self.errors?.close(promise: nil)
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
        self.recorder?.resized(size)
        // Not once the channel closed its descriptor (its number may be reused before closeFuture runs).
        guard let master = self.master, self.masterOpen, self.terminal?.isActive ?? true else { return }
        do {
            try PseudoTerminalProcess.resize(master: master, to: size)
        } catch {
            self.logger.debug("resize failed", metadata: ["error": "\(error)"])
        }
    }

    /// The program's output ended (its terminal closed: the shell and everything it started on it are gone;
    /// or its standard output's pipe did, and its standard error follows): the session ends with the
    /// program's exit status.
    func terminalEnded(_ session: PortSession) {
        self.programEnded = true
        guard let exit = self.exit else {
            return session.endTerminal(exitStatus: nil, reason: "The program's output closed.")
        }
        let what = self.command == nil ? "The shell" : "The command"
        let within = self.interactive ? PortSession.terminalDrainTime : PortSession.commandOutputDrainTime
        let errorsEnded = self.errorsEnded ?? self.eventLoop.makeSucceededVoidFuture()
        exit.and(errorsEnded).assumeIsolated().whenSuccess { status, _ in
            switch status {
            case .exited(let code):
                session.endTerminal(exitStatus: code, reason: "\(what) exited with status \(code).", within: within)
            case .signalled(let signal):
                session.endTerminal(
                    exitStatus: 128 + signal,
                    reason: "\(what) was killed by signal \(signal).",
                    within: within
                )
            }
        }
    }

    /// However the session ended, the shell goes too: SIGHUP to its process group (as a terminal hanging up
    /// does), then SIGKILL if it is still there after ``hangupGrace``.
    func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {
        self.ended = true
        self.recorder?.finish(reason: reason)
        // A normal end the program brought is reported with its reason (the shell's exit status): the
        // gateway records it, and tells the client nothing more than that the session ended.
        self.runner.sessionDidEnd(
            self.sessionID,
            reason: reason,
            byPeer: byPeer,
            report: self.programEnded && byPeer ? reason : nil
        )
        // Whatever still holds the program's output (a job it left behind): the session no longer reads it.
        self.errors?.close(promise: nil)
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
