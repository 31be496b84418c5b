/// The error every decoder and state machine in this library throws.
///
/// Compare ``code``, never whole errors; ``description`` says what was wrong for a human.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case truncatedMessage, invalidHeaderLength, invalidMessageType, inconsistentPayloadLength
            case invalidMessage, digestMismatch, invalidPayload, payloadTooLarge
            case invalidWebSocketFrame, webSocketFrameTooLarge
            case invalidSmuxFrame, smuxProtocolViolation
            case handshakeFailed, handshakeTimedOut, unsupportedVersion
            case invalidSignature, signatureExpired, unknownAccessKey, malformedAuthorization
            case bufferFull, resendLimitReached
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        public static let truncatedMessage = Code(.truncatedMessage)
        public static let invalidHeaderLength = Code(.invalidHeaderLength)
        public static let invalidMessageType = Code(.invalidMessageType)
        public static let inconsistentPayloadLength = Code(.inconsistentPayloadLength)
        public static let invalidMessage = Code(.invalidMessage)
        public static let digestMismatch = Code(.digestMismatch)
        public static let invalidPayload = Code(.invalidPayload)
        public static let payloadTooLarge = Code(.payloadTooLarge)
        public static let invalidWebSocketFrame = Code(.invalidWebSocketFrame)
        public static let webSocketFrameTooLarge = Code(.webSocketFrameTooLarge)
        public static let invalidSmuxFrame = Code(.invalidSmuxFrame)
        public static let smuxProtocolViolation = Code(.smuxProtocolViolation)
        public static let handshakeFailed = Code(.handshakeFailed)
        public static let handshakeTimedOut = Code(.handshakeTimedOut)
        public static let unsupportedVersion = Code(.unsupportedVersion)
        public static let invalidSignature = Code(.invalidSignature)
        public static let signatureExpired = Code(.signatureExpired)
        public static let unknownAccessKey = Code(.unknownAccessKey)
        public static let malformedAuthorization = Code(.malformedAuthorization)
        public static let bufferFull = Code(.bufferFull)
        public static let resendLimitReached = Code(.resendLimitReached)

        public var description: String { String(describing: self.base) }
    }

    public var code: Code
    public var reason: String

    @inline(never)
    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { self.reason }
}
