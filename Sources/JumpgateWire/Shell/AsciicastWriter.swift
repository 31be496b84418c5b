import NIOCore

/// Writes a session's recording as asciicast v2 (asciinema's format: a JSON header line, then one JSON
/// array per event, `[seconds, "o" | "i" | "r" | "m", "text"]`). Pure: it turns what the session saw into
/// lines, and ``SessionRecorder`` writes them.
///
/// Output and input are text in the format, so each keeps its own ``UTF8Boundary``: a character cut
/// between two reads is written whole with the second; bytes that are not UTF-8 become U+FFFD (as
/// asciinema writes them). The header is written with the first event, so it carries the size the
/// client sent first (80x24 if output came before any size).
public struct AsciicastWriter: Sendable {
    public enum Kind: String, Sendable {
        case output = "o"
        case input = "i"
    }

    /// Unix time (microseconds) of the recording's start; event times count from it.
    public let startMicroseconds: Int64
    public let title: String
    public let environment: [(key: String, value: String)]
    /// The terminal's size: the header's until it is written, then the latest resize.
    public private(set) var size: TerminalSize?
    public private(set) var headerWritten = false
    private var outputBoundary = UTF8Boundary()
    private var inputBoundary = UTF8Boundary()

    public static let defaultSize = TerminalSize(columns: 80, rows: 24)

    public init(startMicroseconds: Int64, title: String, environment: [(key: String, value: String)] = []) {
        self.startMicroseconds = startMicroseconds
        self.title = title
        self.environment = environment
    }

    /// Lines for bytes the program wrote (`.output`) or the client typed (`.input`) at `now`: the header if
    /// it is not written yet, then the event (nothing for bytes that only start a character).
    public mutating func event(_ kind: Kind, _ bytes: ByteBuffer, now: Int64) -> String {
        let whole = kind == .output ? self.outputBoundary.next(bytes) : self.inputBoundary.next(bytes)
        return self.line(kind.rawValue, String(buffer: whole), now: now)
    }

    /// Lines for the client's new terminal size (`"r"`, `COLSxROWS`); before the header, the header's size.
    public mutating func resize(_ size: TerminalSize, now: Int64) -> String {
        guard self.headerWritten else {
            self.size = size
            return ""
        }
        guard size != self.size else { return "" }
        self.size = size
        return self.line("r", "\(size.columns)x\(size.rows)", now: now)
    }

    /// A marker (`"m"`): the recording was cut at its size limit, or the session ended, and why.
    public mutating func marker(_ text: String, now: Int64) -> String {
        self.line("m", text, now: now)
    }

    /// The lines that end the recording: characters still held (written as they are), then `marker`.
    public mutating func finish(marker text: String?, now: Int64) -> String {
        var lines = self.line("o", String(buffer: self.outputBoundary.finish()), now: now)
        lines += self.line("i", String(buffer: self.inputBoundary.finish()), now: now)
        if let text { lines += self.marker(text, now: now) }
        return lines
    }

    private mutating func line(_ code: String, _ text: String, now: Int64) -> String {
        guard !text.isEmpty else { return "" }
        var lines = ""
        if !self.headerWritten {
            self.headerWritten = true
            lines = self.header()
        }
        let elapsed = max(0, now - self.startMicroseconds)
        return lines + "[\(Self.seconds(elapsed)), \"\(code)\", \(JSONValue.string(text).serialized())]\n"
    }

    /// The header line: version 2, the size, the start (whole seconds, as the format has it), the title
    /// and the environment.
    func header() -> String {
        let size = self.size ?? Self.defaultSize
        let header: JSONValue = [
            "version": 2, "width": .integer(Int64(size.columns)), "height": .integer(Int64(size.rows)),
            "timestamp": .integer(self.startMicroseconds / 1_000_000), "title": .string(self.title),
            "env": .object(self.environment.map { ($0.key, JSONValue.string($0.value)) }),
        ]
        return header.serialized() + "\n"
    }

    /// Microseconds as seconds with six decimals (`12.000345`).
    static func seconds(_ microseconds: Int64) -> String {
        let fraction = String(microseconds % 1_000_000)
        return "\(microseconds / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}
