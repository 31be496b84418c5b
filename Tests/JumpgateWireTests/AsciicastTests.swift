import JumpgateWire
import NIOCore
import PropertyBased
import Testing

@Suite("Recordings: asciicast v2, written and played")
struct AsciicastTests {
    static let start: Int64 = 1_764_000_000_000_000

    @Test("the header comes with the first event and carries the first size; events are [time, code, text]")
    func linesAsWritten() throws {
        var writer = AsciicastWriter(startMicroseconds: Self.start, title: "s-1", environment: [("TERM", "xterm")])
        // A size before any output is the header's, not an event.
        #expect(writer.resize(TerminalSize(columns: 100, rows: 30), now: Self.start + 5) == "")
        let first = writer.event(.output, ByteBuffer(string: "\u{1B}[1m\"hi\"\r\n"), now: Self.start + 1_500_000)
        let lines = first.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        let header = try JSONValue(parsing: lines[0])
        #expect(header["version"] == 2 && header["width"] == 100 && header["height"] == 30)
        #expect(header["timestamp"]?.int64Value == Self.start / 1_000_000 && header["title"] == "s-1")
        #expect(header["env"]?["TERM"] == "xterm")
        #expect(lines[1] == #"[1.500000, "o", "\u001b[1m\"hi\"\r\n"]"#)
        // Later sizes are "r" events; the same size again is nothing.
        #expect(
            writer.resize(TerminalSize(columns: 80, rows: 24), now: Self.start + 2_000_001)
                == "[2.000001, \"r\", \"80x24\"]\n"
        )
        #expect(writer.resize(TerminalSize(columns: 80, rows: 24), now: Self.start + 3_000_000) == "")
        #expect(
            writer.event(.input, ByteBuffer(string: "ls\r"), now: Self.start + 3_000_000)
                == "[3.000000, \"i\", \"ls\\r\"]\n"
        )
        #expect(writer.marker("cut", now: Self.start + 4_000_000) == "[4.000000, \"m\", \"cut\"]\n")
        // A clock that steps back is written as time 0, never negative.
        #expect(writer.event(.output, ByteBuffer(string: "x"), now: Self.start - 10).hasPrefix("[0.000000, "))
    }

    @Test("output before any size: an 80x24 header; a character cut between reads is written whole")
    func defaultsAndCutCharacters() throws {
        var writer = AsciicastWriter(startMicroseconds: Self.start, title: "t")
        let euro = Array("€".utf8)
        let first = writer.event(.output, ByteBuffer(bytes: [0x61] + euro.prefix(2)), now: Self.start)
        #expect(try JSONValue(parsing: String(first.split(separator: "\n")[0]))["width"] == 80)
        #expect(first.hasSuffix("[0.000000, \"o\", \"a\"]\n"))
        #expect(
            writer.event(.output, ByteBuffer(bytes: euro.suffix(1)), now: Self.start) == "[0.000000, \"o\", \"€\"]\n"
        )
        // Bytes that are not UTF-8 become U+FFFD; the end writes what is held, then the marker.
        #expect(
            writer.event(.output, ByteBuffer(bytes: [0xFF]), now: Self.start) == "[0.000000, \"o\", \"\u{FFFD}\"]\n"
        )
        _ = writer.event(.output, ByteBuffer(bytes: euro.prefix(1)), now: Self.start)
        #expect(
            writer.finish(marker: "The shell exited with status 3.", now: Self.start + 1)
                == "[0.000001, \"o\", \"\u{FFFD}\"]\n[0.000001, \"m\", \"The shell exited with status 3.\"]\n"
        )
    }

    @Test("property: output cut anywhere, between input and resizes, plays back as the same text")
    func roundTrip() async {
        let alphabet: [Unicode.Scalar] = ["a", " ", "\n", "\r", "\u{1B}", "\"", "\\", "é", "€", "中", "😀", "\u{7F}"]
        await propertyCheck(
            count: 200,
            input: Gen.int(in: 0...(alphabet.count - 1)).array(of: 0...80),
            Gen.int(in: 1...9).array(of: 1...30)
        ) { picks, cuts in
            let text = String(String.UnicodeScalarView(picks.map { alphabet[$0] }))
            var writer = AsciicastWriter(startMicroseconds: Self.start, title: "p")
            var cast = ""
            var now = Self.start
            for (index, piece) in ShellPayloadTests.pieces(Array(text.utf8), cuts: cuts).enumerated() {
                now += Int64(cuts[index % cuts.count]) * 1000
                cast += writer.event(.output, piece, now: now)
                cast += writer.event(.input, ByteBuffer(string: "k"), now: now)
                cast += writer.resize(TerminalSize(columns: UInt16(80 + index % 3), rows: 24), now: now)
            }
            cast += writer.finish(marker: "end", now: now + 1)
            guard !text.isEmpty else { return }
            let playback = try? AsciicastPlayback(parsing: cast)
            #expect(playback?.output.map(\.text).joined() == text)
            #expect(playback?.markers == ["end"])
            // Times never go back, and the steps at speed 1 add up to the last output's time.
            let steps = playback?.steps(speed: 1, idleLimitMicroseconds: nil) ?? []
            #expect(steps.allSatisfy { $0.delayMicroseconds >= 0 })
            #expect(steps.reduce(0) { $0 + $1.delayMicroseconds } == playback?.output.last?.microseconds)
        }
    }

    @Test("playback: speed divides the waits, the idle limit caps each one")
    func playbackTiming() throws {
        let cast = """
            {"version": 2, "width": 90, "height": 20, "timestamp": 1764000000, "title": "x"}
            [0.5, "o", "a"]
            [0.75, "i", "typed"]
            [10.5, "o", "b"]
            [10.5, "r", "100x30"]

            [12, "o", "c"]
            [13, "m", "The shell exited with status 0."]
            """
        let playback = try AsciicastPlayback(parsing: cast)
        #expect(playback.header == .init(width: 90, height: 20, timestamp: 1_764_000_000, title: "x"))
        #expect(playback.output.map(\.text) == ["a", "b", "c"])
        #expect(playback.markers == ["The shell exited with status 0."])
        #expect(
            playback.steps(speed: 1, idleLimitMicroseconds: nil).map(\.delayMicroseconds) == [
                500_000, 10_000_000, 1_500_000,
            ]
        )
        #expect(
            playback.steps(speed: 2, idleLimitMicroseconds: 1_000_000).map(\.delayMicroseconds) == [
                250_000, 500_000, 500_000,
            ]
        )
        #expect(
            playback.steps(speed: 10, idleLimitMicroseconds: nil).reduce(0) { $0 + $1.delayMicroseconds } == 1_200_000
        )
        // A pause of 10^9 s (the most a recording may hold) at the slowest speed: a year, where converting
        // 10^21 us trapped.
        let long = try AsciicastPlayback(
            parsing: #"{"version": 2, "width": 80, "height": 24}"# + "\n[1000000000, \"o\", \"x\"]\n"
        )
        #expect(
            long.steps(speed: 0.000_001, idleLimitMicroseconds: nil).map(\.delayMicroseconds) == [
                365 * 86_400 * 1_000_000
            ]
        )
    }

    @Test(
        "what is not an asciicast v2 recording is refused, with the line that is wrong (blank lines count)",
        arguments: [
            ("", "first line"), ("{\"version\": 1, \"width\": 80, \"height\": 24}", "first line"),
            ("[0.1, \"o\", \"a\"]", "first line"),
            ("{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\"]\n[1, \"o\", \"z\"]", "line 2"),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"a\"]\n\n[-1, \"o\", \"a\"]\n[1, \"o\", \"z\"]",
                "line 4"
            ),
            ("{\"version\": 2, \"width\": 80, \"height\": 24}\n[\"0.1\", \"o\", \"a\"]\n[1, \"o\", \"z\"]", "line 2"),
            ("{\"version\": 2, \"width\": 80, \"height\": 24}\n[1e300, \"o\", \"a\"]\n[1, \"o\", \"z\"]", "line 2"),
            ("{\"version\": 2, \"width\": 80, \"height\": 24}\nnot json\n[1, \"o\", \"z\"]", "line 2"),
        ]
    )
    func refused(_ text: String, _ problem: String) {
        do {
            _ = try AsciicastPlayback(parsing: text)
            Issue.record("parsed: \(text)")
        } catch {
            #expect(error.description.contains(problem), "\(error)")
        }
    }

    @Test("a last line cut short (an agent that died mid-write) ends the recording; input is kept apart")
    func brokenLastLine() throws {
        let cast =
            "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"a\"]\n[0.2, \"i\", \"ls\\r\"]\n[0.3, \"o\", \"b"
        let playback = try AsciicastPlayback(parsing: cast)
        #expect(playback.output.map(\.text) == ["a"])
        #expect(playback.input == "ls\r")
    }
}
