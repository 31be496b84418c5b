import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOPosix

/// Non-interactive commands (AWS-StartNonInteractiveCommand): no terminal. Standard output is the
/// session's stream (Output payloads), standard error goes as stderr payloads in order with it, and the
/// exit code follows both (docs/SESSIONS.md). Standard input is /dev/null, as in SSM: what a client types
/// is dropped.
extension ShellSessionDelegate {
    func startPiped(_ session: PortSession, _ id: SmuxStreamID, _ launch: SpawnedProcess.Launch, account: ShellAccount)
    {
        let program: PipedProcess
        do {
            program = try PipedProcess.spawn(launch)
        } catch {
            return self.refuse(session, id, reason: "\(error)")
        }
        self.started(program.process, session, account: account)
        let errorsEnded = self.eventLoop.makePromise(of: Void.self)
        self.errorsEnded = errorsEnded.futureResult
        let reader = StandardErrorReader(session: session)
        self.errorReader = reader
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let handlers = NIOLoopBound((UTF8BoundaryHandler(), reader, self.recorder), eventLoop: self.eventLoop)
        NIOPipeBootstrap(group: self.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (boundary, reader, recorder) = handlers.value
                    try channel.pipeline.syncOperations.addHandler(boundary)
                    // Standard error is recorded as output: a terminal would show it beside standard output.
                    if let recorder {
                        try channel.pipeline.syncOperations.addHandler(RecordingHandler(recorder: recorder))
                    }
                    try channel.pipeline.syncOperations.addHandler(reader)
                }
            }
            .takingOwnershipOfDescriptor(input: program.standardError)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    bound.value.errors = channel
                    channel.closeFuture.whenComplete { _ in
                        bound.value.errors = nil
                        errorsEnded.succeed(())
                    }
                    channel.read()
                case .failure(let error):
                    bound.value.logger.warning(
                        "the command's standard error cannot be read",
                        metadata: ["error": "\(error)"]
                    )
                    errorsEnded.succeed(())
                }
            }
        self.openOutput(session, id, discardingInput: true) {
            $0.takingOwnershipOfDescriptor(input: program.standardOutput)
        }
    }
}

/// Reads a non-interactive command's standard error into the session (stderr payloads): a read is asked
/// for only while the session can send, so a command that floods its standard error waits, as one that
/// floods its standard output does.
final class StandardErrorReader: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Never

    let session: PortSession
    /// Reads so far (the agent waits for them to stop before closing a command's output after it exited).
    private(set) var reads = 0
    private var retry: Scheduled<Void>?

    /// How often a read held back by a full send window is tried again.
    static let retryInterval = TimeAmount.milliseconds(20)

    init(session: PortSession) { self.session = session }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.reads += 1
        self.session.sendStandardError(self.unwrapInboundIn(data))
    }

    func read(context: ChannelHandlerContext) {
        guard self.session.standardErrorWaits, !self.session.isEnded else { return context.read() }
        guard self.retry == nil else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.retry = context.eventLoop.scheduleTask(in: Self.retryInterval) {
            let (reader, context) = bound.value
            reader.retry = nil
            reader.read(context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.retry?.cancel()
        self.retry = nil
        context.fireChannelInactive()
    }
}

/// Outbound on a command's standard output pipe (which takes no input): what the client sends is dropped,
/// as a command whose standard input is /dev/null would never read it.
final class DiscardedInput: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.succeed(())
    }
}
