import NIOCore

/// smux frames out of the pieces of a byte stream (SSM message payloads, which need not be aligned with
/// frames). A frame whole in its piece comes out as a slice of that piece, copied nowhere: the piece may
/// be borrowed from the TLS handler's read buffer, and what the session writes of it is on its way out
/// before the read ends. Only the start of a frame cut at a piece's end outlives the piece: it is copied
/// into a buffer of its own, and completed there from the next piece with just the bytes it lacks (so a
/// cut frame is copied whole, once); the rest of that piece is again read in place.
///
/// (NIO's `NIOSingleStepByteToMessageProcessor`, used before, keeps the last piece it was given as its
/// buffer, even once it is all read: a slice of TLS's buffer alive past every read.)
public struct SmuxFrameParser {
    private var decoder: SmuxFrameDecoder
    /// The start of a frame cut at the end of the last piece, in storage of its own; nil when none is.
    private var cut: ByteBuffer?

    public init(version: UInt8) {
        self.decoder = SmuxFrameDecoder(version: version)
    }

    /// Bytes held for a frame that the next piece completes.
    public var heldBytes: Int { self.cut?.readableBytes ?? 0 }

    /// Hands `body` each frame that `piece` completes or holds whole, in order. A malformed header
    /// (another version, an unknown command, an UPD frame not 8 bytes long) throws as soon as its 8 bytes
    /// are in, after the frames before it; the parser is of no further use then (the session ends).
    public mutating func parse(_ piece: ByteBuffer, _ body: (SmuxFrame) throws -> Void) throws {
        var piece = piece
        if var cut = self.cut {
            self.cut = nil
            // The header first (its length says how much more the frame needs), then the rest of the frame.
            Self.move(SmuxFrame.headerSize - cut.readableBytes, from: &piece, to: &cut)
            if let length = cut.getInteger(at: cut.readerIndex + 2, endianness: .little, as: UInt16.self) {
                Self.move(SmuxFrame.headerSize + Int(length) - cut.readableBytes, from: &piece, to: &cut)
            }
            guard let frame = try self.decoder.decode(buffer: &cut) else {
                self.cut = cut  // still short: the piece went into it whole
                return
            }
            try body(frame)
        }
        while let frame = try self.decoder.decode(buffer: &piece) {
            try body(frame)
        }
        if piece.readableBytes > 0 {
            // Room for the whole frame once its header says how long it is, so completing it moves no bytes.
            let length = piece.getInteger(at: piece.readerIndex + 2, endianness: .little, as: UInt16.self)
            var cut = ByteBufferAllocator().buffer(
                capacity: length.map { SmuxFrame.headerSize + Int($0) } ?? SmuxFrame.headerSize
            )
            cut.writeImmutableBuffer(piece)
            self.cut = cut
        }
    }

    /// Moves up to `count` bytes from the front of `piece` to the end of `cut`.
    private static func move(_ count: Int, from piece: inout ByteBuffer, to cut: inout ByteBuffer) {
        guard count > 0, var bytes = piece.readSlice(length: min(count, piece.readableBytes)) else { return }
        cut.writeBuffer(&bytes)
    }
}
