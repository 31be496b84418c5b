import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

@Suite("jumpgate debug decode-frame / encode-frame")
struct DebugFrameCommandTests {
    @Test(
        "every golden vector decodes to the spec's fields through the binary",
        arguments: GoldenVectors.all.map(\.name)
    )
    func decodeGolden(name: String) throws {
        let vector = GoldenVectors.all.first { $0.name == name }!
        for (arguments, input) in [
            (["debug", "decode-frame"], vector.bytes), (["debug", "decode-frame", "--hex"], Array(vector.hex.utf8)),
        ] {
            let result = try BinaryRunner.run("jumpgate", arguments, stdin: input)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try JSONValue(parsing: result.stdout)
            #expect(json["HeaderLength"]?.int64Value == 116)
            #expect(json["MessageType"]?.stringValue == vector.messageType.rawValue)
            #expect(json["SchemaVersion"]?.int64Value == 1)
            #expect(json["CreatedDate"]?.int64Value == 1_700_000_000_000)
            #expect(json["SequenceNumber"]?.int64Value == vector.sequenceNumber)
            #expect(json["Flags"]?.int64Value == Int64(vector.flags))
            #expect(json["MessageId"]?.stringValue == vector.messageID)
            #expect(json["PayloadDigest"]?.stringValue == vector.digestHex)
            #expect(json["DigestValid"]?.boolValue == true)
            #expect(json["PayloadType"]?.int64Value == Int64(vector.payloadType.rawValue))
            #expect(json["PayloadLength"]?.int64Value == Int64(vector.payload.count))
            #expect(json["Payload"]?.stringValue.flatMap(Base64.decode) == vector.payload)
            #expect(json["DecodeError"] == nil)
        }
    }

