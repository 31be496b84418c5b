import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import UnixSignals

/// The user's terminal as a shell session's stream: standard input and output as one NIO channel, the
/// terminal in raw mode meanwhile (every key, Ctrl+C included, goes to the remote shell as a byte), its size
/// and changes to it. Whatever way the session ends, ``restore()`` puts the terminal back as it was.
public enum UserTerminal {
    /// What was changed, to be put back: the terminal's settings (when standard input is one) and the
    /// descriptors' flags (NIO makes them non-blocking, which the shell that started us shares).
    struct Saved: Sendable {
        var settings: termios?
        var inputFlags: CInt
        var outputFlags: CInt
    }

    private static let saved = NIOLockedValueBox<Saved?>(nil)

    /// Whether standard input is a terminal (raw mode and resizes apply only then).
    public static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 }

    /// Saves the terminal's state and, if standard input is a terminal, enters raw mode, as ssh does:
    /// no echo, no line editing, no signals from keys, no CR/LF translation. TCSADRAIN, not TCSAFLUSH: keys
    /// typed while the session started are not thrown away; they reach the shell.
    /// `raw` false: only the descriptors' flags are saved (a command's output: no terminal mode).
    public static func enterRawMode(raw: Bool = true) {
        var state = Saved(
            settings: nil,
            inputFlags: fcntl(STDIN_FILENO, F_GETFL),
            outputFlags: fcntl(STDOUT_FILENO, F_GETFL)
        )
        var settings = termios()
        if raw, Self.isInteractive, tcgetattr(STDIN_FILENO, &settings) == 0 {
            state.settings = settings
            var raw = settings
            cfmakeraw(&raw)
            tcsetattr(STDIN_FILENO, TCSADRAIN, &raw)
        }
        let first = Self.saved.withLockedValue { saved -> Bool in
            guard saved == nil else { return false }
            saved = state
            return true
        }
        // Also at exit(), whichever path leads there.
        if first { atexit { UserTerminal.restore() } }
    }

    /// Puts the terminal back as ``enterRawMode()`` found it. Safe to call more than once.
    public static func restore() {
        guard let state = Self.saved.withLockedValue({ $0 }) else { return }
        _ = fcntl(STDIN_FILENO, F_SETFL, state.inputFlags)
        _ = fcntl(STDOUT_FILENO, F_SETFL, state.outputFlags)
        if var settings = state.settings { tcsetattr(STDIN_FILENO, TCSADRAIN, &settings) }
    }

    /// The terminal's size now: standard output's, else standard input's; the official plugin's 300x100
    /// when neither is a terminal.
    public static func currentSize() -> TerminalSize {
        var window = winsize()
        for descriptor in [STDOUT_FILENO, STDIN_FILENO]
        where ioctl(descriptor, UInt(TIOCGWINSZ), &window) == 0 && window.ws_col > 0 && window.ws_row > 0 {
            return TerminalSize(columns: window.ws_col, rows: window.ws_row)
        }
        return .notATerminal
    }

    /// Standard input and output as one channel (copies of the descriptors: closing the channel leaves the
    /// process's own). Reads are requested by the session's stream handler; input's end is an event, not a
    /// close, so the shell's output still comes after it.
    public static func openChannel(on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let input = dup(STDIN_FILENO)
        let output = dup(STDOUT_FILENO)
        guard input >= 0, output >= 0 else {
            if input >= 0 { close(input) }
            if output >= 0 { close(output) }
            return eventLoop.makeFailedFuture(ClientError("standard input or output is closed"))
        }
        return NIOPipeBootstrap(group: eventLoop)
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .takingOwnershipOfDescriptors(input: input, output: output)
            .flatMapErrorThrowing { error in
                throw ClientError(
                    "standard input and output must be a terminal or pipes (not files) for a shell session: \(error)"
                )
            }
    }

    /// Standard output alone as a channel (a non-interactive command's output; standard input is not read),
    /// and a future that succeeds once everything written to the channel is in standard output. A regular
    /// file (`> out.txt`) or a device such as /dev/null, which NIO cannot watch, gets what the channel writes
    /// through a pipe and a thread that copies it with blocking writes.
    public static func openOutputChannel(
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<(channel: any Channel, written: EventLoopFuture<Void>)> {
        var status = stat()
        let kind = fstat(STDOUT_FILENO, &status) == 0 ? status.st_mode & S_IFMT : 0
        // NIO watches pipes, sockets and terminals; anything else (a file, /dev/null) is written by a thread.
        guard kind != S_IFIFO, kind != S_IFSOCK, isatty(STDOUT_FILENO) == 0 else {
            let output = dup(STDOUT_FILENO)
            guard output >= 0 else { return eventLoop.makeFailedFuture(ClientError("standard output is closed")) }
            return Self.outputChannel(output, on: eventLoop).map { channel in
                (channel, channel.closeFuture.flatMapError { _ in eventLoop.makeSucceededVoidFuture() })
            }
        }
        var ends: [CInt] = [-1, -1]
        guard pipe(&ends) == 0 else {
            return eventLoop.makeFailedFuture(
                ClientError("no pipe for standard output: \(String(cString: strerror(errno)))")
            )
        }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        let written = eventLoop.makePromise(of: Void.self)
        let reader = ends[0]
        DetachedThread.start {
            Self.copyToStandardOutput(from: reader)
            close(reader)
            written.succeed(())
        }
        return Self.outputChannel(ends[1], on: eventLoop).map { ($0, written.futureResult) }
    }

    private static func outputChannel(_ output: CInt, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        NIOPipeBootstrap(group: eventLoop)
            .channelOption(.autoRead, value: false)
            .takingOwnershipOfDescriptor(output: output)
            .flatMapErrorThrowing { error in
                throw ClientError("standard output cannot take a command's output: \(error)")
            }
    }

    /// Copies until the pipe's end (blocking; on a thread of its own). A failed write (a full disk) ends the
    /// copy with a message; the rest is read and dropped so the session is not held up.
    private static func copyToStandardOutput(from reader: CInt) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var failed = false
        while true {
            let count = read(reader, &buffer, buffer.count)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            if !failed, !FileDescriptorIO.writeAll(buffer[0..<count], to: STDOUT_FILENO) {
                failed = true
                StandardStream.error.write(
                    "Error: cannot write the command's output: \(String(cString: strerror(errno)))\n"
                )
            }
        }
    }

    /// Calls `resized` with the new size after each SIGWINCH, until the task is cancelled. `sent`: the size
    /// already sent; a change between it and the signal's trap being set is sent at once.
    public static func watchResizes(
        from sent: TerminalSize,
        _ resized: @escaping @Sendable (TerminalSize) -> Void
    ) -> Task<Void, Never> {
        Task {
            var last = sent
            let signals = await UnixSignalsSequence(trapping: .sigwinch)
            let now = Self.currentSize()
            if now != last {
                last = now
                resized(now)
            }
            for await _ in signals {
                let size = Self.currentSize()
                if size != last {
                    last = size
                    resized(size)
                }
            }
        }
    }
}
