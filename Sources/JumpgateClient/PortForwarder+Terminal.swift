import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sessions whose stream is the client's own standard input and output rather than a local port: a shell
/// (the user's terminal, in raw mode, with its size) and AWS-StartSSHSession (raw bytes for ssh's
/// ProxyCommand). The shell's end waits for its last output in ``PortForwarder/sessionEnded(_:reason:byPeer:)``.
extension PortForwarder {
    /// Standard input and output as the session's one connection (ssh's ProxyCommand): raw bytes, no
    /// terminal mode. When the input ends (ssh closed its side), what is left is sent and the session ends,
    /// as the official plugin does.
    func startStandardStream(session: PortSession) {
        let bound = NIOLoopBound(session, eventLoop: self.eventLoop)
        UserTerminal.openChannel(on: self.eventLoop).whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    _ = try bound.value.openStream(for: channel)
                } catch {
                    channel.close(promise: nil)
                    self.outcome.succeed(.failed("standard input and output could not be used: \(error)"))
                    return
                }
                channel.closeFuture.whenComplete { _ in
                    if !bound.value.isEnded { self.terminate() }
                }
            case .failure(let error):
                bound.value.shutdown(reason: (error as? ClientError)?.description ?? "\(error)")
            }
        }
    }

    /// A shell session (or an interactive command) started: the terminal goes into raw mode, standard input
    /// and output become the session's stream, and the terminal's size is sent now and after each change.
    /// A non-interactive command's output goes to standard output as it is (no terminal mode, no input).
    public func streamRequested(_ session: PortSession, id: SmuxStreamID) {
        let needsTerminal = session.negotiatedSession?.needsTerminal ?? true
        UserTerminal.enterRawMode(raw: needsTerminal)
        let bound = NIOLoopBound(session, eventLoop: self.eventLoop)
        let opening =
            needsTerminal
            ? UserTerminal.openChannel(on: self.eventLoop).map { ($0, $0.closeFuture) }
            : UserTerminal.openOutputChannel(on: self.eventLoop)
        opening.whenComplete { result in
            let session = bound.value
            switch result {
            case .success(let (channel, written)):
                do {
                    try session.attach(channel, to: id)
                } catch {
                    channel.close(promise: nil)
                    return
                }
                self.state.withLockedValue {
                    $0.terminal = channel
                    $0.terminalWritten = written
                }
                // The terminal itself went away (not its input's end: standard output failed): nothing more
                // can be shown, and in raw mode no key could stop the client; the session ends.
                channel.closeFuture.whenComplete { _ in
                    if !bound.value.isEnded { self.terminate() }
                }
                guard needsTerminal else { return }
                let size = UserTerminal.currentSize()
                session.sendTerminalSize(size)
                guard UserTerminal.isInteractive else { return }
                let loop = self.eventLoop
                let resizes = UserTerminal.watchResizes(from: size) { size in
                    loop.execute { bound.value.sendTerminalSize(size) }
                }
                self.state.withLockedValue { $0.resizes = resizes }
            case .failure(let error):
                session.refuse(id, reason: (error as? ClientError)?.description ?? "\(error)")
            }
        }
    }

    /// A command's standard error, written whole: standard error may share standard output's file
    /// description (`2>&1 | ...`), which NIO made non-blocking, so a full pipe is waited for, not dropped.
    public func standardErrorReceived(_ session: PortSession, _ text: ByteBuffer) {
        FileDescriptorIO.writeAll(text.readableBytesView, to: STDERR_FILENO)
    }

    public func exitCodeReceived(_ session: PortSession, _ code: Int32) {
        self.state.withLockedValue { $0.exitStatus = code }
    }
}
