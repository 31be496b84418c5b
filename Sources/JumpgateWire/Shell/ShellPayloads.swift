import NIOCore

/// A terminal's size (payload type 3, `size`, client to agent): `{"cols":C,"rows":R}`, Go's compact JSON of
/// the official plugin's `SizeData` (docs/PROTOCOL.md §8). The plugin sends uint32 values; a PTY takes
/// 16-bit ones (TIOCSWINSZ), so anything larger is refused rather than truncated.
public struct TerminalSize: Hashable, Sendable, CustomStringConvertible {
    public var columns: UInt16
    public var rows: UInt16

    /// What the official plugin sends when its stdout is not a terminal.
    public static let notATerminal = TerminalSize(columns: 300, rows: 100)

    public init(columns: UInt16, rows: UInt16) {
        self.columns = columns
        self.rows = rows
    }

    public init(payload: ByteBuffer) throws(WireError) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: payload.readableBytesView)
        } catch {
            throw WireError(.invalidPayload, "size payload is not JSON")
        }
        guard let columns = json["cols"]?.int64Value, let rows = json["rows"]?.int64Value else {
            throw WireError(.invalidPayload, "size payload lacks cols or rows")
        }
        guard let narrowColumns = UInt16(exactly: columns), let narrowRows = UInt16(exactly: rows) else {
            throw WireError(.invalidPayload, "size \(columns)x\(rows) is outside 0...65535")
        }
        self.init(columns: narrowColumns, rows: narrowRows)
    }

    public func encoded() -> ByteBuffer {
        let json: JSONValue = ["cols": .integer(Int64(self.columns)), "rows": .integer(Int64(self.rows))]
        return ByteBuffer(bytes: json.serializedBytes())
    }

    public var description: String { "\(self.columns)x\(self.rows)" }
}

/// A non-interactive command's exit status (payload type 12, `exitcode`, agent to client): the ASCII text
/// `EXIT_CODE: n`, as the official agent sends it when the document separates output streams (-1 for a
/// command killed by a signal). The official plugin prints it as output; a Jumpgate client exits with it.
public struct ExitCodePayload: Hashable, Sendable {
    public var code: Int32

    static let prefix = "EXIT_CODE: "

    public init(code: Int32) {
        self.code = code
    }

    public init(payload: ByteBuffer) throws(WireError) {
        let text = String(buffer: payload)
        guard text.hasPrefix(Self.prefix), let code = Int32(text.dropFirst(Self.prefix.count)) else {
            throw WireError(.invalidPayload, "exit code payload is not \"\(Self.prefix)<integer>\"")
        }
        self.code = code
    }

    public func encoded() -> ByteBuffer {
        ByteBuffer(string: Self.prefix + String(self.code))
    }
}
