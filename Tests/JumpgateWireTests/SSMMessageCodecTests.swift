import Foundation
import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import NIOTestUtils
import PropertyBased
import Testing

@Suite("SSM message codec")
struct SSMMessageCodecTests {
    @Test("every golden vector decodes to its documented fields", arguments: GoldenVectors.all.map(\.name))
    func goldenVectorDecodes(name: String) throws {
        let vector = GoldenVectors.all.first { $0.name == name }!
        let message = try SSMMessage(decoding: vector.buffer)
        #expect(message.messageType == vector.messageType)
        #expect(message.schemaVersion == 1)
        #expect(message.createdDate == GoldenVectors.createdDate)
        #expect(message.sequenceNumber == vector.sequenceNumber)
        #expect(message.flags == vector.flags)
        #expect(message.messageID.description == vector.messageID)
        #expect(message.payloadType == vector.payloadType)
        #expect(message.payloadLength == UInt32(vector.payload.count))
        #expect(Array(message.payload.readableBytesView) == vector.payload)
        #expect(message.payloadDigest.hex == vector.digestHex)
        #expect(message.isDigestValid)
        #expect(message.encodedSize == vector.bytes.count)
        try message.validate(.client)
        try message.validate(.agent)
    }

    @Test("every golden vector re-encodes byte-exact", arguments: GoldenVectors.all.map(\.name))
    func goldenVectorReencodes(name: String) throws {
        let vector = GoldenVectors.all.first { $0.name == name }!
        let decoded = try SSMMessage(decoding: vector.buffer)
        // Re-encode from fields alone (digest recomputed), not from the decoded buffer.
        let rebuilt = SSMMessage(
            messageType: decoded.messageType,
            createdDate: decoded.createdDate,
            sequenceNumber: decoded.sequenceNumber,
            flags: decoded.flags,
            messageID: MessageID(vector.messageID)!,
            payloadType: decoded.payloadType,
            payload: ByteBuffer(bytes: vector.payload)
        )
        var out = ByteBuffer()
        out.writeSSMMessage(rebuilt)
        #expect(Array(out.readableBytesView) == vector.bytes)
    }

    @Test("the payload is a slice of the frame, not a copy")
    func payloadIsASlice() throws {
        let buffer = GoldenVectors.inputHello.buffer
        let message = try SSMMessage(decoding: buffer)
        let framePointer = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        let payloadPointer = message.payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        #expect(payloadPointer == framePointer + 120)
    }

    @Test("the acknowledge JSON writer is byte-identical to the golden vector's payload")
    func fastAcknowledgeWriter() throws {
        var buffer = ByteBuffer()
        buffer.writeAcknowledgeJSON(
            messageType: .outputStreamData,
            messageID: MessageID("dd01e56b-ff48-483e-a508-b5f073f31b16")!,
            sequenceNumber: 0
        )
        #expect(Array(buffer.readableBytesView) == GoldenVectors.acknowledge.payload)
        let content = try AcknowledgeContent(payload: buffer)
        #expect(content.acknowledgedSequenceNumber == 0)
        #expect(content.json.serializedBytes() == GoldenVectors.acknowledge.payload)
    }

    @Test("writing the payload in place gives the golden bytes, with the digest filled in or zeroed")
    func inPlacePayloadWriter() throws {
        let vector = GoldenVectors.inputHello
        var frame = ByteBuffer()
        let written = frame.writeSSMMessage(
            messageType: .inputStreamData,
            createdDate: GoldenVectors.createdDate,
            sequenceNumber: 1,
            flags: 0,
            messageID: MessageID(vector.messageID)!,
            payloadType: .output,
            payloadLength: 5,
            digestFree: false
        ) { $0.writeString("hello") }
        #expect(written == vector.bytes.count)
        #expect(Array(frame.readableBytesView) == vector.bytes)

        var digestFree = ByteBuffer()
        digestFree.writeSSMMessage(
            messageType: .inputStreamData,
            createdDate: GoldenVectors.createdDate,
            sequenceNumber: 1,
            flags: 0,
            messageID: MessageID(vector.messageID)!,
            payloadType: .output,
            payloadLength: 5,
            digestFree: true
        ) { $0.writeString("hello") }
        let message = try SSMMessage(decoding: digestFree)
        #expect(message.payloadDigest == .zero)
        try message.validate(.digestFree)
        #expect(Array(digestFree.readableBytesView.prefix(80)) == Array(vector.bytes.prefix(80)))
        #expect(Array(digestFree.readableBytesView.suffix(13)) == Array(vector.bytes.suffix(13)))
    }

