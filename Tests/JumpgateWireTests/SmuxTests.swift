import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import NIOTestUtils
import PropertyBased
import Testing

@Suite("smux")
struct SmuxTests {
    func buffer(_ hex: String) -> ByteBuffer { ByteBuffer(bytes: Hex.decode(hex)!) }

    @Test("v1 golden frames (spec §11.4) encode byte-exact")
    func goldenFrames() {
        func encode(_ frame: SmuxFrame) -> String {
            var b = ByteBuffer()
            b.writeSmuxFrame(frame)
            return Hex.encode(b.readableBytesView)
        }
        #expect(encode(SmuxFrame(version: 1, command: .syn, streamID: SmuxStreamID(3))) == GoldenVectors.smuxSYN)
        #expect(
            encode(SmuxFrame(version: 1, command: .psh, streamID: SmuxStreamID(3), data: ByteBuffer(string: "hello")))
                == GoldenVectors.smuxPSHHello
        )
        #expect(encode(SmuxFrame(version: 1, command: .fin, streamID: SmuxStreamID(3))) == GoldenVectors.smuxFIN)
        #expect(encode(SmuxFrame(version: 1, command: .nop, streamID: SmuxStreamID(0))) == GoldenVectors.smuxNOP)
    }

    @Test("the streaming parser decodes frames split anywhere and many at once")
    func decoderVerifier() throws {
        let frames: [(String, SmuxFrame)] = [
            (GoldenVectors.smuxSYN, SmuxFrame(version: 1, command: .syn, streamID: SmuxStreamID(3))),
            (
                GoldenVectors.smuxPSHHello,
                SmuxFrame(version: 1, command: .psh, streamID: SmuxStreamID(3), data: ByteBuffer(string: "hello"))
            ),
            (GoldenVectors.smuxFIN, SmuxFrame(version: 1, command: .fin, streamID: SmuxStreamID(3))),
            (GoldenVectors.smuxNOP, SmuxFrame(version: 1, command: .nop, streamID: SmuxStreamID(0))),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: frames.map { (self.buffer($0.0), [$0.1]) } + [
                (self.buffer(frames.map(\.0).joined()), frames.map(\.1))
            ],
            decoderFactory: { SmuxFrameDecoder(version: 1) }
        )
        let update = SmuxFrame.windowUpdate(streamID: SmuxStreamID(5), .init(consumed: 1000, window: 65536))
        var encoded = ByteBuffer()
        encoded.writeSmuxFrame(update)
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(encoded, [update])],
            decoderFactory: { SmuxFrameDecoder(version: 2) }
        )
        #expect(update.windowUpdate == .init(consumed: 1000, window: 65536))
    }

    @Test(
        "wrong version, unknown command and UPD in v1 are protocol errors",
        arguments: [
            "0200000003000000", "0105000003000000", "0104080003000000" + "0000000000000000",
        ]
    )
    func invalidFrames(hex: String) {
        var decoder = SmuxFrameDecoder(version: 1)
        var input = self.buffer(hex)
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &input) }
    }

    @Test("random bytes never crash the parser")
    func garbage() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            var decoder = SmuxFrameDecoder(version: UInt8.random(in: 1...2, using: &rng))
            var input = ByteBuffer(
                bytes: (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...5, using: &rng) }
            )
            while (try? decoder.decode(buffer: &input)) != nil {}
        }
    }

    @Test("property: any PSH frame round-trips")
    func roundTrip() async {
        await propertyCheck(count: 200, input: Gen.uint32(), Gen.uint8().array(of: 0...3000)) { id, data in
            let frame = SmuxFrame(version: 1, command: .psh, streamID: SmuxStreamID(id), data: ByteBuffer(bytes: data))
            var buffer = ByteBuffer()
            buffer.writeSmuxFrame(frame)
            var decoder = SmuxFrameDecoder(version: 1)
            let decoded = try decoder.decode(buffer: &buffer)
            #expect(decoded == frame)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("client streams are 3, 5, 7; the server sees them opened; FIN half-closes, two FINs close")
    func v1Lifecycle() throws {
        var client = SmuxSession(configuration: .init(version: 1, role: .client))
        var server = SmuxSession(configuration: .init(version: 1, role: .server))
        let (a, framesA) = try client.openStream()
        let (b, _) = try client.openStream()
        let (c, _) = try client.openStream()
        #expect([a, b, c].map(\.rawValue) == [3, 5, 7])
        #expect(framesA == [SmuxFrame(version: 1, command: .syn, streamID: a)])  // v1: no window update
        let synA = framesA[0]
        #expect(try server.frameReceived(synA) == .streamOpened(a))
        #expect(try server.frameReceived(synA) == .none)  // duplicate SYN ignored
        #expect(client.sendableBytes(on: a) == 32768)  // v1: no per-stream window
        try client.dataWillBeSent(on: a, count: 5)
        #expect(
            try server.frameReceived(
                SmuxFrame(version: 1, command: .psh, streamID: a, data: ByteBuffer(string: "hello"))
            ) == .data(a, ByteBuffer(string: "hello"))
        )
        #expect(server.dataConsumed(on: a, count: 5) == nil)  // v1 never sends UPD
        let finFrame = client.closeStream(a)
        let fin = try #require(finFrame)
        #expect(client.closeStream(a) == nil)
        #expect(client.sendableBytes(on: a) == 0)
        #expect(try server.frameReceived(fin) == .remoteClosed(a, fullyClosed: false, receivedData: true))
        // Data after the peer's FIN is dropped, as smux does.
        #expect(
            try server.frameReceived(SmuxFrame(version: 1, command: .psh, streamID: a, data: ByteBuffer(string: "x")))
                == .none
        )
        let serverFinFrame = server.closeStream(a)
        let serverFin = try #require(serverFinFrame)
        #expect(!server.isOpen(a))
        #expect(try client.frameReceived(serverFin) == .remoteClosed(a, fullyClosed: true, receivedData: false))
        #expect(!client.isOpen(a))
        #expect(try client.frameReceived(SmuxFrame(version: 1, command: .nop, streamID: SmuxStreamID(0))) == .none)
        #expect(throws: WireError.self) {
            try client.frameReceived(SmuxFrame.windowUpdate(version: 1, streamID: b, .init(consumed: 0, window: 1)))
        }
    }

    @Test("the stream limit refuses extra SYNs with a FIN")
    func streamLimit() throws {
        var server = SmuxSession(configuration: .init(version: 1, role: .server, maximumStreams: 1))
        #expect(
            try server.frameReceived(SmuxFrame(version: 1, command: .syn, streamID: SmuxStreamID(3)))
                == .streamOpened(SmuxStreamID(3))
        )
        #expect(
            try server.frameReceived(SmuxFrame(version: 1, command: .syn, streamID: SmuxStreamID(5)))
                == .refuse(SmuxFrame(version: 1, command: .fin, streamID: SmuxStreamID(5)))
        )
        #expect(server.abortStream(SmuxStreamID(3)) == SmuxFrame(version: 1, command: .fin, streamID: SmuxStreamID(3)))
    }

    @Test("v2: a stalled stream fills its own window while another moves 64 MiB")
    func v2StalledStream() throws {
        let window: UInt32 = 256 * 1024
        var client = SmuxSession(
            configuration: .init(version: 2, role: .client, streamReceiveWindow: window, initialPeerWindow: window)
        )
        var server = SmuxSession(
            configuration: .init(version: 2, role: .server, streamReceiveWindow: window, initialPeerWindow: window)
        )
        let (a, framesA) = try client.openStream()
        let (b, framesB) = try client.openStream()
        // Both sides' windows are the initial one: the server's announcement would change nothing.
        for frame in framesA + framesB { _ = try server.frameReceived(frame) }
        let chunk = ByteBuffer(repeating: 0xAB, count: 32768)

        // Stream A: the server's reader never consumes, so A's window fills and A stops.
        var sentOnA = 0
        while client.sendableBytes(on: a) > 0 {
            let n = client.sendableBytes(on: a)
            try client.dataWillBeSent(on: a, count: n)
            #expect(
                try server.frameReceived(
                    SmuxFrame(version: 2, command: .psh, streamID: a, data: chunk.getSlice(at: 0, length: n)!)
                ) == .data(a, chunk.getSlice(at: 0, length: n)!)
            )
            sentOnA += n
        }
        #expect(sentOnA == Int(window))

        // Stream B keeps moving: 64 MiB, consumed as it arrives, window updates flowing back.
        var movedOnB = 0
        var iterations = 0
        while movedOnB < 64 << 20 {
            iterations += 1
            #expect(iterations < 10_000)
            let n = client.sendableBytes(on: b)
            #expect(n > 0, "stream B must never be blocked by stream A")
            if n == 0 { break }
            try client.dataWillBeSent(on: b, count: n)
            guard
                case .data(_, let payload) = try server.frameReceived(
                    SmuxFrame(version: 2, command: .psh, streamID: b, data: chunk.getSlice(at: 0, length: n)!)
                )
            else {
                Issue.record("no data")
                break
            }
            movedOnB += payload.readableBytes
            if let update = server.dataConsumed(on: b, count: payload.readableBytes) {
                _ = try client.frameReceived(update)
            }
        }
        #expect(movedOnB == 64 << 20)
        #expect(client.sendableBytes(on: a) == 0)

        // Once A's reader consumes, a window update makes A writable again.
        let consumedUpdate = server.dataConsumed(on: a, count: Int(window))
        let update = try #require(consumedUpdate)
        #expect(try client.frameReceived(update) == .writable(a))
        #expect(client.sendableBytes(on: a) > 0)
    }

    @Test("v2: a peer that sends past the advertised window is a protocol violation")
    func v2WindowViolation() throws {
        var server = SmuxSession(
            configuration: .init(version: 2, role: .server, streamReceiveWindow: 10, initialPeerWindow: 10)
        )
        _ = try server.frameReceived(SmuxFrame(version: 2, command: .syn, streamID: SmuxStreamID(3)))
        #expect(throws: WireError.self) {
            try server.frameReceived(
                SmuxFrame(
                    version: 2,
                    command: .psh,
                    streamID: SmuxStreamID(3),
                    data: ByteBuffer(repeating: 0, count: 11)
                )
            )
        }
    }

    @Test("v2: sending more than the window allows is refused locally")
    func v2LocalWindow() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client, initialPeerWindow: 100))
        let (a, _) = try client.openStream()
        #expect(client.sendableBytes(on: a) == 100)
        #expect(throws: WireError.self) { try client.dataWillBeSent(on: a, count: 101) }
    }
}