    @Test("decoded payloads: acknowledge JSON, flag, handshake complete, raw output")
    func decodedPayloads() throws {
        func decoded(_ vector: GoldenVectors.Vector) throws -> JSONValue? {
            try JSONValue(
                parsing: BinaryRunner.run("jumpgate", ["debug", "decode-frame"], stdin: vector.bytes).stdout
            )["Decoded"]
        }
        #expect(
            try decoded(GoldenVectors.acknowledge)?["AcknowledgedMessageId"]?.stringValue
                == "dd01e56b-ff48-483e-a508-b5f073f31b16"
        )
        #expect(try decoded(GoldenVectors.terminateFlag) == ["Flag": 2, "Name": "TerminateSession"])
        #expect(try decoded(GoldenVectors.handshakeComplete)?["HandshakeTimeToComplete"]?.int64Value == 52_000_000)
        #expect(try decoded(GoldenVectors.inputHello) == .null)
    }

    @Test("decode then encode reproduces every golden vector byte for byte", arguments: GoldenVectors.all.map(\.name))
    func roundTrip(name: String) throws {
        let vector = GoldenVectors.all.first { $0.name == name }!
        let description = try BinaryRunner.run("jumpgate", ["debug", "decode-frame"], stdin: vector.bytes)
        let raw = try BinaryRunner.run("jumpgate", ["debug", "encode-frame"], stdin: description.stdout)
        #expect(raw.status == 0, "\(raw.stderr)")
        #expect(raw.stdout == vector.bytes)
        let hex = try BinaryRunner.run("jumpgate", ["debug", "encode-frame", "--hex"], stdin: description.stdout)
        #expect(hex.stdoutText.trimmingSuffixNewline == vector.hex)
    }

    @Test("encode-frame computes the digest and length when they are absent")
    func encodeComputesDigest() throws {
        let input =
            #"{"MessageType":"input_stream_data","CreatedDate":1700000000000,"SequenceNumber":1,"MessageId":"01234567-89ab-4cde-8f01-23456789abcd","PayloadType":1,"Payload":"aGVsbG8=","Decoded":{"ignored":true}}"#
        let result = try BinaryRunner.run("jumpgate", ["debug", "encode-frame"], stdin: Array(input.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == GoldenVectors.inputHello.bytes)
    }

    @Test(
        "a header that does not decode exits 1 with the reason",
        arguments: [
            ("truncated", Array(GoldenVectors.inputHello.bytes.prefix(100)), "shorter than the 120-byte header"),
            (
                "wrong HeaderLength", [0, 0, 0, 0x78] + GoldenVectors.inputHello.bytes.dropFirst(4),
                "HeaderLength is 120"
            ),
            (
                "inconsistent lengths", GoldenVectors.inputHello.bytes + [0],
                "PayloadLength is 5 but 6 payload bytes follow"
            ),
        ]
    )
    func badHeader(name: String, bytes: [UInt8], reason: String) throws {
        let result = try BinaryRunner.run("jumpgate", ["debug", "decode-frame"], stdin: bytes)
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains(reason), "\(result.stderr)")
    }

    @Test("a payload that does not parse for its type gives Decoded null, a DecodeError, and exit 0")
    func badPayload() throws {
        var message = try SSMMessage(decoding: GoldenVectors.acknowledge.buffer)
        message.payload = ByteBuffer(string: "{not json")
        message.payloadDigest = .sha256(of: message.payload)
        var bytes = ByteBuffer()
        bytes.writeSSMMessage(message)
        let result = try BinaryRunner.run("jumpgate", ["debug", "decode-frame"], stdin: Array(bytes.readableBytesView))
        #expect(result.status == 0)
        let json = try JSONValue(parsing: result.stdout)
        #expect(json["Decoded"] == .null)
        #expect(json["DecodeError"]?.stringValue?.contains("invalid JSON") == true)

        var flag = try SSMMessage(decoding: GoldenVectors.terminateFlag.buffer)
        flag.payload = ByteBuffer(bytes: [1])
        var flagBytes = ByteBuffer()
        flagBytes.writeSSMMessage(flag)
        let flagJSON = try JSONValue(
            parsing: BinaryRunner.run("jumpgate", ["debug", "decode-frame"], stdin: Array(flagBytes.readableBytesView))
                .stdout
        )
        #expect(flagJSON["DecodeError"]?.stringValue == "Flag payload is 1 bytes, expected 4")
        #expect(flagJSON["DigestValid"]?.boolValue == false)
    }

    @Test(
        "bad input to the tools is a clear error",
        arguments: [
            (["debug", "decode-frame", "--hex"], "zz", "not hex text"),
            (["debug", "encode-frame"], "{", "not valid JSON"),
            (["debug", "encode-frame"], #"{"MessageType":"acknowledge"}"#, "CreatedDate is required"),
            (["debug", "encode-frame"], #"{"MessageType":"","CreatedDate":1}"#, "MessageType must be"),
            (
                ["debug", "encode-frame"], #"{"MessageType":"a","CreatedDate":1,"Payload":"!!"}"#,
                "Payload is not valid base64"
            ),
            (
                ["debug", "encode-frame"], #"{"MessageType":"a","CreatedDate":1,"PayloadType":-1}"#,
                "PayloadType -1 does not fit"
            ),
        ]
    )
    func badToolInput(arguments: [String], input: String, message: String) throws {
        let result = try BinaryRunner.run("jumpgate", arguments, stdin: Array(input.utf8))
        #expect(result.status == 1)
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }
}

@Suite("session-manager-plugin argv contract")
struct PluginArgumentTests {
    @Test("--version prints a 4-part version above 1.2.650.0, and exits 0")
    func version() throws {
        let result = try BinaryRunner.run("session-manager-plugin", ["--version"])
        #expect(result.status == 0)
        let version = result.stdoutText.trimmingSuffixNewline
        #expect(SSMVersion.components(version)?.count == 4)
        #expect(SSMVersion.pluginIsGreater(version, than: "1.2.650.0"))
    }

    @Test("no arguments prints the official banner word for word")
    func banner() throws {
        let result = try BinaryRunner.run("session-manager-plugin", [])
        #expect(
            result.stdoutText
                == "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n"
        )
    }

    @Test("two arguments is an unknown operation")
    func unknownOperation() throws {
        let result = try BinaryRunner.run("session-manager-plugin", ["foo"])
        #expect(
            result.stdoutText
                == "\nUnknown operation foo. \nUse session-manager-plugin --version to check the version.\n\n"
        )
    }
}

extension String {
    var trimmingSuffixNewline: String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