    @Test("message id halves are swapped on the wire (spec §4.4 example)")
    func messageIDSwap() {
        let id = MessageID("dd01e56b-ff48-483e-a508-b5f073f31b16")!
        var buffer = ByteBuffer()
        buffer.writeSSMMessage(
            SSMMessage(messageType: .acknowledge, createdDate: 1, messageID: id, payload: ByteBuffer())
        )
        #expect(Hex.encode(buffer.getBytes(at: 64, length: 16)!) == "a508b5f073f31b16dd01e56bff48483e")
        #expect(MessageID("DD01E56B-FF48-483E-A508-B5F073F31B16") == id)
        #expect(MessageID("dd01e56b-ff48-483e-a508-b5f073f31b1") == nil)
        #expect(MessageID("dd01e56bxff48-483e-a508-b5f073f31b16") == nil)
        let random = MessageID.random()
        #expect(MessageID(random.description) == random)
        #expect(random.description.utf8.count == 36)
    }

    @Test("MessageType is read with NULs and spaces stripped")
    func messageTypePadding() throws {
        var bytes = GoldenVectors.inputHello.bytes
        for i in 21..<36 { bytes[i] = 0 }  // NUL padding instead of spaces
        let message = try SSMMessage(decoding: ByteBuffer(bytes: bytes))
        #expect(message.messageType == .inputStreamData)
        var custom = GoldenVectors.inputHello.bytes
        custom.replaceSubrange(4..<36, with: Array("my_type".utf8) + Array(repeating: 0x20, count: 25))
        #expect(try SSMMessage(decoding: ByteBuffer(bytes: custom)).messageType.rawValue == "my_type")
    }

    @Test("header errors are typed: truncated, wrong HeaderLength, empty type, inconsistent length")
    func headerErrors() {
        let bytes = GoldenVectors.inputHello.bytes
        #expect(throws: WireError.self) { try SSMMessage(decoding: ByteBuffer(bytes: bytes.prefix(119))) }
        var wrongHeader = bytes
        wrongHeader[3] = 120
        #expect(self.code { try SSMMessage(decoding: ByteBuffer(bytes: wrongHeader)) } == .invalidHeaderLength)
        var emptyType = bytes
        for i in 4..<36 { emptyType[i] = 0x20 }
        #expect(self.code { try SSMMessage(decoding: ByteBuffer(bytes: emptyType)) } == .invalidMessageType)
        #expect(self.code { try SSMMessage(decoding: ByteBuffer(bytes: bytes + [0x21])) } == .inconsistentPayloadLength)
        #expect(
            self.code { try SSMMessage(decoding: ByteBuffer(bytes: bytes.dropLast())) } == .inconsistentPayloadLength
        )
        #expect(self.code { try SSMMessage(decoding: ByteBuffer(bytes: Array(bytes.prefix(60)))) } == .truncatedMessage)
    }

    func code<T>(_ body: () throws -> T) -> WireError.Code? {
        do {
            _ = try body()
            return nil
        } catch {
            return (error as? WireError)?.code
        }
    }

    @Test("validation follows each official peer")
    func validationProfiles() throws {
        var corrupted = GoldenVectors.inputHello.bytes
        corrupted[124] ^= 0xFF  // payload changed, digest not
        let bad = try SSMMessage(decoding: ByteBuffer(bytes: corrupted))
        #expect(throws: WireError.self) { try bad.validate(.client) }
        #expect(throws: WireError.self) { try bad.validate(.digestFree) }
        try bad.validate(.agent)  // the agent never checks the digest

        var zeroDate = try SSMMessage(decoding: GoldenVectors.inputHello.buffer)
        zeroDate.createdDate = 0
        #expect(throws: WireError.self) { try zeroDate.validate(.client) }
        #expect(throws: WireError.self) { try zeroDate.validate(.agent) }

        var pause = zeroDate
        pause.messageType = .pausePublication
        try pause.validate(.client)  // the plugin skips start/pause_publication

        var digestFree = try SSMMessage(decoding: GoldenVectors.inputHello.buffer)
        digestFree.payloadDigest = .zero
        try digestFree.validate(.digestFree)
        #expect(throws: WireError.self) { try digestFree.validate(.client) }

        var empty = SSMMessage(messageType: .acknowledge, createdDate: 1, payloadDigest: .zero, payload: ByteBuffer())
        try empty.validate(.client)  // the digest is checked only for a non-empty payload
        empty.payload = ByteBuffer(bytes: [1])
        #expect(throws: WireError.self) { try empty.validate(.client) }
    }

    @Test("the stream decoder splits concatenated messages, drip-fed or all at once")
    func streamDecoderVerifier() throws {
        let messages = try GoldenVectors.all.map { try SSMMessage(decoding: $0.buffer) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: GoldenVectors.all.map { ($0.buffer, [try! SSMMessage(decoding: $0.buffer)]) }
                + [(ByteBuffer(bytes: GoldenVectors.all.flatMap(\.bytes)), messages)],
            decoderFactory: { SSMMessageDecoder() }
        )
    }

    @Test("the stream decoder refuses oversized and malformed headers")
    func streamDecoderLimits() {
        var decoder = SSMMessageDecoder(maximumPayloadLength: 4)
        var buffer = GoldenVectors.inputHello.buffer
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &buffer) }
        var garbage = ByteBuffer(bytes: Array(repeating: 0xFF, count: 200))
        var plain = SSMMessageDecoder()
        #expect(throws: WireError.self) { _ = try plain.decode(buffer: &garbage) }
    }

    @Test("random garbage never crashes the decoder, only throws WireError")
    func garbage() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let length = Int.random(in: 0..<400, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if length >= 4, Bool.random(using: &rng) {  // make many of them get past the first check
                bytes[0...3] = [0, 0, 0, 0x74]
            }
            do {
                let message = try SSMMessage(decoding: ByteBuffer(bytes: bytes))
                #expect(message.encodedSize == length)
                _ = try? message.validate(.client)
                _ = FrameInspectorProbe.describe(ByteBuffer(bytes: bytes))
            } catch {
                #expect(error.reason.isEmpty == false)
            }
        }
    }

    @Test("property: any message round-trips through the codec")
    func propertyRoundTrip() async {
        let types: [MessageType] = MessageTypeCatalog.all
        await propertyCheck(
            count: 300,
            input: Gen.int(in: 0...(types.count - 1)),
            Gen.uint64(in: 1...UInt64.max),
            Gen.int64(),
            Gen.uint64(),
            Gen.uint32(),
            Gen.uint8().array(of: 0...2000)
        ) { typeIndex, created, sequence, flags, payloadType, payload in
            let message = SSMMessage(
                messageType: types[typeIndex],
                createdDate: created,
                sequenceNumber: sequence,
                flags: flags,
                messageID: .random(),
                payloadType: PayloadType(rawValue: payloadType),
                payload: ByteBuffer(bytes: payload)
            )
            var buffer = ByteBuffer()
            buffer.writeSSMMessage(message)
            #expect(buffer.readableBytes == 120 + payload.count)
            let decoded = try SSMMessage(decoding: buffer)
            #expect(decoded == message)
            try decoded.validate(.client)
        }
    }
}

