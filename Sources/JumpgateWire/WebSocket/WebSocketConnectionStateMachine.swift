import NIOCore

/// What to do with the frames of one WebSocket connection: answer pings, reassemble fragmented
/// messages (bounded), validate and answer close frames. Data frames that arrive whole are passed on
/// as the slices they are; only fragmented messages are copied.
public struct WebSocketConnectionStateMachine: Sendable {
    public enum Action: Sendable, Equatable {
        case none
        /// A complete, unmasked message.
        case deliver(opcode: WebSocketOpcode, payload: ByteBuffer)
        case sendPong(ByteBuffer)
        /// Send a close frame with this code and reason, then close the connection once it is written.
        case sendCloseAndClose(code: UInt16, reason: String)
        /// The peer answered our close: close the connection.
        case close
    }

    /// Close codes (RFC 6455 §7.4.1).
    public enum CloseCode {
        public static let normal: UInt16 = 1000
        public static let goingAway: UInt16 = 1001
        public static let protocolError: UInt16 = 1002
        public static let unsupportedData: UInt16 = 1003
        public static let invalidPayload: UInt16 = 1007
        public static let policyViolation: UInt16 = 1008
        public static let messageTooBig: UInt16 = 1009
        public static let internalError: UInt16 = 1011
    }

    private enum State: Sendable {
        case open
        case closeSent
        case closed
    }

    public var maximumMessageSize: Int
    /// A smaller limit for the first data message only (an unauthenticated peer's opening message).
    public var firstMessageMaximumSize: Int?
    private var state: State = .open
    private var fragmentOpcode: WebSocketOpcode?
    private var fragments = ByteBuffer()

    public init(maximumMessageSize: Int = 1 << 20) {
        self.maximumMessageSize = maximumMessageSize
    }

    public var isOpen: Bool {
        if case .open = self.state { return true }
        return false
    }

    /// We start closing: returns the close frame's fields to send (nil if already closing).
    public mutating func closeInitiated(code: UInt16, reason: String) -> (code: UInt16, reason: String)? {
        guard case .open = self.state else { return nil }
        self.state = .closeSent
        return (code, reason)
    }

    public mutating func frameReceived(_ frame: WebSocketFrame) -> Action {
        if case .closed = self.state { return .none }
        switch frame.opcode {
        case .ping:
            guard case .open = self.state else { return .none }
            return .sendPong(frame.unmaskedPayload())
        case .pong:
            return .none
        case .close:
            return self.closeReceived(frame.unmaskedPayload())
        case .text, .binary:
            guard case .open = self.state else { return .none }
            guard self.fragmentOpcode == nil else {
                return self.fail(CloseCode.protocolError, "a new message started before the fragmented one finished")
            }
            if frame.fin {
                self.firstMessageMaximumSize = nil
                return .deliver(opcode: frame.opcode, payload: frame.unmaskedPayload())
            }
            self.fragmentOpcode = frame.opcode
            self.fragments.clear()
            return self.appendFragment(frame)
        case .continuation:
            guard case .open = self.state else { return .none }
            guard self.fragmentOpcode != nil else {
                return self.fail(CloseCode.protocolError, "continuation frame without a message to continue")
            }
            return self.appendFragment(frame)
        default:
            return self.fail(CloseCode.protocolError, "unknown opcode \(frame.opcode.rawValue)")
        }
    }

    private mutating func appendFragment(_ frame: WebSocketFrame) -> Action {
        let limit = min(self.maximumMessageSize, self.firstMessageMaximumSize ?? .max)
        guard self.fragments.readableBytes + frame.payload.readableBytes <= limit else {
            return self.fail(CloseCode.messageTooBig, "message exceeds \(limit) bytes")
        }
        if let key = frame.maskingKey {
            self.fragments.writeMaskedBytes(frame.payload, maskingKey: key)
        } else {
            self.fragments.writeImmutableBuffer(frame.payload)
        }
        guard frame.fin, let opcode = self.fragmentOpcode else { return .none }
        self.fragmentOpcode = nil
        self.firstMessageMaximumSize = nil
        let message = self.fragments
        self.fragments = ByteBuffer()
        return .deliver(opcode: opcode, payload: message)
    }

    /// The reason text of the peer's close frame, once one arrived with a valid body.
    public private(set) var peerCloseReason: String?

    private mutating func closeReceived(_ payload: ByteBuffer) -> Action {
        if case .closeSent = self.state {
            self.state = .closed
            return .close
        }
        self.state = .closed
        switch payload.readableBytes {
        case 0:
            return .sendCloseAndClose(code: CloseCode.normal, reason: "")
        case 1:
            return .sendCloseAndClose(code: CloseCode.protocolError, reason: "close frame with a 1-byte body")
        default:
            let code = payload.getInteger(at: payload.readerIndex, as: UInt16.self)!
            guard Self.isValidReceivedCloseCode(code) else {
                return .sendCloseAndClose(code: CloseCode.protocolError, reason: "invalid close code \(code)")
            }
            let reasonBytes = payload.getBytes(at: payload.readerIndex + 2, length: payload.readableBytes - 2)!
            guard Self.isValidUTF8(reasonBytes) else {
                return .sendCloseAndClose(code: CloseCode.invalidPayload, reason: "close reason is not valid UTF-8")
            }
            // The reply echoes the code only; the peer's reason is kept for the application.
            self.peerCloseReason = String(decoding: reasonBytes, as: UTF8.self)
            return .sendCloseAndClose(code: code, reason: "")
        }
    }

    private mutating func fail(_ code: UInt16, _ reason: String) -> Action {
        self.state = .closed
        return .sendCloseAndClose(code: code, reason: reason)
    }

    /// Codes a peer may send: 1000-1003, 1007-1011 and the registered/private ranges 3000-4999.
    public static func isValidReceivedCloseCode(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: return true
        default: return false
        }
    }

    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

extension ByteBuffer {
    /// A close frame body: the code, then the UTF-8 reason truncated to fit 125 bytes.
    public static func webSocketCloseBody(code: UInt16, reason: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(code)
        var reasonBytes = Array(reason.utf8.prefix(123))
        while !WebSocketConnectionStateMachine.isValidUTF8(reasonBytes) { reasonBytes.removeLast() }
        buffer.writeBytes(reasonBytes)
        return buffer
    }
}
