import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// ``SmuxFrameParser``: frames out of SSM payloads cut anywhere, the whole ones read in place (the payload
/// may be borrowed from TLS's read buffer), only a cut frame's start kept, in storage of its own.
@Suite("smux frames out of payloads cut anywhere")
struct SmuxFrameParserTests {
    /// A seeded mix of every command, data sizes from empty to the largest smux allows.
    static func frames(count: Int, version: UInt8, rng: inout SplitMix64) -> [SmuxFrame] {
        (0..<count).map { _ in
            let id = SmuxStreamID(UInt32.random(in: 1...9, using: &rng))
            switch UInt8.random(in: 0...(version == 2 ? 5 : 4), using: &rng) {
            case 0: return SmuxFrame(version: version, command: .syn, streamID: id)
            case 1: return SmuxFrame(version: version, command: .fin, streamID: id)
            case 2: return SmuxFrame(version: version, command: .nop, streamID: id)
            case 5: return .windowUpdate(version: 2, streamID: id, .init(consumed: rng.next32(), window: rng.next32()))
            default:
                let size = [0, 1, 7, 8, 9, 1024, 65535].randomElement(using: &rng)!
                var data = ByteBuffer()
                for _ in 0..<size { data.writeInteger(UInt8.random(in: 0...255, using: &rng)) }
                return SmuxFrame(version: version, command: .psh, streamID: id, data: data)
            }
        }
    }

    @Test("v1 and v2: any cutting of the stream gives the same frames, in order (seeded)")
    func anyCutting() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("SmuxFrameParserTests: seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for round in 0..<40 {
            let version: UInt8 = round % 2 == 0 ? 1 : 2
            let sent = Self.frames(count: 30, version: version, rng: &rng)
            var stream = ByteBuffer()
            for frame in sent { stream.writeSmuxFrame(frame) }
            // Pieces from 1 byte (drip-fed) to larger than any frame.
            let largest = [1, 3, 9, 100, 70_000][round % 5]
            var parser = SmuxFrameParser(version: version)
            var received: [SmuxFrame] = []
            while stream.readableBytes > 0 {
                let piece = stream.readSlice(
                    length: min(Int.random(in: 1...largest, using: &rng), stream.readableBytes)
                )!
                try parser.parse(piece) { received.append($0) }
            }
            #expect(received == sent, "round \(round), pieces up to \(largest) bytes (seed \(seed))")
            #expect(parser.heldBytes == 0)
        }
    }

    @Test("a frame whole in its piece is a slice of it; a cut frame's start is a copy, so the piece is unshared")
    func wholeFramesInPlaceCutFramesCopied() throws {
        var stream = ByteBuffer()
        let data = ByteBuffer(repeating: 7, count: 3000)
        for id in 1...3 {
            stream.writeSmuxFrame(SmuxFrame(version: 2, command: .psh, streamID: SmuxStreamID(UInt32(id)), data: data))
        }
        // The first piece holds frames 1 and 2 whole and the first 100 bytes of frame 3.
        var piece = ByteBufferAllocator().buffer(capacity: 8192)
        piece.writeImmutableBuffer(stream.getSlice(at: 0, length: 2 * 3008 + 100)!)
        let range = piece.withUnsafeReadableBytes {
            UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count)
        }
        var parser = SmuxFrameParser(version: 2)
        var received: [SmuxFrame] = []
        try parser.parse(piece) { received.append($0) }
        #expect(received.count == 2 && parser.heldBytes == 100)
        let inPlace = received.allSatisfy { frame in
            frame.data.withUnsafeReadableBytes { range.contains(UInt(bitPattern: $0.baseAddress!)) }
        }
        #expect(inPlace, "a whole frame was copied")
        received.removeAll()  // written out and gone, as at the end of a read
        let reused = piece.reusedInPlace()
        #expect(reused, "the parser kept a slice of the piece")

        // The next piece completes frame 3 (from the held copy) and brings a whole frame 4 (read in place).
        var next = ByteBuffer()
        next.writeImmutableBuffer(stream.getSlice(at: 2 * 3008 + 100, length: 3008 - 100)!)
        next.writeSmuxFrame(SmuxFrame(version: 2, command: .fin, streamID: SmuxStreamID(3)))
        let nextRange = next.withUnsafeReadableBytes {
            UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count)
        }
        try parser.parse(next) { received.append($0) }
        #expect(received.map(\.command) == [.psh, .fin] && received.first?.data == data)
        let completedInCopy = received[0].data.withUnsafeReadableBytes {
            !nextRange.contains(UInt(bitPattern: $0.baseAddress!)) && !range.contains(UInt(bitPattern: $0.baseAddress!))
        }
        #expect(completedInCopy, "the cut frame was not completed in the parser's own buffer")
        #expect(parser.heldBytes == 0)
        received.removeAll()
        let nextReused = next.reusedInPlace()
        #expect(nextReused, "the parser kept a slice of the piece that completed the cut frame")
    }

    @Test(
        "a cut header that turns out bad throws once its 8 bytes are in; one still short waits",
        arguments: [
            (2, SmuxCommand.psh, 4),  // another version
            (1, SmuxCommand.upd, 8),  // UPD in v1
            (1, SmuxCommand(rawValue: 9), 0),  // an unknown command
        ] as [(UInt8, SmuxCommand, UInt16)]
    )
    func badHeaderAcrossPieces(version: UInt8, command: SmuxCommand, length: UInt16) throws {
        var parser = SmuxFrameParser(version: 1)
        var stream = ByteBuffer()
        stream.writeSmuxFrame(SmuxFrame(version: 1, command: .nop, streamID: SmuxStreamID(1)))
        stream.writeSmuxHeader(version: version, command: command, length: length, streamID: SmuxStreamID(1))
        var before: [SmuxFrame] = []
        try parser.parse(stream.getSlice(at: 0, length: 13)!) { before.append($0) }
        #expect(before.map(\.command) == [.nop] && parser.heldBytes == 5)
        #expect(throws: WireError.self) {
            try parser.parse(stream.getSlice(at: 13, length: 3)!) { _ in }
        }
    }

    @Test("v2: an UPD frame not 8 bytes long throws, whole or cut")
    func badWindowUpdate() throws {
        var header = ByteBuffer()
        header.writeSmuxHeader(version: 2, command: .upd, length: 4, streamID: SmuxStreamID(1))
        var whole = SmuxFrameParser(version: 2)
        #expect(throws: WireError.self) { try whole.parse(header) { _ in } }
        var cut = SmuxFrameParser(version: 2)
        try cut.parse(header.getSlice(at: 0, length: 2)!) { _ in }
        #expect(throws: WireError.self) { try cut.parse(header.getSlice(at: 2, length: 6)!) { _ in } }
    }
}

extension SplitMix64 {
    mutating func next32() -> UInt32 { UInt32(truncatingIfNeeded: self.next()) }
}
