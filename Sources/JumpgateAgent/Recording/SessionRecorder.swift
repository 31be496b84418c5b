import FoundationEssentials
import Glibc
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
/// was written survives the agent being killed. When the session ends the file is renamed
/// <session-id>.done (or .cut, if it stopped at its size limit): the uploader (`RecordingUploader.swift`)
/// sends an open file's whole lines, a finished file to its end, and deletes it once the gateway has all
/// of it.
///
/// Lives on the session's event loop (its channels and the shell's delegate are there). A recording past
/// its size limit stops with a marker saying so; a write that fails stops it with a log line, the file cut
/// back to its last whole line (the session goes on: a full disk must not cut a user's shell).
final class SessionRecorder {
    /// A recording file's state, from its name's suffix.
    enum FileState: String, CaseIterable {
        case open = ".cast"
        case done = ".done"
        /// Finished, cut at the size limit.
        case cut = ".cut"

        /// The session id and state a file name in the directory gives, if it is a recording's.
        static func parse(_ name: String) -> (sessionID: String, state: FileState)? {
            for state in Self.allCases where name.hasSuffix(state.rawValue) {
                let id = String(name.dropLast(state.rawValue.count))
                return SessionRecorder.isSafeName(id) ? (id, state) : nil
            }
            return nil
        }
    }

    let directory: String
    let sessionID: String
    let request: RecordingRequest
    private var writer: AsciicastWriter
    private var descriptor: Int32
    private(set) var bytesWritten = 0
    private(set) var stopped = false
    /// Whether the recording stopped before its session ended (its size limit, or a write that failed).
    private(set) var cut = false
    /// Called after lines were written (the uploader gathers them), and once at the end.
    private let wrote: () -> Void
    private let failed: (String) -> Void

    static let directoryName = "recordings"
    /// The start of the marker a recording cut at its size limit ends with.
    static let limitMarker = "The recording reached its size limit"
    /// Bytes kept free below the limit for the marker that says the recording was cut.
    static let markerRoom = 256

    var path: String { self.directory + "/" + self.sessionID + FileState.open.rawValue }

    /// Whether `name` may name a file: the gateway's session ids are letters, digits, `-`, `_` and `.`;
    /// anything else (a path, `..`) from a gateway is refused, never used.
    static func isSafeName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy {
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0))
            }
    }

    /// Opens the file (failing if the session id cannot name one or the file cannot be created).
    init(
        directory: String,
        sessionID: String,
        request: RecordingRequest,
        environment: [(key: String, value: String)],
        wrote: @escaping () -> Void,
        failed: @escaping (String) -> Void
    ) throws {
        guard Self.isSafeName(sessionID) else {
            throw AgentError("the session id \(sessionID.prefix(140)) cannot name a recording file")
        }
        self.directory = directory
        self.sessionID = sessionID
        self.request = request
        self.writer = AsciicastWriter(
            startMicroseconds: Self.now(),
            title: sessionID,
            environment: environment
        )
        self.descriptor = -1
        self.wrote = wrote
        self.failed = failed
        self.descriptor = open(self.path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard self.descriptor >= 0 else {
            throw AgentError("the recording \(self.path) cannot be created: \(String(cString: strerror(errno)))")
        }
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

    /// The session ended: the last lines (`reason` as a marker), the file closed and renamed finished.
    func finish(reason: String) {
        guard self.descriptor >= 0 else {
            if self.cut { self.wrote() }  // cut by a failed write: already renamed
            return
        }
        if !self.stopped { self.append(self.writer.finish(marker: reason, now: Self.now())) }
        self.stopped = true
        guard self.descriptor >= 0 else { return self.wrote() }  // the last lines failed: renamed .cut
        close(self.descriptor)
        self.descriptor = -1
        let finished = self.directory + "/" + self.sessionID + (self.cut ? FileState.cut : FileState.done).rawValue
        if rename(self.path, finished) != 0 {
            self.failed("the recording \(self.path) could not be marked finished: \(String(cString: strerror(errno)))")
        }
        self.wrote()
    }

    private func append(_ lines: String) {
        guard !lines.isEmpty, self.descriptor >= 0 else { return }
        var text = lines
        if self.bytesWritten + text.utf8.count + Self.markerRoom > self.request.maximumBytes {
            // Cut before the limit, leaving room for the marker that says so (the limit is at least 1 KiB;
            // the marker's line is under 200 bytes).
            let note = self.writer.marker(
                "\(Self.limitMarker) of \(self.request.maximumBytes) bytes; the rest of the session is not recorded.",
                now: Self.now()
            )
            text = self.bytesWritten + note.utf8.count <= self.request.maximumBytes ? note : ""
            self.stopped = true
            self.cut = true
        }
        guard ConnectionJournal.write(text, to: self.descriptor) else {
            let problem = String(cString: strerror(errno))
            // A line written in part is taken back: the file holds whole lines only.
            _ = ftruncate(self.descriptor, off_t(self.bytesWritten))
            self.stopped = true
            // The rest of the session is missing: marked cut at once, so an agent killed before the session
            // ends reports it so too.
            self.cut = true
            close(self.descriptor)
            self.descriptor = -1
            rename(self.path, self.directory + "/" + self.sessionID + FileState.cut.rawValue)
            return self.failed("the recording \(self.path) could not be written: \(problem)")
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
