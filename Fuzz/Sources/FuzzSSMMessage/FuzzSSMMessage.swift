import FuzzSupport
import JumpgateWire
import NIOCore

/// The SSM message codec on hostile bytes: one message per WebSocket frame (`init(decoding:)`), a stream of
/// messages drip-fed to `SSMMessageDecoder`, the header peeks, validation under every profile, and the
/// payload parsers the receiving side runs. Properties: a decoded message re-encodes to one that decodes
/// equal; the decoder gives the same messages however the stream is cut; the peeks agree with the decode.
@_cdecl("FuzzSSMMessage_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

func fuzzOne(_ input: FuzzInput) {
    let frame = ByteBuffer(bytes: input.body)
    if let message = try? SSMMessage(decoding: frame) {
        let again = try? SSMMessage(decoding: message.encoded())
        fuzzCheck(again == message, "re-encoded message decodes differently")
        fuzzCheck(SSMMessage.peekMessageType(frame) == message.messageType, "peeked type differs from decoded")
        for profile in [SSMValidationProfile.client, .agent, .digestFree] { try? message.validate(profile) }
        parsePayloads(message.payload)
    }
    // The same bytes as a stream, cut where the first byte says, and whole.
    fuzzCheck(decodeStream(input.pieces()) == decodeStream([frame]), "stream decode depends on where it was cut")
}

/// Messages a stream decodes to, and whether it ended in an error, as `ByteToMessageHandler` would feed it.
func decodeStream(_ pieces: [ByteBuffer]) -> [SSMMessage?] {
    var decoder = SSMMessageDecoder(maximumPayloadLength: 64 * 1024)
    var buffer = ByteBuffer()
    var messages: [SSMMessage?] = []
    for var piece in pieces {
        buffer.writeBuffer(&piece)
        do {
            while let message = try decoder.decode(buffer: &buffer) { messages.append(message) }
        } catch {
            messages.append(nil)
            return messages
        }
    }
    return messages
}

/// Every parser a payload may reach.
func parsePayloads(_ payload: ByteBuffer) {
    _ = try? AcknowledgeContent(payload: payload)
    _ = try? ChannelClosedPayload(payload: payload)
    _ = try? AgentSessionStatePayload(payload: payload)
    _ = try? FlagPayload(payload: payload)
    _ = try? CumulativeAckPayload(payload: payload)
    _ = try? ConnectErrorPayload(payload: payload)
    _ = try? AgentStatusPayload(payload: payload)
    _ = try? HandshakeRequestPayload(payload: payload)
    _ = try? HandshakeResponsePayload(payload: payload)
    _ = try? HandshakeCompletePayload(payload: payload)
}
