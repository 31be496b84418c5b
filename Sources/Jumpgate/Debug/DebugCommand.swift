import ArgumentParser
import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOCore

struct DebugCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug",
        abstract: "Tools for reading and writing Session Manager messages by hand, and for loading a gateway.",
        subcommands: [DecodeFrameCommand.self, EncodeFrameCommand.self, LoadCommand.self]
    )
}

/// Reads all of standard input.
func readStandardInput() -> [UInt8] {
    StandardStream.readInputToEnd()
}

func writeStandardError(_ text: String) {
    StandardStream.error.write(text + "\n")
}

struct DecodeFrameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode-frame",
        abstract: "Read one binary message from standard input and print it as JSON.",
        discussion: """
            Prints HeaderLength, MessageType, SchemaVersion, CreatedDate, SequenceNumber, Flags, MessageId, \
            PayloadDigest (hex), DigestValid, PayloadType, PayloadLength, Payload (base64) and Decoded (the \
            payload as JSON where its type is known). Exits 1 only if the header does not decode; a payload \
            that does not parse gives "Decoded": null and a DecodeError.
            """
    )

    @Flag(name: .long, help: "Standard input is hex text (whitespace ignored), not raw bytes.")
    var hex = false

    func run() throws {
        let input = readStandardInput()
        let bytes: [UInt8]
        if self.hex {
            guard let decoded = Hex.decode(String(decoding: input, as: UTF8.self)) else {
                writeStandardError(
                    "Error: standard input is not hex text (expected pairs of 0-9a-f, whitespace allowed)"
                )
                throw ExitCode(1)
            }
            bytes = decoded
        } else {
            bytes = input
        }
        do {
            let description = try FrameInspector.describe(ByteBuffer(bytes: bytes))
            print(description.serialized())
        } catch {
            writeStandardError("Error: cannot decode the message header: \(error.reason)")
            throw ExitCode(1)
        }
    }
}

struct EncodeFrameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode-frame",
        abstract: "Read a JSON message description (as decode-frame prints it) and write the binary message.",
        discussion: """
            Decoded and DigestValid are ignored. PayloadDigest and PayloadLength are computed when absent; \
            when given they are written as given, so broken frames can be made on purpose.
            """
    )

    @Flag(name: .long, help: "Write hex text instead of raw bytes.")
    var hex = false

    func run() throws {
        let input = readStandardInput()
        let json: JSONValue
        do {
            json = try JSONValue(parsing: input)
        } catch {
            writeStandardError("Error: standard input is not valid JSON: \(error)")
            throw ExitCode(1)
        }
        let frame: ByteBuffer
        do {
            frame = try FrameInspector.build(from: json)
        } catch {
            writeStandardError("Error: \(error.reason)")
            throw ExitCode(1)
        }
        if self.hex {
            print(Hex.encode(frame.readableBytesView))
        } else {
            StandardStream.output.write(bytes: frame.readableBytesView)
        }
    }
}
