import NIOCore

/// A smux stream id. Clients open odd ids starting at 3; servers would use even ids.
public struct SmuxStreamID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public static func < (lhs: SmuxStreamID, rhs: SmuxStreamID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(self.rawValue) }
}

/// A smux command byte.
public struct SmuxCommand: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let syn = SmuxCommand(rawValue: 0)
    public static let fin = SmuxCommand(rawValue: 1)
    public static let psh = SmuxCommand(rawValue: 2)
    public static let nop = SmuxCommand(rawValue: 3)
    /// Window update; protocol version 2 only.
    public static let upd = SmuxCommand(rawValue: 4)

    public var description: String {
        switch self.rawValue {
        case 0: return "SYN"
        case 1: return "FIN"
        case 2: return "PSH"
        case 3: return "NOP"
        case 4: return "UPD"
        default: return "cmd(\(self.rawValue))"
        }
    }
}

/// One smux frame: an 8-byte little-endian header (version, cmd, length, stream id) and data.
public struct SmuxFrame: Hashable, Sendable {
    public static let headerSize = 8
    /// What a UPD frame takes: its header and two 32-bit counters.
    public static let windowUpdateSize = headerSize + 8
    /// The largest PSH payload smux sends.
    public static let maximumDataSize = 32768

    public var version: UInt8
    public var command: SmuxCommand
    public var streamID: SmuxStreamID
    /// PSH data, UPD's 8 bytes, otherwise empty. A slice of the received bytes.
    public var data: ByteBuffer

    public init(version: UInt8, command: SmuxCommand, streamID: SmuxStreamID, data: ByteBuffer = ByteBuffer()) {
        self.version = version
        self.command = command
        self.streamID = streamID
        self.data = data
    }

    /// A UPD frame's content: bytes consumed so far on the stream and the receive window.
    public struct WindowUpdate: Hashable, Sendable {
        public var consumed: UInt32
        public var window: UInt32
        public init(consumed: UInt32, window: UInt32) {
            self.consumed = consumed
            self.window = window
        }
    }

    public static func windowUpdate(version: UInt8 = 2, streamID: SmuxStreamID, _ update: WindowUpdate) -> SmuxFrame {
        var data = ByteBuffer()
        data.writeMultipleIntegers(update.consumed, update.window, endianness: .little)
        return SmuxFrame(version: version, command: .upd, streamID: streamID, data: data)
    }

    public var windowUpdate: WindowUpdate? {
        guard self.command == .upd, self.data.readableBytes >= 8,
            let (consumed, window) = self.data.getMultipleIntegers(
                at: self.data.readerIndex,
                endianness: .little,
                as: (UInt32, UInt32).self
            )
        else { return nil }
        return WindowUpdate(consumed: consumed, window: window)
    }
}

extension ByteBuffer {
    @discardableResult
    public mutating func writeSmuxFrame(_ frame: SmuxFrame) -> Int {
        self.writeSmuxHeader(
            version: frame.version,
            command: frame.command,
            length: UInt16(truncatingIfNeeded: frame.data.readableBytes),
            streamID: frame.streamID
        )
            + self.writeImmutableBuffer(frame.data)
    }

    /// A UPD frame, written in place (``SmuxFrame/windowUpdate(version:streamID:_:)`` builds one as a frame).
    @discardableResult
    public mutating func writeSmuxWindowUpdate(
        version: UInt8,
        streamID: SmuxStreamID,
        _ update: SmuxFrame.WindowUpdate
    ) -> Int {
        self.writeSmuxHeader(version: version, command: .upd, length: 8, streamID: streamID)
            + self.writeMultipleIntegers(update.consumed, update.window, endianness: .little)
    }

    @discardableResult
    public mutating func writeSmuxHeader(
        version: UInt8,
        command: SmuxCommand,
        length: UInt16,
        streamID: SmuxStreamID
    ) -> Int {
        self.writeMultipleIntegers(version, command.rawValue, length, streamID.rawValue, endianness: .little)
    }
}

/// One smux frame from the front of a buffer, or nil while the buffer holds less than a frame. smux bytes
/// are not aligned with the SSM messages that carry them (spec pitfall 16): ``SmuxFrameParser`` keeps a
/// frame cut between messages and uses this decoder on each piece.
public struct SmuxFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = SmuxFrame

    /// The protocol version expected; anything else kills the mux session, as in smux.
    public var version: UInt8

    public init(version: UInt8) {
        self.version = version
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SmuxFrame? {
        guard buffer.readableBytes >= SmuxFrame.headerSize,
            let (version, command, length, streamID) = buffer.getMultipleIntegers(
                at: buffer.readerIndex,
                endianness: .little,
                as: (UInt8, UInt8, UInt16, UInt32).self
            )
        else { return nil }
        guard version == self.version else {
            throw WireError(.invalidSmuxFrame, "smux frame has version \(version), expected \(self.version)")
        }
        let cmd = SmuxCommand(rawValue: command)
        guard command <= 3 || (command == 4 && version == 2) else {
            throw WireError(.invalidSmuxFrame, "smux frame has unknown command \(command) for version \(version)")
        }
        if cmd == .upd, length != 8 {
            throw WireError(.invalidSmuxFrame, "smux UPD frame carries \(length) bytes, expected 8")
        }
        guard buffer.readableBytes >= SmuxFrame.headerSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: SmuxFrame.headerSize)
        let data = buffer.readSlice(length: Int(length))!
        return SmuxFrame(version: version, command: cmd, streamID: SmuxStreamID(streamID), data: data)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SmuxFrame? {
        try self.decode(buffer: &buffer)
    }
}