@Suite("smux inside SSM payloads")
struct SmuxInPayloadTests {
    @Test("the SYN+PSH golden message's payload parses as smux, however it is split")
    func synPshPayload() throws {
        let message = try SSMMessage(decoding: GoldenVectors.inputSmuxSYNPSH.buffer)
        #expect(message.payloadLength == 0x15)
        for split in 0...message.payload.readableBytes {
            var parser = SmuxFrameParser(version: 1)
            var frames: [SmuxFrame] = []
            try parser.parse(message.payload.getSlice(at: message.payload.readerIndex, length: split)!) {
                frames.append($0)
            }
            try parser.parse(
                message.payload.getSlice(
                    at: message.payload.readerIndex + split,
                    length: message.payload.readableBytes - split
                )!
            ) {
                frames.append($0)
            }
            #expect(frames.map(\.command) == [.syn, .psh])
            #expect(frames.map(\.streamID) == [SmuxStreamID(3), SmuxStreamID(3)])
            #expect(frames.last?.data == ByteBuffer(string: "hello"))
        }
    }
}

@Suite("smux v2 with default settings")
struct SmuxV2DefaultsTests {
    /// Moves `total` bytes on one stream between two sessions with default configurations, the
    /// receiver consuming everything it gets. Returns the bytes moved before a stall (bounded loop).
    static func transfer(total: Int) throws -> Int {
        var client = SmuxSession(configuration: .init(version: 2, role: .client))
        var server = SmuxSession(configuration: .init(version: 2, role: .server))
        let (id, opening) = try client.openStream()
        // The server never sends data back: its window must reach the client all the same.
        for frame in opening { _ = try server.frameReceived(frame) }
        let chunk = ByteBuffer(repeating: 7, count: SmuxFrame.maximumDataSize)
        var moved = 0
        for _ in 0..<100_000 where moved < total {
            let n = client.sendableBytes(on: id)
            guard n > 0 else { break }
            try client.dataWillBeSent(on: id, count: n)
            let frame = SmuxFrame(version: 2, command: .psh, streamID: id, data: chunk.getSlice(at: 0, length: n)!)
            guard case .data(_, let data) = try server.frameReceived(frame) else { break }
            moved += data.readableBytes
            if let update = server.dataConsumed(on: id, count: data.readableBytes) {
                _ = try client.frameReceived(update)
            }
        }
        return moved
    }

