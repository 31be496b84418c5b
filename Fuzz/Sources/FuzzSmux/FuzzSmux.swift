import FuzzSupport
import JumpgateWire
import NIOCore

/// smux v1 and v2 frames, drip-fed, into the frame decoder and then into a stream table of each role.
/// Properties: the decoder gives the same frames however the stream is cut; the table never holds more
/// streams than its limit; every frame it asks to send re-encodes and decodes equal.
@_cdecl("FuzzSmux_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

func fuzzOne(_ input: FuzzInput) {
    for version: UInt8 in [1, 2] {
        let frames = decode(input.pieces(), version: version)
        fuzzCheck(frames == decode([ByteBuffer(bytes: input.body)], version: version), "smux decode depends on cuts")
        for role in [SmuxSession.Role.client, .server] {
            var session = SmuxSession(configuration: .init(version: version, role: role, maximumStreams: 8))
            for case let frame? in frames {
                guard let event = try? session.frameReceived(frame) else { break }
                fuzzCheck(session.openStreamCount <= 8, "the stream table grew past its limit")
                switch event {
                case .refuse(let update):
                    check(update, version: version)
                case .streamOpened(let id) where id.rawValue & 2 == 0:
                    // Half the streams only: the others reach the announcement's other paths (dataConsumed,
                    // removal while pending).
                    if let update = session.takeWindowAnnouncement(on: id) {
                        check(.windowUpdate(version: version, streamID: id, update), version: version)
                    }
                case .data(let id, let data):
                    if let update = session.dataConsumed(on: id, count: data.readableBytes) {
                        check(update, version: version)
                    }
                default:
                    break
                }
            }
        }
    }
}

func decode(_ pieces: [ByteBuffer], version: UInt8) -> [SmuxFrame?] {
    var decoder = SmuxFrameDecoder(version: version)
    var buffer = ByteBuffer()
    var frames: [SmuxFrame?] = []
    for var piece in pieces {
        buffer.writeBuffer(&piece)
        do {
            while let frame = try decoder.decode(buffer: &buffer) { frames.append(frame) }
        } catch {
            frames.append(nil)
            return frames
        }
    }
    return frames
}

func check(_ frame: SmuxFrame, version: UInt8) {
    var buffer = ByteBuffer()
    buffer.writeSmuxFrame(frame)
    var decoder = SmuxFrameDecoder(version: version)
    fuzzCheck((try? decoder.decode(buffer: &buffer)) == frame, "a frame the table sends does not decode equal")
}
