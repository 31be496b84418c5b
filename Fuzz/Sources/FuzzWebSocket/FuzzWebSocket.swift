import FuzzSupport
import JumpgateWire
import NIOCore

/// The WebSocket frame reader (both roles, with the unauthenticated first-frame limit), the connection
/// state machine it feeds, and the client's parser of the server's upgrade response. Properties: the
/// frames read are the same however the bytes are cut, and whether payloads are borrowed or copied; no
/// frame exceeds the reader's limit; the reader
/// holds no more than one frame's worth of bytes between reads.
@_cdecl("FuzzWebSocket_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

let maximumFrameSize = 4096
let firstFrameMaximumSize = 512

func fuzzOne(_ input: FuzzInput) {
    for role in [WebSocketFrameDecoder.Role.server, .client, .any] {
        let cut = read(input.pieces(), role: role)
        let whole = read([ByteBuffer(bytes: input.body)], role: role)
        fuzzCheck(cut == whole, "frames depend on where bytes were cut (\(role)): \(cut) vs \(whole)")
        // The gateway's reader borrows whole unmasked payloads instead of copying them: same frames.
        let borrowed = read(input.pieces(), role: role, borrowing: true)
        fuzzCheck(borrowed == cut, "borrowing changed the frames (\(role)): \(borrowed) vs \(cut)")
    }
    var buffer = ByteBuffer(bytes: input.body)
    if let head = try? WebSocketHandshake.parseResponse(&buffer) {
        try? WebSocketHandshake.validateUpgrade(head, key: "dGhlIHNhbXBsZSBub25jZQ==")
    }
}

/// What a reader and the connection state machine make of the pieces: each frame (fin, opcode, payload)
/// and the action taken, then whether the reader threw.
func read(_ pieces: [ByteBuffer], role: WebSocketFrameDecoder.Role, borrowing: Bool = false) -> [String] {
    var reader = WebSocketFrameReader(
        role: role,
        maximumFrameSize: maximumFrameSize,
        firstDataFrameMaximumSize: firstFrameMaximumSize,
        borrowsUnmaskedPayloads: borrowing
    )
    var connection = WebSocketConnectionStateMachine(maximumMessageSize: maximumFrameSize)
    var seen: [String] = []
    for piece in pieces {
        do {
            try reader.read(piece) { frame in
                fuzzCheck(frame.payload.readableBytes <= maximumFrameSize, "a frame larger than the limit")
                seen.append("\(frame.fin) \(frame.opcode) \(Array(frame.payload.readableBytesView))")
                seen.append("\(connection.frameReceived(frame))")
            }
        } catch {
            seen.append("error")
            return seen
        }
        fuzzCheck(reader.bufferedBytes <= maximumFrameSize + 14, "the reader holds \(reader.bufferedBytes) bytes")
    }
    return seen
}
