import Foundation
import JumpgateWire
import NIOCore
import Testing

@testable import JumpgateAgent

/// The agent's recording files without a gateway: what the recorder writes, its size limit, the names it
/// accepts, and how a file left by a killed agent is closed.
@Suite("Agent recordings on disk: the recorder, its limit, and files left by a killed agent")
struct AgentRecordingTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "jumpgate-recordings-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func recorder(
        _ directory: String,
        _ id: String,
        limit: Int = 1 << 20,
        input: Bool = false
    ) throws
        -> SessionRecorder
    {
        try SessionRecorder(
            directory: directory,
            sessionID: id,
            request: RecordingRequest(recordInput: input, maximumBytes: limit),
            environment: [("TERM", "xterm-256color")],
            wrote: {},
            failed: { Issue.record("recording failed: \($0)") }
        )
    }

    @Test("a session's file: the header with the first size, output, input only when asked, .done at the end")
    func recorderWritesAndFinishes() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = try Self.recorder(directory, "alice-1")
        recorder.resized(TerminalSize(columns: 120, rows: 40))
        recorder.output(ByteBuffer(string: "hello\r\n"))
        recorder.input(ByteBuffer(string: "secret\r"))  // not asked for: not recorded
        recorder.finish(reason: "The shell exited with status 0.")
        #expect(!FileManager.default.fileExists(atPath: directory + "/alice-1.cast"))
        let text = try String(contentsOfFile: directory + "/alice-1.done", encoding: .utf8)
        let playback = try AsciicastPlayback(parsing: text)
        #expect(playback.header.width == 120 && playback.header.height == 40)
        #expect(playback.output.map(\.text) == ["hello\r\n"] && playback.input.isEmpty)
        #expect(playback.markers == ["The shell exited with status 0."])
        #expect(SessionRecorder.FileState.parse("alice-1.done")! == ("alice-1", .done))
    }

    @Test("at its size limit a recording stops with a marker, stays within the limit, and ends as .cut")
    func recorderLimit() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = try Self.recorder(directory, "alice-2", limit: 2048, input: true)
        for index in 0..<100 { recorder.output(ByteBuffer(string: "line \(index) of output\r\n")) }
        recorder.input(ByteBuffer(string: "typed"))
        recorder.finish(reason: "ended")
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/alice-2.cut"))
        #expect(data.count <= 2048)
        let playback = try AsciicastPlayback(parsing: String(decoding: data, as: UTF8.self))
        #expect(playback.markers.count == 1 && playback.markers[0].contains("size limit of 2048 bytes"))
        #expect(playback.output.first?.text == "line 0 of output\r\n")
    }

    @Test(
        "session ids that are not file names are refused",
        arguments: ["", "../escape", "a/b", ".hidden", "x\u{0}y", String(repeating: "a", count: 200), "é"]
    )
    func unsafeNames(_ id: String) throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: AgentError.self) { try Self.recorder(directory, id) }
        #expect(SessionRecorder.FileState.parse(id + ".cast") == nil)
    }

    @Test("the agent deletes a recording only on the gateway's own refusals, never on a proxy's 404 or 413")
    func refusalsForGood() {
        #expect(AgentRunner.gatewayRefusesForGood(status: 404, type: "DoesNotExistException"))
        #expect(AgentRunner.gatewayRefusesForGood(status: 413, type: "RecordingTooLarge"))
        for (status, type) in [(404, "NotFound"), (404, nil), (413, nil), (413, "DoesNotExistException"), (500, nil)] {
            #expect(!AgentRunner.gatewayRefusesForGood(status: status, type: type), "\(status) \(type ?? "none")")
        }
    }

    @Test("a file left by a killed agent after its size limit stays cut")
    func closeLeftCutFile() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = try Self.recorder(directory, "carol-1", limit: 1024)
        for index in 0..<100 { recorder.output(ByteBuffer(string: "line \(index)\r\n")) }
        // Killed here: never finished, so the file is still .cast.
        #expect(try AgentRunner.closeRecording(at: directory + "/carol-1.cast", now: SessionRecorder.now()))
        let fresh = try Self.recorder(directory, "carol-2", limit: 1 << 20)
        fresh.output(ByteBuffer(string: "short\r\n"))
        #expect(try !AgentRunner.closeRecording(at: directory + "/carol-2.cast", now: SessionRecorder.now()))
    }

    @Test("a file left by a killed agent: the cut line dropped, a marker added; without a header, nothing added")
    func closeLeftFile() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/bob-1.cast"
        let whole =
            "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1764000000}\n[0.5, \"o\", \"kept\"]\n"
        try (whole + "[0.7, \"o\", \"cut sh").write(toFile: path, atomically: false, encoding: .utf8)
        try AgentRunner.closeRecording(at: path, now: 1_764_000_010_000_000)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix(whole))
        let playback = try AsciicastPlayback(parsing: text)
        #expect(playback.output.map(\.text) == ["kept"])
        #expect(playback.markers == [AgentRunner.stoppedMarker])
        let marker = try JSONValue(parsing: String(text.dropFirst(whole.count).dropLast()))
        #expect(marker.arrayValue?.first?.doubleValue == 10)

        let empty = directory + "/bob-2.cast"
        try "{\"version\": 2, \"wid".write(toFile: empty, atomically: false, encoding: .utf8)
        try AgentRunner.closeRecording(at: empty, now: 1_764_000_010_000_000)
        #expect(try Data(contentsOf: URL(fileURLWithPath: empty)).isEmpty)

        // A header whose timestamp, in microseconds, passes Int64 (a file someone edited): the marker goes
        // at 0 s, where the multiplication trapped and the agent stopped at every start. One from a clock at
        // 1970: the marker at the latest time a recording may hold, so the file still plays.
        for (index, timestamp) in ["9300000000000", "0"].enumerated() {
            let path = directory + "/bob-\(index + 3).cast"
            try "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": \(timestamp)}\n[0.5, \"o\", \"x\"]\n"
                .write(toFile: path, atomically: false, encoding: .utf8)
            try AgentRunner.closeRecording(at: path, now: 1_764_000_010_000_000)
            let playback = try AsciicastPlayback(parsing: String(contentsOfFile: path, encoding: .utf8))
            #expect(playback.markers == [AgentRunner.stoppedMarker], "timestamp \(timestamp)")
        }
    }
}
