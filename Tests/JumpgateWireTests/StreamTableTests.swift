import JumpgateWire
import NIOCore
import Testing

@Suite("stream table")
struct StreamTableTests {
    typealias Action = StreamTable.Action

    static func negotiated(
        _ mode: PortSessionMode,
        _ extensions: JumpgateExtensions = .all
    ) -> NegotiatedSession {
        NegotiatedSession(
            sessionType: "Port",
            properties: [:],
            agentVersion: "3.3.1802.0",
            clientVersion: "1.2.707.0",
            mode: mode,
            extensions: extensions
        )
    }

    static func table(
        agent: Bool,
        _ mode: PortSessionMode = .mux(smuxVersion: 2, keepAlive: false),
        _ extensions: JumpgateExtensions = .all
    ) -> (StreamTable, [Action]) {
        var table = StreamTable(isAgent: agent)
        var actions: [Action] = []
        table.establish(Self.negotiated(mode, extensions), into: &actions)
        return (table, actions)
    }

    static func bytes(_ count: Int, seed: UInt8 = 0) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0) &+ seed })
    }

    static let stream3 = SmuxStreamID(3)

    /// Sends every chunk stream `id` may send now, as a session's send loop does; returns the stream bytes.
    @discardableResult
    static func sendAll(_ table: inout StreamTable, on id: SmuxStreamID) -> Int {
        var sent = 0
        while let chunk = table.nextChunk(on: id) {
            var payload = ByteBuffer()
            table.writeChunk(chunk, into: &payload)
            #expect(payload.readableBytes == chunk.payloadLength)
            sent += chunk.first + chunk.second
        }
        return sent
    }

    func frame(
        _ command: SmuxCommand,
        _ id: SmuxStreamID = Self.stream3,
        version: UInt8 = 2,
        data: ByteBuffer = .init()
    )
        -> SmuxFrame
    {
        SmuxFrame(version: version, command: command, streamID: id, data: data)
    }

    // MARK: client side

    @Test("client: a connection opens a stream with its SYN and (v2) its window; its reads become chunks")
    func clientOpensAndSends() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let opened = try requireOpened(table.open(into: &actions))
        #expect(opened.0 == Self.stream3)
        #expect(actions.count == 2)
        #expect(actions.first == .sendFrame(self.frame(.syn)))
        guard case .sendFrame(let update) = actions.last, update.command == .upd else {
            Issue.record("no window update: \(actions)")
            return
        }
        #expect(table.openConnections == 1 && table.totalConnections == 1)

        let outcome1 = table.localRead(Self.stream3, opened.1, Self.bytes(70_000))
        #expect(outcome1)
        #expect(table.bytesIn == 70_000)
        // A message carries 64 KiB of the connection's bytes in two full PSH frames, their headers on top.
        let chunk = try requireValue(table.nextChunk(on: Self.stream3))
        #expect(chunk.first == 32_768 && chunk.second == 32_768)
        #expect(chunk.payloadLength == 65_536 + 16)
        var payload = ByteBuffer()
        table.writeChunk(chunk, into: &payload)
        #expect(payload.readableBytes == 65_536 + 16)
        #expect(payload.getBytes(at: 0, length: 8) == [2, 2, 0, 0x80, 3, 0, 0, 0])  // v2 PSH, 32768, stream 3
        #expect(payload.getBytes(at: 8, length: 4) == [0, 1, 2, 3])
        // The rest (the initial window is 256 KiB) goes as a smaller chunk; then nothing waits.
        let rest = try requireValue(table.nextChunk(on: Self.stream3))
        #expect(rest.first + rest.second == 70_000 - 65_536)
        var second = ByteBuffer()
        table.writeChunk(rest, into: &second)
        let outcome2 = table.nextChunk(on: Self.stream3)
        #expect(outcome2 == nil)
        actions.removeAll()
        table.pumped(Self.stream3, into: &actions)
        #expect(actions.isEmpty)  // no EOF yet: no FIN
    }

    @Test(
        "a full 64 KiB read is one message with the large-payloads extension (smux v1 and v2); 1 KiB, headers included, without",
        arguments: [
            (PortSessionMode.mux(smuxVersion: 2, keepAlive: false), JumpgateExtensions.all, [65_536 + 16]),
            (PortSessionMode.mux(smuxVersion: 1, keepAlive: false), JumpgateExtensions.all, [65_536 + 16]),
            (
                PortSessionMode.mux(smuxVersion: 1, keepAlive: false), JumpgateExtensions(),
                [Int](repeating: 1024, count: 64) + [64 * 8 + 8]
            ),
        ]
    )
    func fullReadIsOneMessage(mode: PortSessionMode, extensions: JumpgateExtensions, expected: [Int]) throws {
        var (table, _) = Self.table(agent: false, mode, extensions)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        let queued = table.localRead(id, connection, Self.bytes(65_536))
        #expect(queued)
        var payloads: [Int] = []
        while let chunk = table.nextChunk(on: id) {
            var payload = ByteBuffer()
            table.writeChunk(chunk, into: &payload)
            payloads.append(payload.readableBytes)
        }
        #expect(payloads == expected)
    }

    @Test("a spent v2 window stops the chunks and pauses reading; the peer's UPD asks for a pump")
    func windowStopsAndReopens() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        table.localRead(id, connection, Self.bytes(300_000))
        let sent = Self.sendAll(&table, on: id)
        #expect(sent == 262_144)  // smux's initial peer window
        actions.removeAll()
        table.pumped(id, into: &actions)
        #expect(table.isReadPaused(id))
        #expect(actions.isEmpty)
        let update = SmuxFrame.windowUpdate(streamID: id, .init(consumed: 262_144, window: 2 << 20))
        try table.frameReceived(update, into: &actions)
        #expect(actions == [.pump(id)])
        actions.removeAll()
        let chunk = try requireValue(table.nextChunk(on: id))
        var payload = ByteBuffer()
        table.writeChunk(chunk, into: &payload)
        #expect(chunk.first + chunk.second == 300_000 - 262_144)
        table.pumped(id, into: &actions)
        #expect(actions == [.resumeReading(connection)])
        #expect(!table.isReadPaused(id))
    }

    @Test("EOF: the FIN goes after the last bytes; the stream stays for the peer's data until its FIN")
    func eofSendsFinAfterData() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        table.localRead(id, connection, Self.bytes(10))
        let outcome3 = table.localEOF(id, connection)
        #expect(outcome3)
        actions.removeAll()
        let chunk = try requireValue(table.nextChunk(on: id))
        var payload = ByteBuffer()
        table.writeChunk(chunk, into: &payload)
        table.pumped(id, into: &actions)
        #expect(actions == [.sendFrame(self.frame(.fin, id))])
        // Half-closed: the peer's data still reaches the connection, its FIN closes it.
        actions.removeAll()
        try table.frameReceived(self.frame(.psh, id, data: Self.bytes(5)), into: &actions)
        #expect(actions == [.write(connection, id, Self.bytes(5), confirm: false)])
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, id), into: &actions)
        #expect(actions == [.close(connection, .all)])
        #expect(table.openConnections == 0)
    }

    @Test("the peer's FIN half-closes the connection with half-close, and closes it without")
    func remoteFin() throws {
        for halfClose in [true, false] {
            let extensions: JumpgateExtensions = halfClose ? .all : JumpgateExtensions.all.subtracting(.halfClose)
            var (table, _) = Self.table(agent: false, .mux(smuxVersion: 2, keepAlive: false), extensions)
            var actions: [Action] = []
            let (id, connection) = try requireOpened(table.open(into: &actions))
            actions.removeAll()
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(1)), into: &actions)  // answered
            actions.removeAll()
            try table.frameReceived(self.frame(.fin, id), into: &actions)
            if halfClose {
                #expect(actions == [.close(connection, .output)])
                #expect(table.openConnections == 1)
            } else {
                #expect(actions == [.sendFrame(self.frame(.fin, id)), .close(connection, .all)])
                #expect(table.openConnections == 0)
            }
        }
    }

    @Test("a closed connection returns what it held back to the peer's window without growing it")
    func localCloseReturnsWindow() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        actions.removeAll()
        // 1.5 MiB written while the socket was not writable: held back from the window.
        for _ in 0..<48 {
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
            let outcome4 = table.localWritten(id, connection, count: 32_768, socketWritable: false)
            #expect(outcome4 == nil)
        }
        actions.removeAll()
        let outcome5 = table.localClosed(id, connection, into: &actions)
        #expect(outcome5)
        guard case .sendFrame(let update) = actions.first, update.command == .upd else {
            Issue.record("the held-back bytes were not returned: \(actions)")
            return
        }
        // They come back without growing the window: they waited because the reader was slow, and the
        // closing socket may have dropped them.
        let returned = try requireValue(update.windowUpdate)
        #expect(returned.window == 2 << 20)
        #expect(returned.consumed == UInt32(48 * 32_768))
        let window = returned.window
        actions.removeAll()
        table.pumped(id, into: &actions)
        #expect(actions == [.sendFrame(self.frame(.fin, id))])  // EOF with nothing waiting
        actions.removeAll()
        table.localClosedAfterSending(id, connection, into: &actions)
        #expect(actions.isEmpty)  // the FIN went already
        #expect(!table.owns(id, connection))
        // Data still arriving for it is dropped, yet counted as consumed: the peer's window stays open. It
        // does not grow the window any further (no reader took it): every update keeps the window it had.
        var windows: [UInt32] = []
        for _ in 0..<64 {
            actions.removeAll()
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
            for case .sendFrame(let update) in actions { windows.append(try requireValue(update.windowUpdate).window) }
            #expect(!actions.contains { if case .write = $0 { true } else { false } })
        }
        #expect(windows.count == 4)  // 2 MiB dropped, an update every quarter of the 2 MiB window
        #expect(windows.allSatisfy { $0 == window }, "dropped data grew the window: \(windows)")
    }

    @Test("a connection that sent EOF and then closes: the peer's half stays open, its data dropped but credited")
    func eofThenCloseKeepsPeerHalf() throws {
        var (table, _) = Self.table(agent: true)
        var actions: [Action] = []
        try table.frameReceived(self.frame(.syn, Self.stream3), into: &actions)
        let connection = try requireValue(table.attach(Self.stream3, into: &actions))
        let id = Self.stream3
        table.localRead(id, connection, Self.bytes(100))
        Self.sendAll(&table, on: id)
        let eof = table.localEOF(id, connection)
        #expect(eof)
        actions.removeAll()
        table.pumped(id, into: &actions)
        #expect(actions == [.sendFrame(self.frame(.fin, id))])  // half-close: the peer may still send
        actions.removeAll()
        // The connection closes (the target closed it entirely) while the peer is still sending.
        let closed = table.localClosed(id, connection, into: &actions)
        #expect(closed)
        table.pumped(id, into: &actions)
        table.localClosedAfterSending(id, connection, into: &actions)
        #expect(actions.isEmpty)  // no second FIN
        #expect(table.isMuxStreamOpen(id) && table.openConnections == 0)
        // What the peer sends now is dropped, yet credited: updates keep its window open.
        var consumed: [UInt32] = []
        for _ in 0..<64 {
            actions.removeAll()
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
            #expect(!actions.contains { if case .write = $0 { true } else { false } })
            for case .sendFrame(let update) in actions {
                consumed.append(try requireValue(update.windowUpdate).consumed)
            }
        }
        #expect(consumed.count == 4 && consumed.last == 64 * 32_768, "updates: \(consumed)")
        // The peer's FIN ends the stream in smux too, and asks for nothing more.
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, id), into: &actions)
        #expect(!table.isMuxStreamOpen(id) && actions.isEmpty)
    }

    @Test("a connection that closes while its last bytes wait for the window: they go first, then the FIN")
    func closeWithBytesWaiting() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        table.localRead(id, connection, Self.bytes(300_000))
        Self.sendAll(&table, on: id)
        actions.removeAll()
        let closed = table.localClosed(id, connection, into: &actions)
        #expect(closed && actions.isEmpty)
        table.pumped(id, into: &actions)
        table.localClosedAfterSending(id, connection, into: &actions)
        #expect(actions.isEmpty)  // no FIN while 37,856 bytes wait
        #expect(table.blockedStreams == [id])
        let update = SmuxFrame.windowUpdate(streamID: id, .init(consumed: 262_144, window: 2 << 20))
        try table.frameReceived(update, into: &actions)
        #expect(actions == [.pump(id)])
        actions.removeAll()
        let rest = Self.sendAll(&table, on: id)
        #expect(rest == 37_856)
        table.pumped(id, into: &actions)
        #expect(actions == [.sendFrame(self.frame(.fin, id))])
        #expect(table.blockedStreams.isEmpty && table.openConnections == 0)
    }

    @Test("bytes a socket took while not writable count for the window once it is writable again")
    func writableReturnsCredit() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        for _ in 0..<40 {
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
            let update = table.localWritten(id, connection, count: 32_768, socketWritable: false)
            #expect(update == nil)
        }
        // Writable again but bytes still held back: this write waits with them.
        let held = table.localWritten(id, connection, count: 1, socketWritable: true)
        #expect(held == nil)
        let update = try requireValue(table.localWritable(id, connection))
        #expect(update.command == .upd && update.windowUpdate?.consumed == 40 * 32_768 + 1)
        let again = table.localWritable(id, connection)
        #expect(again == nil)
    }

    @Test("official peers: a client sends 1 KiB payloads (one PSH frame); an agent 64 KiB of bytes (two)")
    func officialChunkSizes() throws {
        var (client, _) = Self.table(agent: false, .mux(smuxVersion: 1, keepAlive: false), [])
        var actions: [Action] = []
        let (id, connection) = try requireOpened(client.open(into: &actions))
        client.localRead(id, connection, Self.bytes(5_000))
        let small = try requireValue(client.nextChunk(on: id))
        #expect(small.first == 1_016 && small.second == 0 && small.payloadLength == 1_024)

        var (agent, _) = Self.table(agent: true, .mux(smuxVersion: 1, keepAlive: false), [])
        try agent.frameReceived(self.frame(.syn, version: 1), into: &actions)
        let target = try requireValue(agent.attach(Self.stream3, into: &actions))
        agent.localRead(Self.stream3, target, Self.bytes(100_000))
        let large = try requireValue(agent.nextChunk(on: Self.stream3))
        #expect(large.first == 32_768 && large.second == 32_768 && large.payloadLength == 65_552)
        var payload = ByteBuffer()
        agent.writeChunk(large, into: &payload)
        #expect(payload.getBytes(at: 32_776, length: 4) == [1, 2, 0x00, 0x80])  // v1 PSH, 32768
    }

    @Test("a late event of a finished connection is ignored")
    func staleConnection() throws {
        var (table, _) = Self.table(agent: false, .basic)
        var actions: [Action] = []
        let (id, first) = try requireOpened(table.open(into: &actions))
        #expect(try table.open(into: &actions) == nil)  // basic: one connection at a time
        let outcome6 = table.localEOF(id, first)
        #expect(outcome6)
        table.pumped(id, into: &actions)
        #expect(actions == [.close(first, .all), .sendFlag(.disconnectToPort), .serveNextWaiting])
        let (_, second) = try requireOpened(table.open(into: &actions))
        #expect(second != first)
        let outcome7 = table.localRead(id, first, Self.bytes(3))
        #expect(!outcome7)
        let outcome8 = table.localEOF(id, first)
        #expect(!outcome8)
        actions.removeAll()
        let outcome9 = table.localClosed(id, first, into: &actions)
        #expect(!outcome9)
        #expect(table.owns(id, second))
    }

    // MARK: agent side

    @Test("agent: a SYN asks for a dial; data and a FIN that arrive first are written once it attaches")
    func agentEarlyData() throws {
        for halfClose in [true, false] {
            let extensions: JumpgateExtensions = halfClose ? .all : JumpgateExtensions.all.subtracting(.halfClose)
            var (table, _) = Self.table(agent: true, .mux(smuxVersion: 2, keepAlive: false), extensions)
            var actions: [Action] = []
            try table.frameReceived(self.frame(.syn), into: &actions)
            #expect(actions.last == .dial(Self.stream3))
            actions.removeAll()
            try table.frameReceived(self.frame(.psh, data: Self.bytes(100)), into: &actions)
            try table.frameReceived(self.frame(.fin), into: &actions)
            #expect(actions.isEmpty)
            #expect(table.receiveBound.queuedBytes == 100)
            let connection = try requireValue(table.attach(Self.stream3, into: &actions))
            #expect(table.receiveBound.queuedBytes == 0)
            #expect(actions.first == .write(connection, Self.stream3, Self.bytes(100), confirm: false))
            if halfClose {
                #expect(actions.dropFirst() == [.close(connection, .output)])
            } else {
                #expect(actions.dropFirst() == [.sendFrame(self.frame(.fin)), .close(connection, .all)])
            }
        }
    }

    @Test("agent: a stream's window goes ahead of the data in its first data message with room for it, once")
    func agentAnnouncesWindowWithData() throws {
        var (table, _) = Self.table(agent: true)
        var actions: [Action] = []
        try table.frameReceived(self.frame(.syn), into: &actions)
        #expect(actions == [.dial(Self.stream3)])  // no UPD of its own
        actions.removeAll()
        let connection = try requireValue(table.attach(Self.stream3, into: &actions))
        let maximum = Self.negotiated(.mux(smuxVersion: 2, keepAlive: false)).maximumPayloadSize(sentByAgent: true)
        func nextMessage(_ table: inout StreamTable) throws -> (StreamTable.Chunk, [SmuxFrame]) {
            let chunk = try requireValue(table.nextChunk(on: Self.stream3))
            var payload = ByteBuffer()
            table.writeChunk(chunk, into: &payload)
            #expect(payload.readableBytes == chunk.payloadLength && payload.readableBytes <= maximum)
            var parser = SmuxStreamParser()
            let frames = try parser.frames(payload)
            let data = frames.reduce(0) { $0 + ($1.command == .psh ? $1.data.readableBytes : 0) }
            #expect(data == chunk.first + chunk.second)
            return (chunk, frames)
        }
        // A read that fills a message: the message stays full (its rest would cost a message of its own).
        let read1 = table.localRead(Self.stream3, connection, Self.bytes(maximum))
        #expect(read1)
        let (full, fullFrames) = try nextMessage(&table)
        #expect(full.payloadLength == maximum && full.windowAnnouncement == nil)
        #expect(fullFrames.map(\.command) == [.psh, .psh])
        // The rest has room: the window goes ahead of its data.
        let (rest, restFrames) = try nextMessage(&table)
        #expect(restFrames.map(\.command) == [.upd, .psh])
        #expect(restFrames.first?.windowUpdate == .init(consumed: 0, window: 2 << 20))
        #expect(rest.payloadLength == 16 + 8 + maximum - full.first - full.second)
        // Once only.
        let read2 = table.localRead(Self.stream3, connection, Self.bytes(1000))
        #expect(read2)
        let (_, laterFrames) = try nextMessage(&table)
        #expect(laterFrames.map(\.command) == [.psh])
    }

    @Test("agent: a refused stream says why (connect-errors), flags it and ends it; basic mode ends the session")
    func agentRefuses() throws {
        for connectErrors in [true, false] {
            let extensions: JumpgateExtensions =
                connectErrors ? .all : JumpgateExtensions.all.subtracting(.connectErrors)
            var (table, _) = Self.table(agent: true, .mux(smuxVersion: 2, keepAlive: false), extensions)
            var actions: [Action] = []
            try table.frameReceived(self.frame(.syn), into: &actions)
            actions.removeAll()
            table.refuse(Self.stream3, reason: "not allowed", into: &actions)
            let expected: [Action] =
                (connectErrors
                    ? [.sendConnectError(ConnectErrorPayload(streamID: 3, reason: "not allowed"))] : [])
                + [.sendFlag(.connectToPortError), .sendFrame(self.frame(.fin))]
            #expect(actions == expected)
            let outcome10 = table.attach(Self.stream3, into: &actions)
            #expect(outcome10 == nil)  // a late dial finds nothing
        }
        var (basic, established) = Self.table(agent: true, .basic)
        #expect(established == [.dial(StreamTable.basicStreamID)])
        var actions: [Action] = []
        basic.refuse(StreamTable.basicStreamID, reason: "connection refused", into: &actions)
        #expect(actions == [.endSession(reason: "Unable to connect to specified port: connection refused")])
    }

    @Test("client: ConnectToPortError belongs to the next FIN of a stream that got no data")
    func clientSeesRefusal() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (answered, _) = try requireOpened(table.open(into: &actions))
        let (refused, _) = try requireOpened(table.open(into: &actions))
        try table.frameReceived(self.frame(.psh, answered, data: Self.bytes(1)), into: &actions)
        let outcome11 = table.connectErrorReceived(ConnectErrorPayload(streamID: refused.rawValue, reason: "no route"))
        #expect(outcome11)
        table.connectToPortErrorReceived()
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, answered), into: &actions)
        #expect(!actions.contains { if case .streamFailed = $0 { true } else { false } })
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, refused), into: &actions)
        #expect(actions.first == .streamFailed(refused, reason: "no route"))
        // A refused stream's connection closes, even with half-close.
        #expect(actions.contains { if case .close(_, .all) = $0 { true } else { false } })
    }

    @Test(
        "smux v1, official agent: a refusal's flag is not taken by the FIN of a stream that got data and whose connection closed first"
    )
    func refusalFlagAfterForgottenStream() throws {
        // The official agent sends a refused stream's flag and its FIN from different goroutines, so another
        // stream's FIN can come between them; that stream's connection had closed, so the table forgot it.
        let mode = PortSessionMode.mux(smuxVersion: 1, keepAlive: false)
        var (table, _) = Self.table(agent: false, mode, [])
        var actions: [Action] = []
        let (answered, connection) = try requireOpened(table.open(into: &actions))
        let (refused, _) = try requireOpened(table.open(into: &actions))
        try table.frameReceived(self.frame(.psh, answered, version: 1, data: Self.bytes(10)), into: &actions)
        // The user's connection ends: its FIN goes, the table forgets the stream, smux keeps it for the agent's FIN.
        let eof = table.localEOF(answered, connection)
        let closed = table.localClosed(answered, connection, into: &actions)
        #expect(eof && closed)
        table.pumped(answered, into: &actions)
        table.localClosedAfterSending(answered, connection, into: &actions)
        #expect(table.isMuxStreamOpen(answered) && table.openConnections == 1)
        table.connectToPortErrorReceived()
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, answered, version: 1), into: &actions)
        #expect(!actions.contains { if case .streamFailed = $0 { true } else { false } })
        #expect(!table.isMuxStreamOpen(answered))
        actions.removeAll()
        try table.frameReceived(self.frame(.fin, refused, version: 1), into: &actions)
        #expect(actions.first == .streamFailed(refused, reason: nil))
    }

    @Test("a stream forgotten while smux keeps it for the peer's FIN gives its window's growth back to the session")
    func forgottenStreamReturnsGrowth() throws {
        var (table, _) = Self.table(agent: true)
        var actions: [Action] = []
        let id = Self.stream3
        try table.frameReceived(self.frame(.syn, id), into: &actions)
        let connection = try requireValue(table.attach(id, into: &actions))
        // The target answers first: its bytes carry the stream's 2 MiB window to the client.
        let answered = table.localRead(id, connection, Self.bytes(10))
        #expect(answered && Self.sendAll(&table, on: id) == 10)
        // The target takes 512 KiB at once: a quarter of the 2 MiB window, so it doubles.
        var windows: [UInt32] = []
        for _ in 0..<16 {
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
            if let update = table.localWritten(id, connection, count: 32_768, socketWritable: true) {
                windows.append(try requireValue(update.windowUpdate).window)
            }
        }
        #expect(windows == [4 << 20])
        #expect(table.grownWindowBytes == 2 << 20)
        // The target sends its last bytes and closes while the client is still sending.
        let eof = table.localEOF(id, connection)
        let closed = table.localClosed(id, connection, into: &actions)
        #expect(eof && closed)
        table.pumped(id, into: &actions)
        table.localClosedAfterSending(id, connection, into: &actions)
        #expect(table.isMuxStreamOpen(id))
        #expect(table.grownWindowBytes == 0)
        // What the client still sends is dropped and credited, and grows nothing.
        actions.removeAll()
        for _ in 0..<64 {
            try table.frameReceived(self.frame(.psh, id, data: Self.bytes(32_768)), into: &actions)
        }
        let updates = actions.compactMap { action -> SmuxFrame.WindowUpdate? in
            if case .sendFrame(let frame) = action { frame.windowUpdate } else { nil }
        }
        #expect(updates.count == 2 && updates.allSatisfy { $0.window == 4 << 20 }, "\(updates)")
        #expect(table.grownWindowBytes == 0)
    }

    @Test("agent: connect-errors from the client side is unexpected")
    func connectErrorOnlyOnClient() {
        var (table, _) = Self.table(agent: true)
        let outcome12 = table.connectErrorReceived(ConnectErrorPayload(streamID: 3, reason: "x"))
        #expect(!outcome12)
        var (official, _) = Self.table(agent: false, .mux(smuxVersion: 1, keepAlive: false), [])
        let outcome13 = official.connectErrorReceived(ConnectErrorPayload(streamID: 3, reason: "x"))
        #expect(!outcome13)
    }

    // MARK: basic mode and the receive bound

    @Test(
        "basic mode: the agent dials again on new data after DisconnectToPort; the client withholds without a connection"
    )
    func basicModeCycle() throws {
        var (agent, _) = Self.table(agent: true, .basic)
        var actions: [Action] = []
        let first = try requireValue(agent.attach(StreamTable.basicStreamID, into: &actions))
        agent.basicDataReceived(Self.bytes(4), into: &actions)
        #expect(actions == [.write(first, StreamTable.basicStreamID, Self.bytes(4), confirm: true)])
        actions.removeAll()
        agent.peerDisconnected(into: &actions)
        #expect(actions.first == .close(first, .all))
        actions.removeAll()
        agent.basicDataReceived(Self.bytes(2), into: &actions)
        #expect(actions == [.dial(StreamTable.basicStreamID)])
        let second = try requireValue(agent.attach(StreamTable.basicStreamID, into: &actions))
        #expect(second != first)
        #expect(actions.last == .write(second, StreamTable.basicStreamID, Self.bytes(2), confirm: true))

        var (client, _) = Self.table(agent: false, .basic)
        #expect(client.withholdsBasicOutput)
        _ = try client.open(into: &actions)
        #expect(!client.withholdsBasicOutput)
        #expect(!agent.withholdsBasicOutput)
    }

    @Test("smux v1: past 4 MiB waiting for local sockets the data channel stops being read; at 2 MiB it restarts")
    func receiveBoundV1() throws {
        var (table, _) = Self.table(agent: false, .mux(smuxVersion: 1, keepAlive: false), [])
        var actions: [Action] = []
        let (id, connection) = try requireOpened(table.open(into: &actions))
        actions.removeAll()
        for _ in 0..<129 {
            try table.frameReceived(self.frame(.psh, id, version: 1, data: Self.bytes(32_768)), into: &actions)
        }
        #expect(actions.last == .readDataChannel(false))
        #expect(actions.count == 130)
        #expect(actions.dropLast().allSatisfy { $0 == .write(connection, id, Self.bytes(32_768), confirm: true) })
        actions.removeAll()
        for _ in 0..<64 { table.localWriteCompleted(id, count: 32_768, success: true, into: &actions) }
        #expect(actions.isEmpty)  // 2,129,920 bytes still wait: more than half the bound
        // A failed write (its connection went away) leaves the bound too.
        table.localWriteCompleted(id, count: 32_768, success: false, into: &actions)
        #expect(actions == [.readDataChannel(true)])
        // smux v2 has no such bound: its windows bound each stream.
        var (v2, _) = Self.table(agent: false)
        let (id2, _) = try requireOpened(v2.open(into: &actions))
        actions.removeAll()
        for _ in 0..<64 { try v2.frameReceived(self.frame(.psh, id2, data: Self.bytes(32_768)), into: &actions) }
        #expect(!actions.contains(.readDataChannel(false)))
    }

    @Test("the session's end resets every attached connection")
    func endResets() throws {
        var (table, _) = Self.table(agent: false)
        var actions: [Action] = []
        let (_, a) = try requireOpened(table.open(into: &actions))
        let (_, b) = try requireOpened(table.open(into: &actions))
        actions.removeAll()
        table.endAll(into: &actions)
        #expect(Set(actions) == [.reset(a), .reset(b)])
        #expect(table.openConnections == 0)
    }

    // MARK: two tables back to back

    /// A client and an agent table joined as the session handlers join them (chunks and control frames
    /// carried as smux bytes, v2 windows, writes confirmed as a writable socket would): random reads on
    /// random streams arrive intact, in order, and every stream ends cleanly.
    @Test("back to back, seeded: every stream's bytes arrive intact and every stream closes")
    func backToBack() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("StreamTableTests.backToBack seed \(seed)")
        var rng = SplitMix64(seed: seed)
        var pair = TablePair()
        var expected: [SmuxStreamID: [UInt8]] = [:]
        var streams: [(SmuxStreamID, StreamTable.ConnectionID)] = []
        for _ in 0..<6 { streams.append(try pair.open()) }
        for step in 0..<400 {
            let (id, connection) = streams[Int.random(in: 0..<streams.count, using: &rng)]
            let count = Int.random(in: 1...90_000, using: &rng)
            let data = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            expected[id, default: []] += data
            try pair.clientRead(id, connection, ByteBuffer(bytes: data))
            if step % 7 == 0 { try pair.deliverAll() }
        }
        for (id, connection) in streams { try pair.clientEOF(id, connection) }
        try pair.deliverAll()
        for (id, _) in streams {
            #expect(pair.received[id] == expected[id], "stream \(id), seed \(seed)")
            #expect(pair.agentEOF.contains(id), "stream \(id) got no FIN, seed \(seed)")
        }
        // The targets end too: each client connection closes, and neither table keeps a stream.
        for (connection, id) in pair.agentConnections { pair.agentEnds(id, connection) }
        try pair.deliverAll()
        #expect(pair.clientClosed.count == streams.count, "seed \(seed)")
        #expect(pair.client.openConnections == 0 && pair.agent.openConnections == 0, "seed \(seed)")
        #expect(pair.client.blockedStreams.isEmpty && pair.agent.blockedStreams.isEmpty)
    }
}

