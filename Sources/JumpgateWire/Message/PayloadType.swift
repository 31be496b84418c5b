/// The `PayloadType` header field (spec §4.2).
public struct PayloadType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public static let none = PayloadType(rawValue: 0)
    public static let output = PayloadType(rawValue: 1)
    public static let error = PayloadType(rawValue: 2)
    public static let size = PayloadType(rawValue: 3)
    public static let parameter = PayloadType(rawValue: 4)
    public static let handshakeRequest = PayloadType(rawValue: 5)
    public static let handshakeResponse = PayloadType(rawValue: 6)
    public static let handshakeComplete = PayloadType(rawValue: 7)
    public static let encChallengeRequest = PayloadType(rawValue: 8)
    public static let encChallengeResponse = PayloadType(rawValue: 9)
    public static let flag = PayloadType(rawValue: 10)
    public static let stdErr = PayloadType(rawValue: 11)
    public static let exitCode = PayloadType(rawValue: 12)
    /// Jumpgate fast path only: an `acknowledge` whose 8-byte payload is the highest contiguous
    /// sequence number received (a cumulative acknowledgement). Never sent to an official peer.
    public static let jumpgateCumulativeAck = PayloadType(rawValue: 0x4A47_0001)
    /// Jumpgate fast path only (`connect-errors`): a stream message from the agent saying why it could
    /// not connect a stream (JSON ``ConnectErrorPayload``), sent just before the official
    /// ConnectToPortError flag. Never sent to an official peer.
    public static let jumpgateConnectError = PayloadType(rawValue: 0x4A47_0002)

    public var name: String {
        switch self.rawValue {
        case 0: return "None"
        case 1: return "Output"
        case 2: return "Error"
        case 3: return "Size"
        case 4: return "Parameter"
        case 5: return "HandshakeRequest"
        case 6: return "HandshakeResponse"
        case 7: return "HandshakeComplete"
        case 8: return "EncChallengeRequest"
        case 9: return "EncChallengeResponse"
        case 10: return "Flag"
        case 11: return "StdErr"
        case 12: return "ExitCode"
        case 0x4A47_0001: return "JumpgateCumulativeAck"
        case 0x4A47_0002: return "JumpgateConnectError"
        default: return "Unknown(\(self.rawValue))"
        }
    }

    public var description: String { self.name }

    /// Handshake payloads are acknowledged before they are processed (spec §5.2).
    public var isHandshake: Bool {
        self == .handshakeRequest || self == .handshakeComplete || self == .encChallengeRequest
    }
}