enum MessageTypeCatalog {
    static let all: [MessageType] = [
        .inputStreamData, .outputStreamData, .acknowledge, .channelClosed, .startPublication, .pausePublication,
        .agentSessionState, .interactiveShell, .agentTaskComplete, .agentTaskAcknowledge, MessageType("x")!,
        MessageType("a_type_name_that_is_32_bytes_lon")!,
    ]
}

enum FrameInspectorProbe {
    static func describe(_ buffer: ByteBuffer) -> JSONValue? {
        try? FrameInspector.describe(buffer)
    }
}

/// The shared spec folder sits beside the repository in a developer checkout and in CI.
let sharedGoldenVectorsScript = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("shared/protocol/golden_vectors.py")

@Suite("Golden vectors match shared/protocol/golden_vectors.py")
struct GoldenVectorScriptTests {
    @Test(
        "the embedded vectors are exactly the ones the script prints, and its own --check passes",
        .enabled(if: FileManager.default.fileExists(atPath: sharedGoldenVectorsScript.path))
    )
    func matchesScript() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", sharedGoldenVectorsScript.path, "--check"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(output.contains("all checks passed"))
        // Join each hexdump block ("0000  00 00 ...") into one hex string per vector.
        var blocks: [String] = []
        var current = ""
        for line in output.split(separator: "\n", omittingEmptySubsequences: false) {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].count == 4, parts[0].allSatisfy(\.isHexDigit) {
                if parts[0] == "0000", !current.isEmpty {
                    blocks.append(current)
                    current = ""
                }
                current += parts[1].replacingOccurrences(of: " ", with: "")
            } else if !current.isEmpty {
                blocks.append(current)
                current = ""
            }
        }
        if !current.isEmpty { blocks.append(current) }
        let messageBlocks = Set(blocks.filter { $0.count >= 240 })
        #expect(messageBlocks == Set(GoldenVectors.all.map(\.hex)))
        let smuxBlocks = Set(blocks.filter { $0.count < 240 })
        #expect(
            smuxBlocks
                == [GoldenVectors.smuxSYN, GoldenVectors.smuxPSHHello, GoldenVectors.smuxFIN, GoldenVectors.smuxNOP]
        )
    }
}