/// Two stream tables as a client and an agent session would drive them, with reliable delivery always
/// able to send (its own tests cover it).
struct TablePair {
    var client: StreamTable
    var agent: StreamTable
    var toAgent: [ByteBuffer] = []
    var toClient: [ByteBuffer] = []
    var agentParser = SmuxStreamParser()
    var clientParser = SmuxStreamParser()
    var agentConnections: [StreamTable.ConnectionID: SmuxStreamID] = [:]
    var received: [SmuxStreamID: [UInt8]] = [:]
    var agentEOF: Set<SmuxStreamID> = []
    var clientClosed: Set<StreamTable.ConnectionID> = []

    init() {
        self.client = StreamTableTests.table(agent: false).0
        self.agent = StreamTableTests.table(agent: true).0
    }

    mutating func open() throws -> (SmuxStreamID, StreamTable.ConnectionID) {
        var actions: [StreamTable.Action] = []
        let opened = try requireOpened(self.client.open(into: &actions))
        self.run(actions, agent: false)
        return opened
    }

    mutating func clientRead(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID, _ data: ByteBuffer) throws {
        let outcome14 = self.client.localRead(id, connection, data)
        #expect(outcome14)
        self.pump(id, agent: false)
    }

    mutating func clientEOF(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) throws {
        let outcome15 = self.client.localEOF(id, connection)
        #expect(outcome15)
        self.pump(id, agent: false)
    }

