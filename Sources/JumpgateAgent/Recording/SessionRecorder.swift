import Foundation
import JumpgateNIO
import JumpgateWire
import NIOCore

/// What the gateway asks of a session's recording (`inputs.jumpgateRecording` of the session's start):
/// whether what the client types is recorded too, and the most the recording may hold.
struct RecordingRequest: Sendable, Equatable {
    var recordInput: Bool
    var maximumBytes: Int

    /// The request in a start's document content; nil when the session is not recorded. A size outside
    /// 1 KiB...1 GiB is refused (nil), never obeyed.
    init?(document: JSONValue) {
        guard let recording = document["inputs"]?["jumpgateRecording"], recording.objectValue != nil,
            let maximum = recording["maxBytes"]?.int64Value, (1024...(1 << 30)).contains(maximum)
        else { return nil }
        self.recordInput = recording["recordInput"]?.boolValue ?? false
        self.maximumBytes = Int(maximum)
    }

    init(recordInput: Bool, maximumBytes: Int) {
        self.recordInput = recordInput
        self.maximumBytes = maximumBytes
    }
}

/// A shell or command session's recording on the agent: asciicast lines (``AsciicastWriter``) appended to
/// STATE_DIR/recordings/<session-id>.cast (0600) as the session goes, one write(2) per event, so what
/// was written survives the agent being killed; the uploader sends the file to the gateway
/// (`RecordingUploader.swift`) and deletes it once the gateway has all of it.
///
/// Lives on the session's event loop (its channels and the shell's delegate are there). A recording past
/// its size limit stops with a marker saying so; a write that fails stops it with a log line (the session
/// goes on: a full disk must not cut a user's shell).
final class SessionRecorder {
    let path: String
    let request: RecordingRequest
    private var writer: AsciicastWriter
    private var descriptor: Int32
    private(set) var bytesWritten = 0
    private(set) var stopped = false
    /// Called after lines were written (the uploader gathers them), and once at the end.
    private let wrote: () -> Void
    private let failed: (String) -> Void

    static let directoryName = "recordings"

    /// Opens the file (failing if it cannot be created).
    init(
        directory: String,
        sessionID: String,
        request: RecordingRequest,
        environment: [(key: String, value: String)],
        wrote: @escaping () -> Void,
        failed: @escaping (String) -> Void
    ) throws {
        self.path = directory + "/" + sessionID + ".cast"
        self.request = request
        self.writer = AsciicastWriter(
            startMicroseconds: Self.now(),
            title: sessionID,
            environment: environment
        )
        self.descriptor = open(self.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard self.descriptor >= 0 else {
            throw AgentError("the recording \(self.path) cannot be created: \(String(cString: strerror(errno)))")
        }
        self.wrote = wrote
        self.failed = failed
    }

    deinit {
        if self.descriptor >= 0 { close(self.descriptor) }
    }

    /// Unix time in microseconds.
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

    func output(_ bytes: ByteBuffer) {
        guard !self.stopped else { return }
        self.append(self.writer.event(.output, bytes, now: Self.now()))
    }

    func input(_ bytes: ByteBuffer) {
        guard !self.stopped, self.request.recordInput else { return }
        self.append(self.writer.event(.input, bytes, now: Self.now()))
    }

    func resized(_ size: TerminalSize) {
        guard !self.stopped else { return }
        self.append(self.writer.resize(size, now: Self.now()))
    }

    /// The session ended: the last lines (`reason` as a marker), and the file is closed.
    func finish(reason: String) {
        if !self.stopped { self.append(self.writer.finish(marker: reason, now: Self.now())) }
        self.stopped = true
        if self.descriptor >= 0 { close(self.descriptor) }
        self.descriptor = -1
        self.wrote()
    }

    private func append(_ lines: String) {
        guard !lines.isEmpty, self.descriptor >= 0 else { return }
        var text = lines
        if self.bytesWritten + text.utf8.count > self.request.maximumBytes {
            // Cut at the limit: a marker says so (it fits: the limit is at least 1 KiB, and the lines
            // before it left room for it or are dropped whole).
            let note = self.writer.marker(
                "The recording reached its size limit of \(self.request.maximumBytes) bytes; the rest of the session is not recorded.",
                now: Self.now()
            )
            text = self.bytesWritten + note.utf8.count <= self.request.maximumBytes ? note : ""
            self.stopped = true
        }
        guard ConnectionJournal.write(text, to: self.descriptor) else {
            self.stopped = true
            close(self.descriptor)
            self.descriptor = -1
            return self.failed("the recording \(self.path) could not be written: \(String(cString: strerror(errno)))")
        }
        self.bytesWritten += text.utf8.count
        self.wrote()
    }
}

/// On a shell's or command's output channel, behind the UTF-8 boundary: what the program writes is
/// recorded as output, what the client sends it (written to the channel) as input.
final class RecordingHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let recorder: SessionRecorder

    init(recorder: SessionRecorder) { self.recorder = recorder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.recorder.output(self.unwrapInboundIn(data))
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.recorder.input(self.unwrapOutboundIn(data))
        context.write(data, promise: promise)
    }
}
