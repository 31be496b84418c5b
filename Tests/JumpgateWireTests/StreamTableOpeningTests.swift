import JumpgateWire
import NIOCore
import Testing

/// The client's SYN held for the connection's first bytes (``StreamTable/open(into:dataWaiting:)``): one
/// message carries the stream's opening and its first data, and no path lets a FIN or data go without the
/// SYN ahead of it.
@Suite("stream table: a stream's opening with its first bytes")
struct StreamTableOpeningTests {
    typealias Action = StreamTable.Action

    /// The frames of one message's payload, in order.
    static func frames(of payload: ByteBuffer, version: UInt8) throws -> [SmuxFrame] {
        var parser = SmuxFrameParser(version: version)
        var frames: [SmuxFrame] = []
        try parser.parse(payload) { frames.append($0) }
        return frames
    }

    /// The smux commands `actions` send, in order.
    static func frameCommands(_ actions: [Action]) -> [SmuxCommand] {
        actions.compactMap { action in
            guard case .sendFrame(let frame) = action else { return nil }
            return frame.command
        }
    }

    /// Sends the next chunk of stream `id`: its payload.
    static func nextMessage(_ table: inout StreamTable, on id: SmuxStreamID) throws -> ByteBuffer {
        let chunk = try requireValue(table.nextChunk(on: id))
        var payload = ByteBuffer()
        table.writeChunk(chunk, into: &payload)
        #expect(payload.readableBytes == chunk.payloadLength)
        return payload
    }

    @Test("bytes waiting at accept: no message at the open; the SYN and the window go in the first data message")
    func openingRidesWithFirstData() throws {
        var (table, _) = StreamTableTests.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions, dataWaiting: true))
        #expect(actions.isEmpty)
        table.localRead(id, connection, ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        let payload = try Self.nextMessage(&table, on: id)
        let frames = try Self.frames(of: payload, version: 2)
        #expect(frames.map(\.command) == [.syn, .upd, .psh])
        #expect(frames.allSatisfy { $0.streamID == id })
        #expect(frames[2].data == ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        // The window announced is the one a SYN sent alone would have carried.
        var alone = StreamTableTests.table(agent: false).0
        var aloneActions: [Action] = []
        _ = try requireOpened(alone.open(into: &aloneActions))
        #expect(aloneActions == frames[0..<2].map { .sendFrame($0) })

        // Later reads are data alone, and nothing else is sent for the opening.
        table.localRead(id, connection, ByteBuffer(string: "Host: x\r\n"))
        let next = try Self.frames(of: try Self.nextMessage(&table, on: id), version: 2)
        #expect(next.map(\.command) == [.psh])
        actions.removeAll()
        table.pumped(id, into: &actions)
        #expect(actions.isEmpty)
    }

    @Test(
        "the opening counts against the message's size: the first message is never larger than the peer takes",
        arguments: [(UInt8(2), 8 + 16), (UInt8(1), 8)]
    )
    func openingFitsTheMessage(version: UInt8, openingBytes: Int) throws {
        // Without the large-payloads extension a message carries at most 1,024 bytes (the official peers').
        var (table, _) = StreamTableTests.table(
            agent: false,
            .mux(smuxVersion: version, keepAlive: false),
            JumpgateExtensions()
        )
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions, dataWaiting: true))
        table.localRead(id, connection, StreamTableTests.bytes(3_000))
        let first = try Self.nextMessage(&table, on: id)
        #expect(first.readableBytes == 1_024)
        let frames = try Self.frames(of: first, version: version)
        #expect(frames.first?.command == .syn)
        #expect(frames.last?.data.readableBytes == 1_024 - openingBytes - 8)
        var sent = frames.last?.data.readableBytes ?? 0
        while let chunk = table.nextChunk(on: id) {
            var payload = ByteBuffer()
            table.writeChunk(chunk, into: &payload)
            #expect(payload.readableBytes <= 1_024)
            #expect(try Self.frames(of: payload, version: version).allSatisfy { $0.command == .psh })
            sent += chunk.first + chunk.second
        }
        #expect(sent == 3_000)
    }

    @Test(
        "a connection that ends (EOF, or closed) before its bytes were read: its SYN, then its FIN, once",
        arguments: [false, true]
    )
    func endedBeforeFirstRead(closed: Bool) throws {
        var (table, _) = StreamTableTests.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions, dataWaiting: true))
        let ended = closed ? table.localClosed(id, connection, into: &actions) : table.localEOF(id, connection)
        #expect(ended)
        table.pumped(id, into: &actions)
        if closed { table.localClosedAfterSending(id, connection, into: &actions) }
        #expect(Self.frameCommands(actions) == [.syn, .upd, .fin])
    }

    @Test("first bytes that cannot go yet (send buffer or window full): the opening goes alone, the bytes after")
    func blockedFirstData() throws {
        var (table, _) = StreamTableTests.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions, dataWaiting: true))
        table.localRead(id, connection, ByteBuffer(string: "hello"))
        // The session could not send data (no nextChunk), and pumped the stream.
        table.pumped(id, into: &actions)
        #expect(Self.frameCommands(actions) == [.syn, .upd])
        #expect(table.isReadPaused(id))
        let frames = try Self.frames(of: try Self.nextMessage(&table, on: id), version: 2)
        #expect(frames.map(\.command) == [.psh])
        #expect(frames.first?.data == ByteBuffer(string: "hello"))
    }

    @Test("a FIN from the peer for a stream whose opening is held (a confused peer): the SYN still goes first")
    func peerFinishesHeldStream() throws {
        // Without half-close the peer's FIN closes the stream at once (StreamTable.closeStream); with it, the
        // local connection's output closes and the SYN goes at its end (endedBeforeFirstRead).
        var extensions = JumpgateExtensions.all
        extensions.remove(.halfClose)
        var (table, _) = StreamTableTests.table(agent: false, .mux(smuxVersion: 2, keepAlive: false), extensions)
        var actions: [Action] = []
        let (id, _) = try requireOpened(table.open(into: &actions, dataWaiting: true))
        try table.frameReceived(SmuxFrame(version: 2, command: .fin, streamID: id, data: ByteBuffer()), into: &actions)
        let commands = Self.frameCommands(actions)
        #expect(commands.first == .syn)
        #expect(commands.contains(.fin))
        #expect(commands.firstIndex(of: .syn)! < commands.firstIndex(of: .fin)!)
    }

    @Test("no bytes waiting (the server speaks first): the SYN goes at the open, as before")
    func serverSpeaksFirst() throws {
        var (table, _) = StreamTableTests.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions, dataWaiting: false))
        #expect(actions.count == 2)
        table.localRead(id, connection, ByteBuffer(string: "x"))
        let frames = try Self.frames(of: try Self.nextMessage(&table, on: id), version: 2)
        #expect(frames.map(\.command) == [.psh])
    }
}
