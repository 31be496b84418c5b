import JumpgateWire
import NIOCore

/// The golden vectors of `shared/protocol/golden_vectors.py` (spec §11), with the fields each decodes to.
public enum GoldenVectors {
    public static let createdDate: UInt64 = 1_700_000_000_000

    public struct Vector: Sendable {
        public var name: String
        public var hex: String
        public var messageType: MessageType
        public var sequenceNumber: Int64
        public var flags: UInt64
        public var messageID: String
        public var payloadType: PayloadType
        public var payload: [UInt8]
        public var digestHex: String

        public var bytes: [UInt8] { Hex.decode(self.hex)! }
        public var buffer: ByteBuffer { ByteBuffer(bytes: self.bytes) }
    }

    static let ackPayload = Array(
        #"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#
            .utf8
    )
    static let handshakeCompletePayload = Array(#"{"HandshakeTimeToComplete":52000000,"CustomerMessage":""}"#.utf8)

    public static let acknowledge = Vector(
        name: "acknowledge",
        hex:
            "0000007461636b6e6f776c65646765202020202020202020202020202020202020202020000000010000018bcfe56800000000000000000000000000000000038c9d0e1f2a3b4c5da1b2c3d4e5f64a7b713a0a17057de630213f7292907ce38462812ea213a29366f537f68c6ab60e8500000000000000b07b2241636b6e6f776c65646765644d65737361676554797065223a226f75747075745f73747265616d5f64617461222c2241636b6e6f776c65646765644d6573736167654964223a2264643031653536622d666634382d343833652d613530382d623566303733663331623136222c2241636b6e6f776c65646765644d65737361676553657175656e63654e756d626572223a302c22497353657175656e7469616c4d657373616765223a747275657d",
        messageType: .acknowledge,
        sequenceNumber: 0,
        flags: 3,
        messageID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        payloadType: .none,
        payload: ackPayload,
        digestHex: "713a0a17057de630213f7292907ce38462812ea213a29366f537f68c6ab60e85"
    )

    public static let inputHello = Vector(
        name: "input_stream_data hello",
        hex:
            "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000018bcfe56800000000000000000100000000000000008f0123456789abcd0123456789ab4cde2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824000000010000000568656c6c6f",
        messageType: .inputStreamData,
        sequenceNumber: 1,
        flags: 0,
        messageID: "01234567-89ab-4cde-8f01-23456789abcd",
        payloadType: .output,
        payload: Array("hello".utf8),
        digestHex: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )

    public static let terminateFlag = Vector(
        name: "input_stream_data TerminateSession flag",
        hex:
            "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000018bcfe56800000000000000000200000000000000008fedcba987654321fedcba9876544321433ebf5bc03dffa38536673207a21281612cef5faa9bc7a4d5b9be2fdb12cf1a0000000a0000000400000002",
        messageType: .inputStreamData,
        sequenceNumber: 2,
        flags: 0,
        messageID: "fedcba98-7654-4321-8fed-cba987654321",
        payloadType: .flag,
        payload: [0, 0, 0, 2],
        digestHex: "433ebf5bc03dffa38536673207a21281612cef5faa9bc7a4d5b9be2fdb12cf1a"
    )

    public static let handshakeComplete = Vector(
        name: "output_stream_data HandshakeComplete",
        hex:
            "000000746f75747075745f73747265616d5f646174612020202020202020202020202020000000010000018bcfe568000000000000000000000000000000000184445555555555551111111122224333c733d123d4d261546f607a570f6a0d44e5500558e2d85fca383055eed12c155600000007000000397b2248616e647368616b6554696d65546f436f6d706c657465223a35323030303030302c22437573746f6d65724d657373616765223a22227d",
        messageType: .outputStreamData,
        sequenceNumber: 0,
        flags: 1,
        messageID: "11111111-2222-4333-8444-555555555555",
        payloadType: .handshakeComplete,
        payload: handshakeCompletePayload,
        digestHex: PayloadDigest.sha256(of: ByteBuffer(bytes: handshakeCompletePayload)).hex
    )

    public static let inputSmuxSYNPSH = Vector(
        name: "input_stream_data smux SYN+PSH",
        hex:
            "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000018bcfe5680000000000000000030000000000000000855566666666666622222222333344441ed297482fa97820d97b1d7e7ec1f4f57a629a35c43f32516185e3b7d8b5e44d00000001000000150100000003000000010205000300000068656c6c6f",
        messageType: .inputStreamData,
        sequenceNumber: 3,
        flags: 0,
        messageID: "22222222-3333-4444-8555-666666666666",
        payloadType: .output,
        payload: [1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 5, 0, 3, 0, 0, 0] + Array("hello".utf8),
        digestHex: "1ed297482fa97820d97b1d7e7ec1f4f57a629a35c43f32516185e3b7d8b5e44d"
    )

    public static let all: [Vector] = [acknowledge, inputHello, terminateFlag, handshakeComplete, inputSmuxSYNPSH]

    /// Spec §11.4 smux v1 frames.
    public static let smuxSYN = "0100000003000000"
    public static let smuxPSHHello = "010205000300000068656c6c6f"
    public static let smuxFIN = "0101000003000000"
    public static let smuxNOP = "0103000000000000"
}

/// A deterministic clock for state-machine tests: time is a value that tests move by hand.
public struct ManualClock: Sendable {
    public private(set) var now: NIODeadline

    public init(start: NIODeadline = .uptimeNanoseconds(1_000_000_000)) {
        self.now = start
    }

    public mutating func advance(by amount: TimeAmount) {
        self.now = self.now + amount
    }
}