    mutating func agentEnds(_ id: SmuxStreamID, _ connection: StreamTable.ConnectionID) {
        let known = self.agent.localEOF(id, connection)
        #expect(known)
        self.pump(id, agent: true)
    }

    mutating func pump(_ id: SmuxStreamID, agent: Bool) {
        var actions: [StreamTable.Action] = []
        while let chunk = agent ? self.agent.nextChunk(on: id) : self.client.nextChunk(on: id) {
            var payload = ByteBuffer()
            if agent {
                self.agent.writeChunk(chunk, into: &payload)
            } else {
                self.client.writeChunk(chunk, into: &payload)
            }
            #expect(payload.readableBytes == chunk.payloadLength)
            if agent { self.toClient.append(payload) } else { self.toAgent.append(payload) }
        }
        if agent { self.agent.pumped(id, into: &actions) } else { self.client.pumped(id, into: &actions) }
        self.run(actions, agent: agent)
    }

    mutating func deliverAll() throws {
        while !self.toAgent.isEmpty || !self.toClient.isEmpty {
            if !self.toAgent.isEmpty {
                let payload = self.toAgent.removeFirst()
                for frame in try self.agentParser.frames(payload) {
                    var actions: [StreamTable.Action] = []
                    try self.agent.frameReceived(frame, into: &actions)
                    self.run(actions, agent: true)
                }
            }
            if !self.toClient.isEmpty {
                let payload = self.toClient.removeFirst()
                for frame in try self.clientParser.frames(payload) {
                    var actions: [StreamTable.Action] = []
                    try self.client.frameReceived(frame, into: &actions)
                    self.run(actions, agent: false)
                }
            }
        }
    }

