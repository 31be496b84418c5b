import NIOCore

/// Cuts terminal output at UTF-8 character boundaries: what a read returns is sent at once, except an
/// unfinished multi-byte character at its end (at most 3 bytes), which waits for the next read. The
/// official plugin prints each message as it comes, so a character split across two messages could be
/// shown as two broken ones. Bytes that are not UTF-8 pass through unchanged, and ``finish()`` hands back
/// what is still held when the output ends (the official agent drops it; docs/PROTOCOL.md §8).
public struct UTF8Boundary: Sendable {
    /// The start of an unfinished character, held for the next read.
    private var held: [UInt8] = []

    public init() {}

    /// How many bytes `next` holds back now.
    public var heldCount: Int { self.held.count }

    /// What may be sent after a read of `bytes`: the bytes held before, then `bytes`, without an unfinished
    /// character at the end (held instead). Empty when everything is held.
    public mutating func next(_ bytes: ByteBuffer) -> ByteBuffer {
        var output = bytes  // nothing held (the usual case): the read itself, not a copy
        if !self.held.isEmpty {
            output = ByteBuffer()
            output.reserveCapacity(self.held.count + bytes.readableBytes)
            output.writeBytes(self.held)
            self.held.removeAll(keepingCapacity: true)
            output.writeImmutableBuffer(bytes)
        }
        let unfinished = Self.unfinishedSuffix(output.readableBytesView)
        if unfinished > 0 {
            self.held.append(contentsOf: output.readableBytesView.suffix(unfinished))
            output.moveWriterIndex(to: output.writerIndex - unfinished)
        }
        return output
    }

    /// The output ended: whatever is still held, sent as it is.
    public mutating func finish() -> ByteBuffer {
        defer { self.held.removeAll() }
        return ByteBuffer(bytes: self.held)
    }

    /// The length of the unfinished character at the end of `bytes`: a lead byte within the last three
    /// bytes, followed only by continuation bytes, fewer than it announces. 0 when the end is complete, or
    /// is not UTF-8 (which is never held).
    static func unfinishedSuffix(_ bytes: ByteBufferView) -> Int {
        var index = bytes.endIndex
        var continuations = 0
        while index > bytes.startIndex, continuations < 3 {
            index = bytes.index(before: index)
            let byte = bytes[index]
            if byte & 0xC0 == 0x80 {
                continuations += 1
                continue
            }
            let expected: Int
            switch byte {
            case 0xC2...0xDF: expected = 2
            case 0xE0...0xEF: expected = 3
            case 0xF0...0xF4: expected = 4
            default: return 0  // ASCII or not a lead byte: nothing to wait for
            }
            let present = continuations + 1
            return present < expected ? present : 0
        }
        return 0
    }
}
