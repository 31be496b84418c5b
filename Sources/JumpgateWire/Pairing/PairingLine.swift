import NIOCore

/// The one line a relay-blind pairing connection opens with, in clear, before its end-to-end TLS
/// (docs/BLIND-RELAY.md): `JGPAIR/1 <role> <pairing token>\n`. It routes the connection and nothing
/// else: the token is single-use and bound to one session and one role, and the two ends authenticate
/// each other inside TLS.
public struct PairingLine: Sendable, Hashable {
    public enum Role: String, Sendable, Hashable, CaseIterable {
        case client
        case agent

        public var other: Role { self == .client ? .agent : .client }
    }

    /// Why a line was refused. Each is a refusal the gateway counts and audits.
    public enum Refusal: String, Error, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// More than ``maximumLength`` bytes without a newline.
        case tooLong = "PairingLineTooLong"
        /// Not `JGPAIR/1 `, or another version.
        case unknownProtocol = "PairingUnknownProtocol"
        /// A role other than `client` or `agent`.
        case unknownRole = "PairingUnknownRole"
        /// Not three fields, or a token of the wrong length or alphabet.
        case malformed = "PairingMalformedLine"

        public var description: String {
            switch self {
            case .tooLong: "the pairing line is longer than \(PairingLine.maximumLength) bytes"
            case .unknownProtocol: "the connection is neither TLS nor a JGPAIR/1 pairing line"
            case .unknownRole: "the pairing line names a role other than client or agent"
            case .malformed: "the pairing line is not \"JGPAIR/1 <client|agent> <token>\""
            }
        }
    }

    public static let maximumLength = 128
    static let magic = "JGPAIR/1"
    /// A pairing token: 32 random bytes, base64url without padding.
    public static let tokenLength = 43

    public var role: Role
    public var token: String

    public init(role: Role, token: String) {
        self.role = role
        self.token = token
    }

    /// Whether `byte` can start a pairing line (a TLS connection starts with 0x16, a handshake record).
    public static func canStart(with byte: UInt8) -> Bool { byte == UInt8(ascii: "J") }

    public func encoded() -> ByteBuffer {
        ByteBuffer(string: "\(Self.magic) \(self.role.rawValue) \(self.token)\n")
    }

    /// The line at the front of `buffer`, consumed with its newline; nil while it has not all arrived.
    /// What follows it in `buffer` is left there (the TLS that follows the answer, for a peer that did
    /// not wait; the gateway refuses that).
    public static func parse(_ buffer: inout ByteBuffer) throws(Refusal) -> PairingLine? {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count >= Self.maximumLength { throw .tooLong }
            // A prefix that already differs from the magic is refused at once, not after 128 bytes.
            let magic = Array(Self.magic.utf8)
            if !view.prefix(magic.count).elementsEqual(magic.prefix(view.count)) { throw .unknownProtocol }
            return nil
        }
        let length = newline - view.startIndex
        guard length < Self.maximumLength else { throw .tooLong }
        let fields = view[view.startIndex..<newline].split(
            separator: UInt8(ascii: " "),
            omittingEmptySubsequences: false
        )
        guard let first = fields.first, first.elementsEqual(Self.magic.utf8) else { throw .unknownProtocol }
        guard fields.count == 3 else { throw .malformed }
        guard let role = Role(rawValue: String(decoding: fields[1], as: UTF8.self)) else { throw .unknownRole }
        let token = fields[2]
        guard token.count == Self.tokenLength, token.allSatisfy(Self.isTokenByte) else { throw .malformed }
        buffer.moveReaderIndex(forwardBy: length + 1)
        return PairingLine(role: role, token: String(decoding: token, as: UTF8.self))
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }
}