    mutating func run(_ actions: [StreamTable.Action], agent: Bool) {
        for action in actions {
            switch action {
            case .sendFrame(let frame):
                var payload = ByteBuffer()
                payload.writeSmuxFrame(frame)
                if agent { self.toClient.append(payload) } else { self.toAgent.append(payload) }
            case .dial(let id):
                var more: [StreamTable.Action] = []
                let connection = self.agent.attach(id, into: &more)!
                self.agentConnections[connection] = id
                self.run(more, agent: true)
            case .write(let connection, let id, let data, let confirm):
                #expect(agent && !confirm)
                self.received[id, default: []] += Array(data.readableBytesView)
                if let update = self.agent.localWritten(id, connection, count: data.readableBytes, socketWritable: true)
                {
                    self.run([.sendFrame(update)], agent: true)
                }
            case .close(let connection, let closing):
                if agent {
                    #expect(closing == .output)
                    if let id = self.agentConnections[connection] { self.agentEOF.insert(id) }
                } else {
                    #expect(closing == .all)  // both directions are done
                    self.clientClosed.insert(connection)
                }
            case .pump(let id):
                self.pump(id, agent: agent)
            case .resumeReading:
                break
            default:
                Issue.record("unexpected action \(action)")
            }
        }
    }
}

/// Parses smux bytes that arrive split across payloads.
struct SmuxStreamParser {
    var buffer = ByteBuffer()
    var decoder = SmuxFrameDecoder(version: 2)

    mutating func frames(_ payload: ByteBuffer) throws -> [SmuxFrame] {
        var payload = payload
        self.buffer.writeBuffer(&payload)
        var frames: [SmuxFrame] = []
        while let frame = try self.decoder.decode(buffer: &self.buffer) { frames.append(frame) }
        self.buffer.discardReadBytes()
        return frames
    }
}

/// `#require` for a value made by a mutating call (macros cannot take those).
func requireValue<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}

func requireOpened(
    _ opened: (SmuxStreamID, StreamTable.ConnectionID)?,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (SmuxStreamID, StreamTable.ConnectionID) {
    try #require(opened, sourceLocation: sourceLocation)
}
