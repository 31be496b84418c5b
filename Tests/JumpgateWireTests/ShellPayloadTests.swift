import JumpgateWire
import NIOCore
import PropertyBased
import Testing

@Suite("Shell payloads and UTF-8 boundaries")
struct ShellPayloadTests {
    @Test("a terminal size is the official plugin's compact JSON, both ways")
    func terminalSize() throws {
        let size = TerminalSize(columns: 120, rows: 40)
        #expect(String(buffer: size.encoded()) == #"{"cols":120,"rows":40}"#)
        #expect(try TerminalSize(payload: ByteBuffer(string: #"{"cols":120,"rows":40}"#)) == size)
        // Any key order and spacing, as JSON allows.
        #expect(try TerminalSize(payload: ByteBuffer(string: #" { "rows": 100, "cols": 300 } "#)) == .notATerminal)
        #expect(try TerminalSize(payload: ByteBuffer(string: #"{"cols":0,"rows":65535}"#)).rows == 65535)
    }

    @Test(
        "a size that is not two 16-bit numbers is refused",
        arguments: [
            "", "not json", #"{"cols":80}"#, #"{"rows":24}"#, #"{"cols":"80","rows":24}"#, #"{"cols":-1,"rows":24}"#,
            #"{"cols":80,"rows":65536}"#, #"{"cols":4294967295,"rows":24}"#, #"{"cols":80.5,"rows":24}"#, "[80,24]",
        ]
    )
    func terminalSizeRefused(_ text: String) {
        #expect(throws: WireError.self) { try TerminalSize(payload: ByteBuffer(string: text)) }
    }

    @Test("an exit code is the official agent's EXIT_CODE text, both ways")
    func exitCode() throws {
        #expect(String(buffer: ExitCodePayload(code: 3).encoded()) == "EXIT_CODE: 3")
        #expect(String(buffer: ExitCodePayload(code: -1).encoded()) == "EXIT_CODE: -1")
        #expect(try ExitCodePayload(payload: ByteBuffer(string: "EXIT_CODE: 0")).code == 0)
        #expect(try ExitCodePayload(payload: ByteBuffer(string: "EXIT_CODE: -1")).code == -1)
        #expect(try ExitCodePayload(payload: ByteBuffer(string: "EXIT_CODE: 255")).code == 255)
    }

    @Test(
        "an exit code payload that is not EXIT_CODE and an integer is refused",
        arguments: [
            "", "EXIT_CODE:", "EXIT_CODE: ", "EXIT_CODE: x", "EXIT_CODE: 1\n", "exit_code: 1", "EXIT_CODE: 99999999999",
        ]
    )
    func exitCodeRefused(_ text: String) {
        #expect(throws: WireError.self) { try ExitCodePayload(payload: ByteBuffer(string: text)) }
    }

    @Test("an unfinished character at the end of a read waits for the next one")
    func boundaryHoldsUnfinished() {
        var boundary = UTF8Boundary()
        // "é" is C3 A9, "€" is E2 82 AC, "😀" is F0 9F 98 80.
        #expect(Array(boundary.next(ByteBuffer(bytes: [0x61, 0xC3])).readableBytesView) == [0x61])
        #expect(boundary.heldCount == 1)
        #expect(Array(boundary.next(ByteBuffer(bytes: [0xA9, 0xE2, 0x82])).readableBytesView) == [0xC3, 0xA9])
        #expect(Array(boundary.next(ByteBuffer(bytes: [0xAC])).readableBytesView) == [0xE2, 0x82, 0xAC])
        #expect(boundary.next(ByteBuffer(bytes: [0xF0, 0x9F, 0x98])).readableBytes == 0)
        #expect(Array(boundary.next(ByteBuffer(bytes: [0x80])).readableBytesView) == [0xF0, 0x9F, 0x98, 0x80])
        // U+FFFD (EF BF BD) is a character like any other (the official agent turns it into a lone EF).
        #expect(Array(boundary.next(ByteBuffer(bytes: [0xEF, 0xBF, 0xBD])).readableBytesView) == [0xEF, 0xBF, 0xBD])
        #expect(boundary.heldCount == 0)
    }

    @Test("what is not UTF-8 passes through, and the end hands back what was held")
    func boundaryPassesInvalid() {
        var boundary = UTF8Boundary()
        // A stray continuation byte, an invalid lead byte, and four continuations in a row: never held.
        #expect(Array(boundary.next(ByteBuffer(bytes: [0x80])).readableBytesView) == [0x80])
        #expect(Array(boundary.next(ByteBuffer(bytes: [0x61, 0xFF])).readableBytesView) == [0x61, 0xFF])
        #expect(boundary.next(ByteBuffer(bytes: [0x80, 0x80, 0x80, 0x80])).readableBytes == 4)
        // A lead byte already followed by all it announces is complete, even if what follows is garbage.
        #expect(boundary.next(ByteBuffer(bytes: [0xC3, 0xA9, 0x80])).readableBytes == 3)
        // An output that ends inside a character: the end sends the held bytes (the official agent drops them).
        #expect(boundary.next(ByteBuffer(bytes: [0x62, 0xE2, 0x82])).readableBytes == 1)
        #expect(Array(boundary.finish().readableBytesView) == [0xE2, 0x82])
        #expect(boundary.heldCount == 0 && boundary.finish().readableBytes == 0)
    }

    /// `bytes` as successive reads of the lengths `cuts` gives, cycling through them.
    static func pieces(_ bytes: [UInt8], cuts: [Int]) -> [ByteBuffer] {
        var input = ByteBuffer(bytes: bytes)
        var pieces: [ByteBuffer] = []
        while input.readableBytes > 0 {
            pieces.append(input.readSlice(length: min(cuts[pieces.count % cuts.count], input.readableBytes))!)
        }
        return pieces
    }

    @Test("property: text cut anywhere comes out whole, in characters, and nothing is lost")
    func boundaryProperty() async {
        // One-, two-, three- and four-byte characters, U+FFFD among them.
        let alphabet: [Unicode.Scalar] = [
            "a", " ", "\n", "é", "ß", "€", "\u{2028}", "\u{FFFD}", "中", "😀", "\u{10FFFF}",
        ]
        await propertyCheck(
            count: 300,
            input: Gen.int(in: 0...(alphabet.count - 1)).array(of: 0...60),
            Gen.int(in: 1...9).array(of: 1...40)
        ) { picks, cuts in
            let text = String(String.UnicodeScalarView(picks.map { alphabet[$0] }))
            var boundary = UTF8Boundary()
            var output: [UInt8] = []
            for piece in Self.pieces(Array(text.utf8), cuts: cuts) {
                let sent = boundary.next(piece)
                // Every message holds whole characters.
                #expect(String(validating: sent.readableBytesView, as: UTF8.self) != nil)
                #expect(boundary.heldCount <= 3)
                output += sent.readableBytesView
            }
            #expect(boundary.finish().readableBytes == 0)
            #expect(output == Array(text.utf8))
        }
    }

    @Test("property: any bytes come out unchanged, holding at most three")
    func boundaryBytesProperty() async {
        await propertyCheck(count: 300, input: Gen.uint8().array(of: 0...80), Gen.int(in: 1...7).array(of: 1...20)) {
            bytes,
            cuts in
            var boundary = UTF8Boundary()
            var output: [UInt8] = []
            for piece in Self.pieces(bytes, cuts: cuts) {
                output += boundary.next(piece).readableBytesView
                #expect(boundary.heldCount <= 3)
            }
            output += boundary.finish().readableBytesView
            #expect(output == bytes)
        }
    }
}