    @Test("a consuming receiver never lets the sender's window run dry (regression: 256 KiB vs 1 MiB)")
    func noDeadlock() throws {
        #expect(try Self.transfer(total: 64 << 20) == 64 << 20)
    }

    @Test("the opener advertises its window with its SYN; the accepting side with its first data")
    func initialAdvertisement() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client, streamReceiveWindow: 4 << 20))
        let (id, frames) = try client.openStream()
        #expect(frames.count == 2)
        #expect(frames[1].windowUpdate == .init(consumed: 0, window: 4 << 20))
        var server = SmuxSession(configuration: .init(version: 2, role: .server, streamReceiveWindow: 3 << 20))
        // No message of its own for the window: a setup that answers carries it with the answer.
        #expect(try server.frameReceived(frames[0]) == .streamOpened(id))
        #expect(server.announcesWindow(on: id) && server.hasPendingWindowAnnouncements)
        // Meanwhile the client may have the initial 256 KiB in flight, and no more.
        var inFlight = 0
        for _ in 0..<100 {
            let n = client.sendableBytes(on: id)
            guard n > 0 else { break }
            try client.dataWillBeSent(on: id, count: n)
            inFlight += n
        }
        #expect(inFlight == 262_144)
        let update = try requireValue(server.takeWindowAnnouncement(on: id))
        #expect(update == .init(consumed: 0, window: 3 << 20))
        let again = server.takeWindowAnnouncement(on: id)
        #expect(!server.announcesWindow(on: id) && again == nil && !server.hasPendingWindowAnnouncements)
        #expect(try client.frameReceived(.windowUpdate(streamID: id, update)) == .writable(id))
        #expect(client.sendableBytes(on: id) == SmuxFrame.maximumDataSize)
    }

    @Test("a receive window below the initial one is raised to it (the peer may send that much unannounced)")
    func windowAtLeastInitial() {
        let configuration = SmuxSession.Configuration(version: 2, role: .server, streamReceiveWindow: 1024)
        #expect(configuration.streamReceiveWindow == configuration.initialPeerWindow)
    }

    @Test("an accepting side that sends nothing back tells its window once a quarter of the initial one is consumed")
    func announcementWithoutData() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client))
        var server = SmuxSession(configuration: .init(version: 2, role: .server, streamReceiveWindow: 3 << 20))
        let (id, frames) = try client.openStream()
        for frame in frames { _ = try server.frameReceived(frame) }
        let quarter = Int(server.configuration.initialPeerWindow / 4)
        let early = server.dataConsumed(on: id, count: quarter - 1)
        #expect(early == nil)
        let update = try requireValue(server.dataConsumed(on: id, count: 1))
        #expect(update.windowUpdate == .init(consumed: UInt32(quarter), window: 3 << 20))
        #expect(!server.announcesWindow(on: id) && !server.hasPendingWindowAnnouncements)
        // Then the usual rule: the next update after a quarter of the announced window.
        let short = server.dataConsumed(on: id, count: (3 << 20) / 4 - 1)
        let next = server.dataConsumed(on: id, count: 1)
        #expect(short == nil && next != nil)
    }

    @Test("streams closed or aborted, announced or not, leave nothing pending; a refused SYN adds nothing")
    func pendingCountFollowsStreams() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client))
        var server = SmuxSession(configuration: .init(version: 2, role: .server, maximumStreams: 4))
        // An announced stream that closes must not take the count down.
        let (announced, opening) = try client.openStream()
        for frame in opening { _ = try server.frameReceived(frame) }
        _ = server.takeWindowAnnouncement(on: announced)
        var ids: [SmuxStreamID] = []
        for _ in 0..<3 {
            let (id, frames) = try client.openStream()
            for frame in frames { _ = try server.frameReceived(frame) }
            ids.append(id)
        }
        #expect(server.hasPendingWindowAnnouncements)
        // Over the limit: refused, and nothing to announce for it.
        let (extra, extraOpening) = try client.openStream()
        #expect(
            try server.frameReceived(extraOpening[0]) == .refuse(SmuxFrame(version: 2, command: .fin, streamID: extra))
        )
        _ = server.abortStream(announced)
        #expect(server.hasPendingWindowAnnouncements)
        _ = server.abortStream(ids[0])  // a dial that failed
        _ = try server.frameReceived(try requireValue(client.closeStream(ids[1])))
        _ = server.closeStream(ids[1])  // both halves done: forgotten
        #expect(server.hasPendingWindowAnnouncements)  // the third still waits
        _ = server.takeWindowAnnouncement(on: ids[2])
        #expect(!server.hasPendingWindowAnnouncements)
    }

    @Test("a stream the peer has finished is never announced")
    func noAnnouncementAfterFIN() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client))
        var server = SmuxSession(configuration: .init(version: 2, role: .server))
        let (id, frames) = try client.openStream()
        for frame in frames { _ = try server.frameReceived(frame) }
        _ = try server.frameReceived(try requireValue(client.closeStream(id)))
        #expect(!server.announcesWindow(on: id))
        let consumed = server.dataConsumed(on: id, count: 1 << 16, grow: false)
        let taken = server.takeWindowAnnouncement(on: id)
        #expect(consumed == nil && taken == nil)
    }
}
